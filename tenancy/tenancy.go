// Package tenancy keeps what makes a tenant beyond its objects: its
// record and credentials (one client certificate of the cluster CA at a
// time, named by serial, so a rotation revokes the old one at once), its
// quotas, the removal of everything it owns, and the audit log of the
// calls made in its name.
package tenancy

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/pki"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Admin is the cluster admin's own tenant: what the local sockets create.
// It has no record, no quota and no certificate.
const Admin = "admin"

// CertValidity is how long a tenant's certificate is valid.
const CertValidity = 365 * 24 * time.Hour

// Manager creates, rotates, checks and removes tenants.
type Manager struct {
	Store *store.Store
	// CA signs tenants' certificates (LoadCA).
	CA *pki.CA
	// TrustPEM is the cluster CA's certificate, which signs the nodes'
	// and which tenants' clients trust.
	TrustPEM []byte
}

// caKey is where the tenants' CA lives in etcd.
const caKey = store.Prefix + "pki/tenant-ca"

// LoadCA reads the CA that signs tenants' certificates, and makes it on
// first use. It is not the cluster CA, which etcd and the nodes' APIs
// trust: a tenant's certificate opens the tenant APIs and nothing else.
// It lives in etcd, so that every node checks tenants' certificates and
// any node may sign them.
func LoadCA(ctx context.Context, st *store.Store) (*pki.CA, error) {
	type stored struct{ Cert, Key []byte }
	cli := st.Client()
	resp, err := cli.Get(ctx, caKey)
	if err != nil {
		return nil, fmt.Errorf("read the tenant CA: %w", err)
	}
	if len(resp.Kvs) == 0 {
		ca, err := pki.NewCA("hearth tenant CA")
		if err != nil {
			return nil, err
		}
		keyPEM, err := ca.KeyPEM()
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(stored{ca.PEM, keyPEM})
		if err != nil {
			return nil, err
		}
		// The first writer wins; the others read what it wrote.
		txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(caKey), "=", 0)).
			Then(clientv3.OpPut(caKey, string(b))).Else(clientv3.OpGet(caKey)).Commit()
		if err != nil {
			return nil, fmt.Errorf("store the tenant CA: %w", err)
		}
		if txn.Succeeded {
			return ca, nil
		}
		resp = (*clientv3.GetResponse)(txn.Responses[0].GetResponseRange())
	}
	var s stored
	if err := json.Unmarshal(resp.Kvs[0].Value, &s); err != nil {
		return nil, fmt.Errorf("read the tenant CA: %w", err)
	}
	ca, err := pki.ParseCA(s.Cert, s.Key)
	if err != nil {
		return nil, fmt.Errorf("read the tenant CA: %w", err)
	}
	return ca, nil
}

// Credentials are what a new or rotated tenant gets: its certificate,
// and the CA's, which its clients trust.
type Credentials struct {
	Tenant  *model.Tenant `json:"tenant"`
	CertPEM []byte        `json:"cert"`
	CAPEM   []byte        `json:"ca"`
}

// Create records tenant name with quotas spec and signs a certificate for
// pub, the key its clients hold.
func (m *Manager) Create(ctx context.Context, name string, spec model.TenantSpec, pub crypto.PublicKey) (*Credentials, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := checkQuotas(spec); err != nil {
		return nil, err
	}
	cert, serial, err := m.sign(name, pub)
	if err != nil {
		return nil, err
	}
	spec.CertSerial, spec.Removing = serial, false
	t := &model.Tenant{Meta: model.Meta{Kind: model.KindTenant, Name: name}, Spec: spec}
	if err := m.Store.Create(ctx, t); err != nil {
		if errdefs.IsAlreadyExists(err) {
			return nil, errdefs.Conflict("tenant %s already exists", name)
		}
		return nil, fmt.Errorf("create tenant %s: %w", name, err)
	}
	return &Credentials{Tenant: t, CertPEM: cert, CAPEM: m.TrustPEM}, nil
}

// Rotate signs a new certificate for pub; the tenant's older ones stop
// working with the next call they make.
func (m *Manager) Rotate(ctx context.Context, name string, pub crypto.PublicKey) (*Credentials, error) {
	if _, err := m.Get(ctx, name); err != nil {
		return nil, err
	}
	cert, serial, err := m.sign(name, pub)
	if err != nil {
		return nil, err
	}
	t, err := store.Modify[model.Tenant](ctx, m.Store, model.KindTenant, "", name, func(t *model.Tenant) (bool, error) {
		if t.Spec.Removing {
			return false, errdefs.Conflict("tenant %s is being removed", name)
		}
		t.Spec.CertSerial = serial
		return true, nil
	})
	if err != nil {
		return nil, m.notFound(name, err)
	}
	return &Credentials{Tenant: t, CertPEM: cert, CAPEM: m.TrustPEM}, nil
}

