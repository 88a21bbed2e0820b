package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"

	"github.com/hearth-cloud/hearth/image/auth"
	"github.com/hearth-cloud/hearth/image/layer"
	"github.com/hearth-cloud/hearth/image/store"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// AdminTenant owns what the local, admin-only interfaces (the CLI, the
// unix sockets) pull and load.
const AdminTenant = "admin"

// Service is the image API the rest of Hearth uses: the CLI, cradle's run,
// and the API frontends. Every call names the tenant it acts for; names
// resolve only among that tenant's references.
type Service struct {
	Store  *store.Store
	Layers *layer.Cache
	Auth   *auth.Store
	// Insecure lists registries (host[:port]) spoken to over plain HTTP;
	// loopback registries always are.
	Insecure []string
	// InUse returns the pods that use an image ID; Remove and Prune keep
	// images in use unless forced.
	InUse func(id v1.Hash) []string
	// LayersInUse returns the diff IDs of layers existing pods use.
	LayersInUse func() map[string]bool
	// Transport for registry calls; nil means http.DefaultTransport.
	Transport http.RoundTripper
}

// Progress is one step of a pull, push or load, as Docker's progress
// messages carry them.
type Progress struct {
	// ID is a layer's short digest, or empty for the whole image.
	ID      string
	Status  string
	Current int64
	Total   int64
}

func report(fn func(Progress), p Progress) {
	if fn != nil {
		fn(p)
	}
}

// ShortID is the 12-hex form Docker shows.
func ShortID(h v1.Hash) string {
	if len(h.Hex) < 12 {
		return h.Hex
	}
	return h.Hex[:12]
}

type credentialsKey struct{}

// WithCredentials makes the pulls and pushes made with ctx authenticate to
// registry with a, ahead of the tenant's stored login: the credentials a
// docker client sends with one call (X-Registry-Auth).
func WithCredentials(ctx context.Context, registry string, a authn.AuthConfig) context.Context {
	if r := auth.HostKey(registry); r != auth.HostKey("") {
		// Clients may name a registry as a URL.
		registry = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(r, "https://"), "http://"), "/")
	}
	return context.WithValue(ctx, credentialsKey{}, callCredentials{registry: auth.HostKey(registry), config: a})
}

type callCredentials struct {
	registry string
	config   authn.AuthConfig
}

// Resolve makes callCredentials a keychain of the one registry.
func (c callCredentials) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if auth.HostKey(r.RegistryStr()) != c.registry {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(c.config), nil
}

// keychain is the tenant's credentials, after the call's own.
func (s *Service) keychain(ctx context.Context, tenant string) authn.Keychain {
	kc := s.Auth.Keychain(tenant)
	if c, ok := ctx.Value(credentialsKey{}).(callCredentials); ok {
		kc = authn.NewMultiKeychain(c, kc)
	}
	return kc
}

func (s *Service) remoteOptions(ctx context.Context, tenant string) []remote.Option {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(s.keychain(ctx, tenant)),
		remote.WithPlatform(Platform),
		remote.WithUserAgent("hearth"),
	}
	if s.Transport != nil {
		opts = append(opts, remote.WithTransport(s.Transport))
	}
	return opts
}

