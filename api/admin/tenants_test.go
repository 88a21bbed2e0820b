package admin_test

import (
	"bufio"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hearth-cloud/hearth/api/admin"
	"github.com/hearth-cloud/hearth/macro/pki"
	"github.com/hearth-cloud/hearth/tenancy"
)

func TestTenantRoutes(t *testing.T) {
	v := newEnv(t)
	ca, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	audit, err := tenancy.OpenAudit(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	v.srv.Tenants = &tenancy.Manager{Store: v.s, CA: ca, TrustPEM: []byte("cluster CA")}
	v.srv.DockerHost, v.srv.KubeServer = "tcp://h:2376", "https://h:6443"
	v.srv.Audit = audit
	hs := httptest.NewServer(v.srv.Handler()) // with the tenant routes
	t.Cleanup(hs.Close)
	v.url = hs.URL
	key, _, _ := pki.NewKey()
	pub, _ := pki.PublicKeyPEM(&key.PublicKey)
	body := func(fields string) string {
		return `{"publicKey":` + strconv.Quote(string(pub)) + fields + `}`
	}

	var creds admin.TenantCredentials
	v.expect("POST", "/v1/tenants", body(`,"name":"acme","quotas":{"pods":2}`), 201, &creds)
	if creds.DockerHost != "tcp://h:2376" || creds.KubeServer != "https://h:6443" || string(creds.CAPEM) != "cluster CA" {
		t.Errorf("credentials: %+v", creds)
	}
	cert, err := pki.ParseCert(creds.CertPEM)
	if err != nil || creds.Tenant.Spec.CertSerial != cert.SerialNumber.Text(16) {
		t.Errorf("certificate %v, serial %q", err, creds.Tenant.Spec.CertSerial)
	}

	v.expectError("POST", "/v1/tenants", `{"name":`, 400, "invalid JSON")
	v.expectError("POST", "/v1/tenants", `{"name":"x","bogus":1}`, 400, "unknown field")
	v.expectError("POST", "/v1/tenants", `{"name":"x"}`, 400, "public key is required")
	v.expectError("POST", "/v1/tenants", `{"name":"x","publicKey":"junk"}`, 400, "invalid public key")
	v.expectError("POST", "/v1/tenants", body(`,"name":"acme"`), 409, "already exists")
	v.expectError("POST", "/v1/tenants", body(`,"name":"../etc"`), 400, "invalid tenant name")
	v.expectError("POST", "/v1/tenants", body(`,"name":"big","quotas":{"cpus":-2}`), 400, "negative")
	v.expectError("POST", "/v1/tenants", body(`,"name":"`+strings.Repeat("a", 5000)+`"`), 400, "invalid tenant name")
	v.expectError("GET", "/v1/tenants/nobody", "", 404, "no such tenant: nobody")
	v.expectError("POST", "/v1/tenants/nobody/rotate", body(""), 404, "no such tenant")
	v.expectError("PUT", "/v1/tenants/nobody/quotas", `{"pods":1}`, 404, "no such tenant")
	v.expectError("PUT", "/v1/tenants/acme/quotas", `{"pods":-1}`, 400, "negative")
	v.expectError("DELETE", "/v1/tenants/nobody", "", 404, "no such tenant")
	v.expectError("DELETE", "/v1/tenants/admin", "", 400, "cannot be removed")

	var list []admin.TenantInfo
	v.expect("GET", "/v1/tenants", "", 200, &list)
	if len(list) != 1 || list[0].Tenant.Name != "acme" || list[0].Tenant.Spec.Pods != 2 {
		t.Errorf("list: %+v", list)
	}
	var rotated admin.TenantCredentials
	v.expect("POST", "/v1/tenants/acme/rotate", body(""), 200, &rotated)
	if rotated.Tenant.Spec.CertSerial == creds.Tenant.Spec.CertSerial || rotated.Tenant.Spec.Pods != 2 {
		t.Errorf("rotation: %+v", rotated.Tenant.Spec)
	}
	v.expect("DELETE", "/v1/tenants/acme", "", 200, nil)
	v.expectError("GET", "/v1/tenants/acme", "", 404, "no such tenant")

	// Every call is in the audit log, refused ones too.
	audit.Close()
	f, err := os.Open(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []tenancy.Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e tenancy.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, e)
	}
	if len(lines) != 19 {
		t.Errorf("%d audit lines, want 19", len(lines))
	}
	if l := lines[1]; l.API != "admin" || l.Tenant != "admin" || l.Verb != "POST /v1/tenants" || l.Status != 400 {
		t.Errorf("audit line: %+v", l)
	}
}

// TestPodQuota: pods the admin makes for a tenant count against its
// quota.
func TestPodQuota(t *testing.T) {
	v := newEnv(t)
	ca, _ := pki.NewCA("test")
	v.srv.Tenants = &tenancy.Manager{Store: v.s, CA: ca, TrustPEM: ca.PEM}
	hs := httptest.NewServer(v.srv.Handler())
	t.Cleanup(hs.Close)
	v.url = hs.URL
	key, _, _ := pki.NewKey()
	pub, _ := pki.PublicKeyPEM(&key.PublicKey)
	v.expect("POST", "/v1/tenants", `{"name":"acme","quotas":{"pods":1},"publicKey":`+strconv.Quote(string(pub))+`}`, 201, nil)
	pod := func(name string) string {
		return `{"tenant":"acme","name":"` + name + `","spec":{"containers":[{"image":"busybox"}]}}`
	}
	v.expect("POST", "/v1/pods", pod("p1"), 201, nil)
	v.expectError("POST", "/v1/pods", pod("p2"), 403, "quota exceeded: pods 1 of 1 in use")
	// The admin's own, and a tenant without a record, have no quota.
	v.expect("POST", "/v1/pods", `{"tenant":"other","name":"p2","spec":{"containers":[{"image":"busybox"}]}}`, 201, nil)
}
