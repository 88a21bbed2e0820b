package tenancy

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/testetcd"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/pki"
	"github.com/hearth-cloud/hearth/macro/store"
)

func TestMain(m *testing.M) { testetcd.Main(m) }

func newManager(t *testing.T) *Manager {
	t.Helper()
	e := testetcd.Start(t)
	ca, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	return &Manager{Store: store.New(e.Client), CA: ca, TrustPEM: []byte("cluster CA")}
}

// issue creates (or rotates) a tenant and returns its parsed certificate.
func issue(t *testing.T, fn func(pub any) (*Credentials, error)) (*x509.Certificate, error) {
	t.Helper()
	key, _, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := fn(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	cert, err := pki.ParseCert(c.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert, nil
}

func TestCredentials(t *testing.T) {
	m := newManager(t)
	ctx := t.Context()
	create := func(name string, spec model.TenantSpec) (*x509.Certificate, error) {
		return issue(t, func(pub any) (*Credentials, error) { return m.Create(ctx, name, spec, pub) })
	}
	first, err := create("acme", model.TenantSpec{Pods: 3})
	if err != nil {
		t.Fatal(err)
	}
	if name, err := m.Authenticate(ctx, first); err != nil || name != "acme" {
		t.Fatalf("Authenticate = %q, %v", name, err)
	}
	for _, bad := range []struct {
		name string
		spec model.TenantSpec
		want string
	}{
		{"acme", model.TenantSpec{}, "already exists"},
		{"admin", model.TenantSpec{}, "admin's own"},
		{"Upper", model.TenantSpec{}, "invalid tenant name"},
		{"a/b", model.TenantSpec{}, "invalid tenant name"},
		{"", model.TenantSpec{}, "invalid tenant name"},
		{strings.Repeat("x", 64), model.TenantSpec{}, "invalid tenant name"},
		{"neg", model.TenantSpec{MemoryMiB: -1}, "negative"},
	} {
		if _, err := create(bad.name, bad.spec); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("Create(%q) = %v, want %q", bad.name, err, bad.want)
		}
	}
	if _, err := m.Get(ctx, "neg"); !errdefs.IsNotFound(err) {
		t.Errorf("a refused tenant was recorded: %v", err)
	}

	// A rotation revokes the old certificate at once.
	second, err := issue(t, func(pub any) (*Credentials, error) { return m.Rotate(ctx, "acme", pub) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Authenticate(ctx, first); !errdefs.IsUnauthenticated(err) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("the rotated certificate: %v", err)
	}
	if name, err := m.Authenticate(ctx, second); err != nil || name != "acme" {
		t.Errorf("the new certificate: %q, %v", name, err)
	}
	if _, err := issue(t, func(pub any) (*Credentials, error) { return m.Rotate(ctx, "nobody", pub) }); !errdefs.IsNotFound(err) {
		t.Errorf("rotate of an unknown tenant: %v", err)
	}

	// A node's certificate, and a tenant's of a name never created.
	key, _, _ := pki.NewKey()
	nodePEM, _ := m.CA.SignNode("n1", &key.PublicKey, nil)
	nodeCert, _ := pki.ParseCert(nodePEM)
	if _, err := m.Authenticate(ctx, nodeCert); err == nil {
		t.Error("a node's certificate acts for a tenant")
	}
	ghostPEM, _ := m.CA.SignTenant("ghost", &key.PublicKey, CertValidity)
	ghost, _ := pki.ParseCert(ghostPEM)
	if _, err := m.Authenticate(ctx, ghost); !errdefs.IsUnauthenticated(err) {
		t.Errorf("a certificate of a tenant with no record: %v", err)
	}

	// Without the CA's key, nothing is issued.
	if _, err := (&Manager{Store: m.Store}).Create(ctx, "other", model.TenantSpec{}, &key.PublicKey); err == nil {
		t.Error("a node without the CA key created a tenant")
	}
}

func TestRemove(t *testing.T) {
	m := newManager(t)
	ctx := t.Context()
	cert, err := issue(t, func(pub any) (*Credentials, error) { return m.Create(ctx, "acme", model.TenantSpec{}, pub) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := issue(t, func(pub any) (*Credentials, error) { return m.Create(ctx, "other", model.TenantSpec{}, pub) }); err != nil {
		t.Fatal(err)
	}
	put := func(obj model.Object) {
		t.Helper()
		if err := m.Store.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	for _, tenant := range []string{"acme", "other"} {
		put(&model.Pod{Meta: model.Meta{Kind: model.KindPod, Tenant: tenant, Name: "p1"}, Spec: model.PodSpec{
			Containers: []model.Container{{Name: "c", Image: "x"}}, Desired: model.DesiredRunning}})
		put(&model.VolumeObject{Meta: model.Meta{Kind: model.KindVolume, Tenant: tenant, Name: "v1"}})
		put(&model.Network{Meta: model.Meta{Kind: model.KindNetwork, Tenant: tenant, Name: "n1"}})
	}
	gone := make(chan string, 4)
	fctx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() {
		done <- FollowRemovals(fctx, m.Store, func() ([]string, error) { return []string{"admin", "acme", "stale"}, nil },
			func(t string) { gone <- t })
	}()
	if got := <-gone; got != "stale" {
		t.Fatalf("FollowRemovals at start: %q, want the tenant without a record", got)
	}

	removed, err := m.Remove(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if removed[model.KindPod] != 1 || removed[model.KindVolume] != 1 || removed[model.KindNetwork] != 1 {
		t.Errorf("removed %v", removed)
	}
	if got := <-gone; got != "acme" {
		t.Errorf("FollowRemovals: %q", got)
	}
	stop()
	if err := <-done; err != nil {
		t.Error(err)
	}
	for _, kind := range []string{model.KindPod, model.KindVolume, model.KindNetwork} {
		if objs, _, _ := store.List[model.Meta](ctx, m.Store, kind, "acme"); len(objs) != 0 {
			t.Errorf("acme's %s are left: %d", kind, len(objs))
		}
		if objs, _, _ := store.List[model.Meta](ctx, m.Store, kind, "other"); len(objs) != 1 {
			t.Errorf("other's %s went too", kind)
		}
	}
	if _, err := m.Authenticate(ctx, cert); !errdefs.IsUnauthenticated(err) {
		t.Errorf("a removed tenant's certificate: %v", err)
	}
	if _, err := m.Remove(ctx, "acme"); !errdefs.IsNotFound(err) {
		t.Errorf("second removal: %v", err)
	}
	if _, err := m.Remove(ctx, Admin); err == nil {
		t.Error("the admin tenant was removed")
	}
}

func TestQuota(t *testing.T) {
	q := model.TenantSpec{CPUs: 4, MemoryMiB: 2048, Pods: 3, VolumeBytes: 1 << 30}
	for _, c := range []struct {
		used, add Usage
		want      string
	}{
		{Usage{Pods: 2, CPUs: 2, MemoryMiB: 1024}, Usage{Pods: 1, CPUs: 2, MemoryMiB: 1024}, ""},
		{Usage{Pods: 3}, Usage{Pods: 1}, "quota exceeded: pods 3 of 3 in use, 1 more asked"},
		{Usage{MemoryMiB: 2048}, Usage{MemoryMiB: 512}, "quota exceeded: memory 2GiB of 2GiB in use, 512MiB more asked"},
		{Usage{CPUs: 4, MemoryMiB: 2048}, Usage{CPUs: 1, MemoryMiB: 1}, "cpus 4 of 4 in use, 1 more asked; memory"},
		{Usage{VolumeBytes: 1 << 30}, Usage{VolumeBytes: 1}, "volumes 1GiB of 1GiB in use"},
		// Over the quota already (it was lowered): what takes nothing
		// more still passes.
		{Usage{Pods: 5, MemoryMiB: 4096}, Usage{}, ""},
	} {
		err := Exceeds(q, c.used, c.add)
		if c.want == "" {
			if err != nil {
				t.Errorf("Exceeds(%+v, %+v) = %v", c.used, c.add, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) || !errdefs.IsPermissionDenied(err) {
			t.Errorf("Exceeds(%+v, %+v) = %v, want %q", c.used, c.add, err, c.want)
		}
	}
	if err := Exceeds(model.TenantSpec{}, Usage{Pods: 1000}, Usage{Pods: 1, MemoryMiB: 1 << 20}); err != nil {
		t.Errorf("no quota: %v", err)
	}

	pods := []*model.Pod{
		{Spec: model.PodSpec{Desired: model.DesiredRunning, Resources: model.Resources{CPUs: 2, MemoryMiB: 512}}},
		{Spec: model.PodSpec{Desired: model.DesiredStopped, Resources: model.Resources{CPUs: 1, MemoryMiB: 256}}},
	}
	vols := []*model.VolumeObject{{Spec: model.VolumeSpec{SizeBytes: 10}}, {Spec: model.VolumeSpec{SizeBytes: 5}}}
	if got, want := Of(pods, vols), (Usage{Pods: 2, CPUs: 2, MemoryMiB: 512, VolumeBytes: 15}); got != want {
		t.Errorf("Of = %+v, want %+v", got, want)
	}
}

func TestAdmit(t *testing.T) {
	m := newManager(t)
	ctx := t.Context()
	if _, err := issue(t, func(pub any) (*Credentials, error) {
		return m.Create(ctx, "acme", model.TenantSpec{Pods: 1, MemoryMiB: 1024}, pub)
	}); err != nil {
		t.Fatal(err)
	}
	pod := &model.Pod{Meta: model.Meta{Kind: model.KindPod, Tenant: "acme", Name: "p1"}, Spec: model.PodSpec{
		Containers: []model.Container{{Name: "c", Image: "x"}}, Desired: model.DesiredRunning, Resources: model.Resources{CPUs: 1, MemoryMiB: 1024}}}
	acme, _, err := Limited(ctx, m.Store, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if err := Admit(ctx, m.Store, acme, PodUsage(pod, true), ""); err != nil {
		t.Fatal(err)
	}
	if err := m.Store.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := Admit(ctx, m.Store, acme, Usage{Pods: 1}, ""); err == nil || !strings.Contains(err.Error(), "pods 1 of 1") {
		t.Errorf("a second pod: %v", err)
	}
	// Starting the pod again counts it once.
	if err := Admit(ctx, m.Store, acme, PodUsage(pod, true), pod.Name); err != nil {
		t.Errorf("restart of the one pod: %v", err)
	}
	// The admin, and tenants without a record, have no quota.
	for _, tenant := range []string{Admin, "norecord"} {
		if err := Admitted(ctx, m.Store, tenant, Usage{Pods: 100, MemoryMiB: 1 << 30}, func() error { return nil }); err != nil {
			t.Errorf("Admit(%s): %v", tenant, err)
		}
	}
	if _, err := m.SetQuotas(ctx, "acme", model.TenantSpec{}); err != nil {
		t.Fatal(err)
	}
	if err := Admitted(ctx, m.Store, "acme", Usage{Pods: 5}, func() error { return nil }); err != nil {
		t.Errorf("quotas lifted: %v", err)
	}
}

func TestLoadCA(t *testing.T) {
	e := testetcd.Start(t)
	st := store.New(e.Client)
	first, err := LoadCA(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadCA(t.Context(), st)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Cert.Equal(again.Cert) || again.Key == nil {
		t.Error("a second load made another CA")
	}
	if first.Cert.Subject.CommonName != "hearth tenant CA" {
		t.Errorf("CA %q", first.Cert.Subject.CommonName)
	}
}

func TestAuditRotates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	a, err := OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	a.MaxBytes = 1000
	for i := 0; i < 30; i++ {
		a.Record(Entry{API: "docker", Tenant: "acme", Verb: "GET /containers/json", Object: "/containers/json", Status: 200})
	}
	a.Close()
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) > 1000 || len(old) > 1000 || len(cur) == 0 || len(old) == 0 {
		t.Errorf("sizes %d and %d", len(cur), len(old))
	}
	for _, line := range strings.Split(strings.TrimSpace(string(cur)), "\n") {
		var e Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Tenant != "acme" || e.Time.IsZero() {
			t.Fatalf("line %q: %v", line, err)
		}
	}
}