// Pull fetches an image from its registry into the store for tenant. Blobs
// the store has already are not fetched again, but the registry is always
// asked for the manifest with the tenant's own credentials: having the
// blobs is no proof of the right to the image.
func (s *Service) Pull(ctx context.Context, tenant, ref string, progress func(Progress)) (*store.Ref, error) {
	r, err := ParseRef(ref, s.Insecure)
	if err != nil {
		return nil, err
	}
	opts := s.remoteOptions(ctx, tenant)
	desc, err := remote.Get(r, opts...)
	if err != nil {
		return nil, registryError(r, err)
	}
	img, err := desc.Image()
	if err != nil {
		if desc.MediaType.IsIndex() {
			return nil, errdefs.NotFound("no matching manifest for %s/%s in the manifest list entries", Platform.OS, Platform.Architecture)
		}
		return nil, registryError(r, err)
	}
	if err := CheckPlatform(img); err != nil {
		return nil, err
	}
	unlock, err := s.Store.Writing()
	if err != nil {
		return nil, err
	}
	defer unlock()

	m, err := img.Manifest()
	if err != nil {
		return nil, registryError(r, err)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, registryError(r, err)
	}
	mdigest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return nil, registryError(r, err)
	}
	if err := s.Store.WriteBlob(m.Config.Digest, m.Config.Size, bytes.NewReader(rawConfig), nil); err != nil {
		return nil, pullError(r, err)
	}

	for _, l := range m.Layers {
		report(progress, Progress{ID: ShortID(l.Digest), Status: "Pulling fs layer"})
	}
	client, err := s.blobClient(ctx, tenant, r.Context())
	if err != nil {
		return nil, registryError(r, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(3) // Docker's max-concurrent-downloads
	for _, l := range m.Layers {
		l := l
		g.Go(func() error {
			id := ShortID(l.Digest)
			if s.Store.HasBlob(l.Digest) {
				report(progress, Progress{ID: id, Status: "Already exists"})
				return nil
			}
			rc, err := fetchBlob(gctx, client, r.Context(), l.Digest)
			if err != nil {
				return registryError(r, err)
			}
			defer rc.Close()
			last := time.Time{}
			err = s.Store.WriteBlob(l.Digest, l.Size, rc, func(n int64) {
				// Enough updates for a smooth bar, not one per read.
				if now := time.Now(); n == l.Size || now.Sub(last) > 100*time.Millisecond {
					last = now
					report(progress, Progress{ID: id, Status: "Downloading", Current: n, Total: l.Size})
				}
			})
			if err != nil {
				return pullError(r, err)
			}
			report(progress, Progress{ID: id, Status: "Download complete"})
			report(progress, Progress{ID: id, Status: "Pull complete"})
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := s.Store.WriteBlob(mdigest, int64(len(rawManifest)), bytes.NewReader(rawManifest), nil); err != nil {
		return nil, pullError(r, err)
	}
	rec := store.Ref{
		Name:       Canonical(r),
		Manifest:   mdigest,
		ID:         m.Config.Digest,
		RepoDigest: canonicalRepo(r.Context()) + "@" + desc.Digest.String(),
		Added:      time.Now().UTC(),
	}
	if err := s.setRef(tenant, rec); err != nil {
		return nil, err
	}
	report(progress, Progress{Status: "Digest: " + desc.Digest.String()})
	return &rec, nil
}

// blobClient is an HTTP client authenticated for pulling from repo. Blobs
// are fetched with it directly rather than through go-containerregistry's
// layers, so each byte is hashed once, by the store, which then names a
// corrupt blob a digest mismatch.
func (s *Service) blobClient(ctx context.Context, tenant string, repo name.Repository) (*http.Client, error) {
	tr := s.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	a, err := s.keychain(ctx, tenant).Resolve(repo.Registry)
	if err != nil {
		return nil, err
	}
	rt, err := transport.NewWithContext(ctx, repo.Registry, a, tr, []string{repo.Scope(transport.PullScope)})
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: rt}, nil
}

func fetchBlob(ctx context.Context, c *http.Client, repo name.Repository, d v1.Hash) (io.ReadCloser, error) {
	u := fmt.Sprintf("%s://%s/v2/%s/blobs/%s", repo.Registry.Scheme(), repo.RegistryStr(), repo.RepositoryStr(), d)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp.Body, nil
}

// setRef adds or replaces a named reference, and drops an untagged entry
// of the same image, which now has a name. An image whose last name moves
// to another image stays, untagged, as Docker keeps it (`<none>`), until
// prune.
func (s *Service) setRef(tenant string, rec store.Ref) error {
	return s.Store.UpdateRefs(tenant, func(refs []store.Ref) ([]store.Ref, error) {
		var out []store.Ref
		var displaced []store.Ref
		for _, r := range refs {
			if r.Name == rec.Name && rec.Name != "" {
				if r.ID != rec.ID {
					displaced = append(displaced, r)
				}
				continue
			}
			if r.Name == "" && r.ID == rec.ID {
				continue
			}
			out = append(out, r)
		}
		for _, d := range displaced {
			kept := false
			for _, r := range out {
				if r.ID == d.ID {
					kept = true
					break
				}
			}
			if !kept {
				out = append(out, store.Ref{Manifest: d.Manifest, ID: d.ID, Added: d.Added})
			}
		}
		return append(out, rec), nil
	})
}

// registryError turns go-containerregistry's errors into Docker's words.
func registryError(r name.Reference, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode:
				return errdefs.NotFound("manifest for %s not found: manifest unknown: %s", Familiar(Canonical(r)), d.Message)
			case transport.NameUnknownErrorCode:
				return errdefs.NotFound("repository %s not found: name unknown: %s", canonicalRepo(r.Context()), d.Message)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return errdefs.Unauthenticated("pull access denied for %s, repository does not exist or may require 'hearth image login': %s", Familiar(canonicalRepo(r.Context())), strings.ToLower(string(d.Code)))
			}
		}
		switch te.StatusCode {
		case http.StatusNotFound:
			return errdefs.NotFound("manifest for %s not found: manifest unknown", Familiar(Canonical(r)))
		case http.StatusUnauthorized, http.StatusForbidden:
			return errdefs.Unauthenticated("pull access denied for %s, repository does not exist or may require 'hearth image login'", Familiar(canonicalRepo(r.Context())))
		}
		return errdefs.Unavailable("registry %s: %v", r.Context().RegistryStr(), err)
	}
	var ne net.Error
	var dns *net.DNSError
	if errors.As(err, &ne) || errors.As(err, &dns) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return errdefs.Unavailable("pull %s: registry %s is unreachable: %v", Familiar(Canonical(r)), r.Context().RegistryStr(), err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("pull %s: %w", Familiar(Canonical(r)), err)
}

func pullError(r name.Reference, err error) error {
	if errors.Is(err, store.ErrDigestMismatch) {
		return errdefs.InvalidArgument("pull %s: %v", Familiar(Canonical(r)), err)
	}
	return registryError(r, err)
}

// Push sends one of tenant's images to its registry.
func (s *Service) Push(ctx context.Context, tenant, ref string, progress func(Progress)) (v1.Hash, error) {
	r, err := ParseRef(ref, s.Insecure)
	if err != nil {
		return v1.Hash{}, err
	}
	rec, err := s.lookupName(tenant, Canonical(r))
	if err != nil {
		return v1.Hash{}, errdefs.NotFound("An image does not exist locally with the tag: %s", Familiar(Canonical(r)))
	}
	img, err := s.Store.Image(rec.Manifest)
	if err != nil {
		return v1.Hash{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range m.Layers {
		report(progress, Progress{ID: ShortID(l.Digest), Status: "Preparing"})
	}
	updates := make(chan v1.Update, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for u := range updates {
			report(progress, Progress{Status: "Pushing", Current: u.Complete, Total: u.Total})
		}
	}()
	opts := append(s.remoteOptions(ctx, tenant), remote.WithProgress(updates))
	err = remote.Write(r, img, opts...)
	wg.Wait()
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
			return v1.Hash{}, errdefs.Unauthenticated("push access denied for %s: authentication required (use 'hearth image login')", Familiar(canonicalRepo(r.Context())))
		}
		return v1.Hash{}, registryError(r, err)
	}
	for _, l := range m.Layers {
		report(progress, Progress{ID: ShortID(l.Digest), Status: "Pushed"})
	}
	rec.RepoDigest = canonicalRepo(r.Context()) + "@" + rec.Manifest.String()
	if err := s.setRef(tenant, *rec); err != nil {
		return v1.Hash{}, err
	}
	return rec.Manifest, nil
}

// Login checks credentials against a registry and stores them for tenant.
func (s *Service) Login(ctx context.Context, tenant, registry, user, password string) error {
	if registry == "" {
		registry = name.DefaultRegistry
	}
	var opts []name.Option
	if isInsecure(registry, s.Insecure) {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(registry, opts...)
	if err != nil {
		return errdefs.InvalidArgument("invalid registry %q", registry)
	}
	tr := s.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	basic := &authn.Basic{Username: user, Password: password}
	denied := errdefs.Unauthenticated("login to %s failed: unauthorized: incorrect username or password", registry)
	rt, err := transport.NewWithContext(ctx, reg, basic, tr, []string{reg.Scope(transport.PullScope)})
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusUnauthorized {
			return denied
		}
		return errdefs.Unavailable("login to %s: %v", registry, err)
	}
	// Basic auth is only sent, not checked, by the handshake: ask /v2/
	// with it, as docker login does.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v2/", reg.Scheme(), reg.RegistryStr()), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return errdefs.Unavailable("login to %s: %v", registry, err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		return denied
	}
	return s.Auth.Login(tenant, reg.RegistryStr(), user, password)
}

