// Package auth keeps registry credentials per tenant, in the format of
// Docker's config.json, and turns them into the keychain
// go-containerregistry authenticates with (basic auth, and the bearer
// token flow of Docker Hub, GHCR and distribution).
package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/image/store"
	"github.com/hearth-cloud/hearth/internal/atomicfile"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Store holds credentials under a directory: <tenant>.json each.
type Store struct {
	Dir string
	// DockerConfig adds the user's own docker config.json
	// ($DOCKER_CONFIG/config.json or ~/.docker/config.json) as a fallback
	// for the admin tenant; tenants never see it.
	DockerConfig bool
	// AdminTenant names the tenant that may use DockerConfig.
	AdminTenant string
}

type file struct {
	Auths map[string]entry `json:"auths"`
}

type entry struct {
	Auth string `json:"auth,omitempty"`
}

// HostKey is how a registry is keyed: Docker Hub under its historical
// index URL, as docker login writes it.
func HostKey(registry string) string {
	switch registry {
	case "", name.DefaultRegistry, "docker.io", "registry-1.docker.io":
		return "https://index.docker.io/v1/"
	}
	return registry
}

func (s *Store) path(tenant string) string { return filepath.Join(s.Dir, tenant+".json") }

func checkTenant(tenant string) error {
	if !store.ValidTenant(tenant) {
		return errdefs.InvalidArgument("invalid tenant %q", tenant)
	}
	return nil
}

func (s *Store) read(tenant string) (file, error) {
	var f file
	if err := checkTenant(tenant); err != nil {
		return f, err
	}
	b, err := os.ReadFile(s.path(tenant))
	if errors.Is(err, os.ErrNotExist) {
		return file{Auths: map[string]entry{}}, nil
	}
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("corrupt credentials %s: %w", s.path(tenant), err)
	}
	if f.Auths == nil {
		f.Auths = map[string]entry{}
	}
	return f, nil
}

func (s *Store) update(tenant string, fn func(*file)) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(s.path(tenant)+".lock", os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return err
	}
	f, err := s.read(tenant)
	if err != nil {
		return err
	}
	fn(&f)
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path(tenant), b, 0o600)
}

// Login stores credentials for a registry.
func (s *Store) Login(tenant, registry, user, password string) error {
	if user == "" || password == "" {
		return errdefs.InvalidArgument("username and password are required")
	}
	return s.update(tenant, func(f *file) {
		f.Auths[HostKey(registry)] = entry{Auth: base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}
	})
}

// Logout forgets a registry's credentials; it fails when there were none.
func (s *Store) Logout(tenant, registry string) error {
	var found bool
	err := s.update(tenant, func(f *file) {
		_, found = f.Auths[HostKey(registry)]
		delete(f.Auths, HostKey(registry))
	})
	if err == nil && !found {
		return errdefs.NotFound("not logged in to %s", registry)
	}
	return err
}

// Keychain returns the tenant's credentials as a keychain.
func (s *Store) Keychain(tenant string) authn.Keychain {
	kc := authn.Keychain(&tenantKeychain{s: s, tenant: tenant})
	if s.DockerConfig && tenant == s.AdminTenant {
		kc = authn.NewMultiKeychain(kc, authn.DefaultKeychain)
	}
	return kc
}

type tenantKeychain struct {
	s      *Store
	tenant string
}

func (k *tenantKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	f, err := k.s.read(k.tenant)
	if err != nil {
		return nil, err
	}
	e, ok := f.Auths[HostKey(r.RegistryStr())]
	if !ok {
		// Also match entries written with a scheme.
		for host, v := range f.Auths {
			if strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://") == r.RegistryStr() {
				e, ok = v, true
				break
			}
		}
	}
	if !ok || e.Auth == "" {
		return authn.Anonymous, nil
	}
	b, err := base64.StdEncoding.DecodeString(e.Auth)
	if err != nil {
		return nil, fmt.Errorf("corrupt credentials for %s", r.RegistryStr())
	}
	user, pass, _ := strings.Cut(string(b), ":")
	return &authn.Basic{Username: user, Password: pass}, nil
}

// Forget removes every credential of tenant (a removed tenant).
func (s *Store) Forget(tenant string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if err := os.Remove(s.path(tenant)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
