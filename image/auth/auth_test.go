package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

func registry(t *testing.T, s string) name.Registry {
	t.Helper()
	r, err := name.NewRegistry(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wantBasic(t *testing.T, kc authn.Keychain, reg, user, pass string) {
	t.Helper()
	a, err := kc.Resolve(registry(t, reg))
	if err != nil {
		t.Fatalf("Resolve(%s): %v", reg, err)
	}
	c, err := a.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	if a == authn.Anonymous || c.Username != user || c.Password != pass {
		t.Fatalf("Resolve(%s) = %+v, want basic %s:%s", reg, c, user, pass)
	}
}

func wantAnonymous(t *testing.T, kc authn.Keychain, reg string) {
	t.Helper()
	a, err := kc.Resolve(registry(t, reg))
	if err != nil {
		t.Fatalf("Resolve(%s): %v", reg, err)
	}
	if a != authn.Anonymous {
		c, _ := a.Authorization()
		t.Fatalf("Resolve(%s) = %+v, want anonymous", reg, c)
	}
}

func TestHostKey(t *testing.T) {
	t.Parallel()
	hub := "https://index.docker.io/v1/"
	tests := map[string]string{
		"":                     hub,
		"index.docker.io":      hub,
		"docker.io":            hub,
		"registry-1.docker.io": hub,
		"ghcr.io":              "ghcr.io",
		"localhost:5000":       "localhost:5000",
		"127.0.0.1:5000":       "127.0.0.1:5000",
		"docker.io.evil.com":   "docker.io.evil.com",
	}
	for in, want := range tests {
		if got := HostKey(in); got != want {
			t.Errorf("HostKey(%q) = %q, want %q", in, got, want)
		}
	}
	if HostKey(name.DefaultRegistry) != hub {
		t.Errorf("HostKey(name.DefaultRegistry) = %q", HostKey(name.DefaultRegistry))
	}
}

func TestLoginLogout(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "auth")
	s := &Store{Dir: dir}
	if err := s.Login("alice", "ghcr.io", "alice", "s3cr:et"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	if err := s.Login("alice", "docker.io", "al", "hubpass"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	p := filepath.Join(dir, "alice.json")
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file mode %v, want 0600", fi.Mode().Perm())
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm()&0o077 != 0 {
		t.Fatalf("credentials dir mode %v, %v: others can read it", di.Mode().Perm(), err)
	}
	// The file is Docker's config.json format.
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("credentials file %q: %v", b, err)
	}
	if got := f.Auths["ghcr.io"].Auth; got != base64.StdEncoding.EncodeToString([]byte("alice:s3cr:et")) {
		t.Fatalf("ghcr.io auth %q", got)
	}
	if _, ok := f.Auths["https://index.docker.io/v1/"]; !ok {
		t.Fatalf("docker.io not keyed as Docker Hub's index URL: %s", b)
	}

	kc := s.Keychain("alice")
	wantBasic(t, kc, "ghcr.io", "alice", "s3cr:et") // the password keeps its colon
	wantBasic(t, kc, "index.docker.io", "al", "hubpass")
	wantBasic(t, kc, "docker.io", "al", "hubpass")
	wantAnonymous(t, kc, "quay.io")
	// Another tenant has none of alice's credentials.
	wantAnonymous(t, s.Keychain("bob"), "ghcr.io")

	// Logging in again replaces the credentials.
	if err := s.Login("alice", "ghcr.io", "alice", "new"); err != nil {
		t.Fatal(err)
	}
	wantBasic(t, kc, "ghcr.io", "alice", "new")

	if err := s.Logout("alice", "ghcr.io"); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	wantAnonymous(t, kc, "ghcr.io")
	wantBasic(t, kc, "docker.io", "al", "hubpass")
	if err := s.Logout("alice", "ghcr.io"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("second Logout = %v, want ErrNotFound", err)
	}
	if err := s.Logout("bob", "quay.io"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Logout of a tenant without credentials = %v, want ErrNotFound", err)
	}
	if err := s.Logout("alice", "registry-1.docker.io"); err != nil {
		t.Fatalf("Logout of a Docker Hub alias: %v", err)
	}
	wantAnonymous(t, kc, "index.docker.io")
}

func TestLoginRequiresCredentials(t *testing.T) {
	t.Parallel()
	s := &Store{Dir: t.TempDir()}
	for _, c := range [][2]string{{"", "p"}, {"u", ""}, {"", ""}} {
		if err := s.Login("alice", "ghcr.io", c[0], c[1]); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Login(%q, %q) = %v, want ErrInvalidArgument", c[0], c[1], err)
		}
	}
	if _, err := os.Stat(filepath.Join(s.Dir, "alice.json")); err == nil {
		t.Error("a refused login wrote the credentials file")
	}
}

func TestKeychainSchemeKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	file := `{"auths": {
		"https://ghcr.io": {"auth": "` + enc("g:1") + `"},
		"http://registry.local:5000": {"auth": "` + enc("r:2") + `"},
		"quay.io": {"auth": ""},
		"empty.example": {}
	}}`
	if err := os.WriteFile(filepath.Join(dir, "alice.json"), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	kc := (&Store{Dir: dir}).Keychain("alice")
	wantBasic(t, kc, "ghcr.io", "g", "1")
	wantBasic(t, kc, "registry.local:5000", "r", "2")
	wantAnonymous(t, kc, "quay.io")
	wantAnonymous(t, kc, "empty.example")
	wantAnonymous(t, kc, "registry.local") // another port is another registry
}

func TestKeychainCorrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := &Store{Dir: dir}
	if err := os.WriteFile(filepath.Join(dir, "alice.json"), []byte(`{"auths": {`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Keychain("alice").Resolve(registry(t, "ghcr.io")); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Resolve over a corrupt file = %v, want a corrupt credentials error", err)
	}
	if err := s.Login("alice", "ghcr.io", "u", "p"); err == nil {
		t.Fatal("Login over a corrupt file succeeded (and overwrote it)")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "alice.json")); string(b) != `{"auths": {` {
		t.Fatalf("corrupt file was rewritten: %q", b)
	}

	// An entry whose auth is not base64 is an error, not anonymous.
	if err := os.WriteFile(filepath.Join(dir, "bob.json"), []byte(`{"auths": {"ghcr.io": {"auth": "!!not base64!!"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Keychain("bob").Resolve(registry(t, "ghcr.io")); err == nil {
		t.Fatal("Resolve of a bad auth entry succeeded")
	}
	// A file without auths is empty, not corrupt.
	if err := os.WriteFile(filepath.Join(dir, "carol.json"), []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	wantAnonymous(t, s.Keychain("carol"), "ghcr.io")
	if err := s.Login("carol", "ghcr.io", "c", "p"); err != nil {
		t.Fatalf("Login into a file without auths: %v", err)
	}
	wantBasic(t, s.Keychain("carol"), "ghcr.io", "c", "p")
}

// DOCKER_CONFIG is process-wide, so this test does not run in parallel.
func TestDockerConfigFallback(t *testing.T) {
	dockerDir := t.TempDir()
	cfg := `{"auths": {"private.example": {"auth": "` + base64.StdEncoding.EncodeToString([]byte("docker:user")) + `"}}}`
	if err := os.WriteFile(filepath.Join(dockerDir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dockerDir)

	s := &Store{Dir: t.TempDir(), DockerConfig: true, AdminTenant: "admin"}
	wantBasic(t, s.Keychain("admin"), "private.example", "docker", "user")
	wantAnonymous(t, s.Keychain("alice"), "private.example")
	wantAnonymous(t, s.Keychain("admin"), "other.example")

	// The tenant's own credentials come first.
	if err := s.Login("admin", "private.example", "own", "pw"); err != nil {
		t.Fatal(err)
	}
	wantBasic(t, s.Keychain("admin"), "private.example", "own", "pw")

	// Without DockerConfig the admin gets no fallback either.
	off := &Store{Dir: t.TempDir(), AdminTenant: "admin"}
	wantAnonymous(t, off.Keychain("admin"), "private.example")
	// Nor does anyone when no admin tenant is named.
	noAdmin := &Store{Dir: t.TempDir(), DockerConfig: true}
	wantAnonymous(t, noAdmin.Keychain("alice"), "private.example")
}