// Logout forgets tenant's credentials for a registry.
func (s *Service) Logout(tenant, registry string) error {
	if registry == "" {
		registry = name.DefaultRegistry
	}
	return s.Auth.Logout(tenant, registry)
}

// Config is the image service's settings file, images/config.json under
// the data dir.
type Config struct {
	// InsecureRegistries are spoken to over plain HTTP (loopback
	// registries always are).
	InsecureRegistries []string `json:"insecureRegistries,omitempty"`
}

// Open opens the image service of a data dir: the store, the prepared
// layer cache and the credentials under <dataDir>/images.
func Open(dataDir string) (*Service, error) {
	root := filepath.Join(dataDir, "images")
	st, err := store.Open(root)
	if err != nil {
		return nil, err
	}
	svc := &Service{
		Store:  st,
		Layers: &layer.Cache{Dir: filepath.Join(root, "layers")},
		Auth:   &auth.Store{Dir: filepath.Join(root, "auth"), DockerConfig: true, AdminTenant: AdminTenant},
	}
	b, err := os.ReadFile(filepath.Join(root, "config.json"))
	if err == nil {
		var c Config
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("image config %s: %w", filepath.Join(root, "config.json"), err)
		}
		svc.Insecure = c.InsecureRegistries
	}
	return svc, nil
}