// SetQuotas changes a tenant's quotas, which bind what is created from
// then on.
func (m *Manager) SetQuotas(ctx context.Context, name string, q model.TenantSpec) (*model.Tenant, error) {
	if err := checkQuotas(q); err != nil {
		return nil, err
	}
	t, err := store.Modify[model.Tenant](ctx, m.Store, model.KindTenant, "", name, func(t *model.Tenant) (bool, error) {
		t.Spec.CPUs, t.Spec.MemoryMiB, t.Spec.Pods, t.Spec.VolumeBytes = q.CPUs, q.MemoryMiB, q.Pods, q.VolumeBytes
		return true, nil
	})
	return t, m.notFound(name, err)
}

// Get reads a tenant's record.
func (m *Manager) Get(ctx context.Context, name string) (*model.Tenant, error) {
	t, err := store.Get[model.Tenant](ctx, m.Store, model.KindTenant, "", name)
	return t, m.notFound(name, err)
}

// List lists the tenants.
func (m *Manager) List(ctx context.Context) ([]*model.Tenant, error) {
	ts, _, err := store.List[model.Tenant](ctx, m.Store, model.KindTenant, "")
	return ts, err
}

// Authenticate names the tenant a verified client certificate acts for,
// or says why it may not: it is not a tenant's, its tenant is gone or
// going, or a rotation has replaced it.
func (m *Manager) Authenticate(ctx context.Context, cert *x509.Certificate) (string, error) {
	name, ok := pki.TenantOf(cert)
	if !ok {
		return "", errdefs.PermissionDenied("this certificate is not a tenant's")
	}
	t, err := store.Get[model.Tenant](ctx, m.Store, model.KindTenant, "", name)
	if errdefs.IsNotFound(err) {
		t, err = nil, nil
	}
	if err != nil {
		return "", err
	}
	if err := accepts(name, t, cert); err != nil {
		return "", err
	}
	return name, nil
}

// accepts says why tenant name's record t (nil: it has none) does not
// accept cert as its credentials; nil when it does.
func accepts(name string, t *model.Tenant, cert *x509.Certificate) error {
	switch {
	case t == nil:
		return errdefs.Unauthenticated("the certificate's tenant %s does not exist", name)
	case t.Spec.Removing:
		return errdefs.Unauthenticated("tenant %s is being removed", name)
	case t.Spec.CertSerial != cert.SerialNumber.Text(16):
		return errdefs.Unauthenticated("this certificate of tenant %s was revoked: its credentials were rotated", name)
	}
	return nil
}

func (m *Manager) sign(name string, pub crypto.PublicKey) (certPEM []byte, serial string, err error) {
	if m.CA == nil || m.CA.Key == nil {
		return nil, "", errdefs.FailedPrecondition("this node cannot sign tenants' certificates")
	}
	if pub == nil {
		return nil, "", errdefs.InvalidArgument("a public key is required")
	}
	certPEM, err = m.CA.SignTenant(name, pub, CertValidity)
	if err != nil {
		return nil, "", errdefs.InvalidArgument("sign a certificate for tenant %s: %v", name, err)
	}
	cert, err := pki.ParseCert(certPEM)
	if err != nil {
		return nil, "", err
	}
	return certPEM, cert.SerialNumber.Text(16), nil
}

func (m *Manager) notFound(name string, err error) error {
	if errdefs.IsNotFound(err) {
		return errdefs.NotFound("no such tenant: %s", name)
	}
	return err
}

func checkName(name string) error {
	switch {
	case name == Admin:
		return errdefs.InvalidArgument("%q is the admin's own tenant", name)
	case !nameRE.MatchString(name):
		return errdefs.InvalidArgument("invalid tenant name %q: use 1 to 63 lowercase letters, digits and dashes, starting with a letter or digit", name)
	}
	return nil
}

func checkQuotas(q model.TenantSpec) error {
	if q.CPUs < 0 || q.MemoryMiB < 0 || q.Pods < 0 || q.VolumeBytes < 0 {
		return errdefs.InvalidArgument("quotas must not be negative")
	}
	return nil
}

// nameRE is a DNS label: tenant names become directory names, and parts
// of certificates' and kubeconfigs' names.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
