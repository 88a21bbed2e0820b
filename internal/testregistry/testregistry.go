// Package testregistry runs a real CNCF distribution registry (Debian's
// docker-registry) on loopback for tests and benchmarks: without auth, with
// htpasswd basic auth, or with the bearer-token flow of Docker Hub and GHCR,
// whose token server it serves itself.
package testregistry

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Auth chooses how the registry authenticates.
type Auth int

const (
	NoAuth Auth = iota
	Basic
	Token
)

// The user the auth registries know.
const (
	User     = "alice"
	Password = "wonderland"
)

// Registry is a running registry.
type Registry struct {
	// Host is 127.0.0.1:port.
	Host string
	// DataDir is the registry's storage root.
	DataDir string
	cmd     *exec.Cmd
	log     *os.File
	token   *http.Server
}

// FreePort returns a loopback port nothing listens on.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start runs a registry with its files under dir.
func Start(dir string, auth Auth) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	r := &Registry{Host: fmt.Sprintf("127.0.0.1:%d", port), DataDir: filepath.Join(dir, "data")}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, r.DataDir, r.Host)
	switch auth {
	case Basic:
		hash, err := bcrypt.GenerateFromPassword([]byte(Password), bcrypt.MinCost)
		if err != nil {
			return nil, err
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(User+":"+string(hash)+"\n"), 0o644); err != nil {
			return nil, err
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: hearth-test\n    path: %s\n", htpasswd)
	case Token:
		realm, certFile, err := r.startTokenServer(dir)
		if err != nil {
			return nil, err
		}
		cfg += fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: hearth-test-registry\n    issuer: hearth-test-issuer\n    rootcertbundle: %s\n", realm, certFile)
	}
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	r.cmd = exec.Command("docker-registry", "serve", cfgFile)
	if r.log, err = os.Create(filepath.Join(dir, "registry.log")); err != nil {
		return nil, err
	}
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		r.Close()
		return nil, fmt.Errorf("start docker-registry (apt-get install docker-registry): %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			return r, nil
		}
		if time.Now().After(deadline) {
			r.Close()
			return nil, fmt.Errorf("registry did not listen on %s", r.Host)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close stops the registry.
func (r *Registry) Close() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	}
	if r.log != nil {
		r.log.Close()
	}
	if r.token != nil {
		r.token.Close()
	}
}

// startTokenServer serves the bearer-token flow Docker Hub and GHCR use:
// the registry sends clients to /token, which checks their basic
// credentials and signs a JWT granting what they asked for.
func (r *Registry) startTokenServer(dir string) (realm, certFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hearth-test-issuer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	certFile = filepath.Join(dir, "token.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)

	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	sign := func(claims map[string]any) string {
		h, _ := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(der)}})
		c, _ := json.Marshal(claims)
		input := b64(h) + "." + b64(c)
		sum := sha256.Sum256([]byte(input))
		sr, ss, err := ecdsa.Sign(rand.Reader, key, sum[:])
		if err != nil {
			return ""
		}
		sig := make([]byte, 64)
		sr.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
		return input + "." + b64(sig)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		user, pass, ok := req.BasicAuth()
		if ok && (user != User || pass != Password) {
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
			return
		}
		var access []map[string]any
		if ok {
			for _, scope := range req.URL.Query()["scope"] {
				parts := strings.Split(scope, ":")
				if len(parts) == 3 && parts[0] == "repository" {
					access = append(access, map[string]any{"type": "repository", "name": parts[1], "actions": strings.Split(parts[2], ",")})
				}
			}
		}
		now := time.Now()
		tok := sign(map[string]any{
			"iss": "hearth-test-issuer", "sub": user, "aud": req.URL.Query().Get("service"),
			"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
			"jti": fmt.Sprint(now.UnixNano()), "access": access,
		})
		json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 300})
	})}
	go srv.Serve(ln)
	r.token = srv
	// A host name, not an IP: clients refuse token realms at private IP
	// literals.
	return fmt.Sprintf("http://localhost:%d/token", ln.Addr().(*net.TCPAddr).Port), certFile, nil
}
