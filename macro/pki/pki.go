// Package pki is the cluster's certificate authority. The first node of a
// cluster creates it; every node gets a certificate it signs, for etcd's
// peer and client traffic and the node API (mutual TLS everywhere), and
// tenants later get client certificates from it too. A joining node knows
// the CA only by the hash a join token carries.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hearth-cloud/hearth/internal/atomicfile"
)

// CA is the cluster's authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte
}

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 2 * 365 * 24 * time.Hour
)

// Files of a node's PKI directory.
const (
	CACertFile   = "ca.pem"
	CAKeyFile    = "ca-key.pem"
	NodeCertFile = "node.pem"
	NodeKeyFile  = "node-key.pem"
)

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

// NewCA creates a CA.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"hearth"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Hash identifies a CA: the sha256 of its certificate, as join tokens
// carry it.
func Hash(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Leaf is a signed certificate and its key, PEM-encoded.
type Leaf struct {
	CertPEM []byte
	KeyPEM  []byte
}

// NewKey makes a key pair for a leaf.
func NewKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// SignNode signs a node's key for serving and calling: etcd peers and
// clients and the node API. hosts are its names and addresses.
func (ca *CA) SignNode(name string, pub crypto.PublicKey, hosts []string) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "node:" + name, Organization: []string{"hearth:nodes"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(leafValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost", name},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign node %s: %w", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// SignClient signs a client certificate with CommonName cn and
// Organization org (a tenant's, say).
func (ca *CA) SignClient(cn string, org []string, pub crypto.PublicKey, validity time.Duration) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: org},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// TenantOrg is the Organization of tenants' client certificates; their
// CommonName is "tenant:NAME".
const TenantOrg = "hearth:tenants"

// SignTenant signs a client certificate for tenant name.
func (ca *CA) SignTenant(name string, pub crypto.PublicKey, validity time.Duration) ([]byte, error) {
	return ca.SignClient("tenant:"+name, []string{TenantOrg}, pub, validity)
}

// TenantOf names the tenant a verified client certificate belongs to; ok
// is false for any other certificate (a node's, say).
func TenantOf(cert *x509.Certificate) (name string, ok bool) {
	if len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != TenantOrg {
		return "", false
	}
	name, ok = strings.CutPrefix(cert.Subject.CommonName, "tenant:")
	return name, ok && name != ""
}

// Dir is a node's PKI directory.
type Dir string

func (d Dir) path(f string) string { return filepath.Join(string(d), f) }

// CACert is the CA's certificate file.
func (d Dir) CACert() string { return d.path(CACertFile) }

// NodeCert is the node's certificate file.
func (d Dir) NodeCert() string { return d.path(NodeCertFile) }

// NodeKey is the node's key file.
func (d Dir) NodeKey() string { return d.path(NodeKeyFile) }

// Exists reports whether the directory holds a node's identity.
func (d Dir) Exists() bool {
	for _, f := range []string{CACertFile, NodeCertFile, NodeKeyFile} {
		if _, err := os.Stat(d.path(f)); err != nil {
			return false
		}
	}
	return true
}

// WriteNode stores a node's identity (and, for the first node, the CA's
// key, which signs joins).
func (d Dir) WriteNode(caPEM, certPEM, keyPEM, caKeyPEM []byte) error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	files := map[string][]byte{CACertFile: caPEM, NodeCertFile: certPEM, NodeKeyFile: keyPEM}
	if caKeyPEM != nil {
		files[CAKeyFile] = caKeyPEM
	}
	for f, b := range files {
		if err := atomicfile.WriteFile(d.path(f), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// LoadCA reads the CA with its key; nil, nil when this node has no key.
func (d Dir) LoadCA() (*CA, error) {
	certPEM, err := os.ReadFile(d.path(CACertFile))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(d.path(CAKeyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ca, err := ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.path(CAKeyFile), err)
	}
	return ca, nil
}

// ParseCA reads a CA from its certificate and key, both PEM.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("no PEM key")
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: certPEM}, nil
}

// KeyPEM encodes the CA's key.
func (ca *CA) KeyPEM() ([]byte, error) {
	k, ok := ca.Key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("CA key is not ECDSA")
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// ParseCert reads one PEM certificate.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// TLS returns mutual-TLS configurations of the node: a server that
// requires client certificates of the CA, and a client that checks
// servers against it.
func (d Dir) TLS() (server, client *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(d.NodeCert(), d.NodeKey())
	if err != nil {
		return nil, nil, fmt.Errorf("node certificate: %w", err)
	}
	caPEM, err := os.ReadFile(d.CACert())
	if err != nil {
		return nil, nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("%s: no certificate", d.CACert())
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
	return server, client, nil
}

// PublicKeyPEM encodes a public key.
func PublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey reads a PEM public key.
func ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("no PEM public key")
	}
	return x509.ParsePKIXPublicKey(blk.Bytes)
}
