package pki

import (
	"testing"
	"time"
)

func TestTenantOf(t *testing.T) {
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what   string
		sign   func() ([]byte, error)
		tenant string
	}{
		{"tenant", func() ([]byte, error) { return ca.SignTenant("acme", &key.PublicKey, time.Hour) }, "acme"},
		{"node", func() ([]byte, error) { return ca.SignNode("n1", &key.PublicKey, nil) }, ""},
		{"other org", func() ([]byte, error) { return ca.SignClient("tenant:acme", []string{"x"}, &key.PublicKey, time.Hour) }, ""},
		{"no name", func() ([]byte, error) {
			return ca.SignClient("tenant:", []string{TenantOrg}, &key.PublicKey, time.Hour)
		}, ""},
		{"two orgs", func() ([]byte, error) {
			return ca.SignClient("tenant:acme", []string{TenantOrg, "hearth:nodes"}, &key.PublicKey, time.Hour)
		}, ""},
	} {
		b, err := tc.sign()
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ParseCert(b)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := TenantOf(cert)
		if got != tc.tenant || ok != (tc.tenant != "") {
			t.Errorf("%s: TenantOf = %q, %v; want %q", tc.what, got, ok, tc.tenant)
		}
	}
}
