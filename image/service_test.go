package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/image/auth"
	"github.com/hearth-cloud/hearth/image/layer"
	"github.com/hearth-cloud/hearth/image/store"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/testimage"
)

// newService is a Service over a fresh temporary store.
func newService(t *testing.T) *Service {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	return &Service{
		Store:  st,
		Layers: &layer.Cache{Dir: filepath.Join(dir, "layers")},
		Auth:   &auth.Store{Dir: filepath.Join(dir, "auth")},
	}
}

// newRegistry serves an in-memory registry on loopback, which the service
// speaks to over plain HTTP, and returns its host:port.
func newRegistry(t *testing.T) string {
	t.Helper()
	return serveRegistry(t, registry.New(registry.Logger(log.New(io.Discard, "", 0))))
}

func serveRegistry(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func push(t *testing.T, ref string, img v1.Image) {
	t.Helper()
	if err := remote.Write(mustRef(t, ref), img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func pushIndex(t *testing.T, ref string, idx v1.ImageIndex) {
	t.Helper()
	if err := remote.WriteIndex(mustRef(t, ref), idx); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func configName(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// imageBlobs is every blob of an image: manifest, config, layers.
func imageBlobs(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := []v1.Hash{digest(t, img), m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

func wantBlobs(t *testing.T, s *Service, present bool, blobs ...v1.Hash) {
	t.Helper()
	for _, d := range blobs {
		if s.Store.HasBlob(d) != present {
			t.Errorf("blob %s in the store: %v, want %v", d, !present, present)
		}
	}
}

func refNames(t *testing.T, s *Service, tenant string) []string {
	t.Helper()
	refs, err := s.Store.Refs(tenant)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range refs {
		out = append(out, r.Name)
	}
	return out
}

// progressLog records progress reports, which come from several
// goroutines at once.
type progressLog struct {
	mu     sync.Mutex
	events []Progress
}

func (p *progressLog) add(e Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, e)
}

func (p *progressLog) count(id, status string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, e := range p.events {
		if e.ID == id && e.Status == status {
			n++
		}
	}
	return n
}

func (p *progressLog) statuses() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		out = append(out, e.ID+" "+e.Status)
	}
	return out
}

func TestPull(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	img := testImage(t, "linux", "amd64", "/bin/app")
	push(t, host+"/team/app:1", img)
	svc := newService(t)

	var p progressLog
	rec, err := svc.Pull(t.Context(), "alice", host+"/team/app:1", p.add)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	d := digest(t, img)
	if rec.Name != host+"/team/app:1" || rec.Manifest != d || rec.ID != configName(t, img) || rec.RepoDigest != host+"/team/app@"+d.String() {
		t.Fatalf("Pull = %+v; want name %s/team/app:1, manifest %s, ID %s", rec, host, d, configName(t, img))
	}
	if rec.Added.IsZero() {
		t.Error("Pull recorded no time")
	}
	wantBlobs(t, svc, true, imageBlobs(t, img)...)
	refs, err := svc.Store.Refs("alice")
	if err != nil || len(refs) != 1 || refs[0].Name != rec.Name || refs[0].Manifest != d {
		t.Fatalf("refs after pull: %+v, %v", refs, err)
	}

	layers := layerDigests(t, img)
	for _, l := range layers {
		id := ShortID(l)
		if len(id) != 12 {
			t.Fatalf("ShortID(%s) = %q", l, id)
		}
		for _, st := range []string{"Pulling fs layer", "Download complete", "Pull complete"} {
			if p.count(id, st) != 1 {
				t.Errorf("layer %s: %q reported %d times; progress: %v", id, st, p.count(id, st), p.statuses())
			}
		}
		if p.count(id, "Already exists") != 0 {
			t.Errorf("layer %s reported as existing on the first pull", id)
		}
	}
	if p.count("", "Digest: "+d.String()) != 1 {
		t.Errorf("no Digest line; progress: %v", p.statuses())
	}

	// The stored image is the pushed one.
	got, got2, err := svc.Get("alice", host+"/team/app:1")
	if err != nil || digest(t, got) != d || got2.ID != rec.ID {
		t.Fatalf("Get: %v", err)
	}
	cf, err := got.ConfigFile()
	if err != nil || len(cf.RootFS.DiffIDs) != 2 {
		t.Fatalf("config: %+v, %v", cf, err)
	}

	// A second pull asks the registry again but fetches no layer.
	var p2 progressLog
	rec2, err := svc.Pull(t.Context(), "alice", host+"/team/app:1", p2.add)
	if err != nil {
		t.Fatalf("second Pull: %v", err)
	}
	if rec2.Manifest != d || rec2.ID != rec.ID {
		t.Fatalf("second Pull = %+v", rec2)
	}
	for _, l := range layers {
		id := ShortID(l)
		if p2.count(id, "Already exists") != 1 || p2.count(id, "Pull complete") != 0 || p2.count(id, "Downloading") != 0 {
			t.Errorf("second pull of layer %s: %v", id, p2.statuses())
		}
	}
	if refs, _ := svc.Store.Refs("alice"); len(refs) != 1 {
		t.Fatalf("second pull left %d refs, want 1", len(refs))
	}
	// A nil progress is fine.
	if _, err := svc.Pull(t.Context(), "bob", host+"/team/app:1", nil); err != nil {
		t.Fatalf("Pull without progress: %v", err)
	}
}

func TestPullErrors(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	push(t, host+"/team/app:1", testImage(t, "linux", "amd64", "/bin/app"))
	push(t, host+"/team/arm:1", testImage(t, "linux", "arm64", "/bin/app"))

	deadHost := closedPort(t)

	tests := []struct {
		name  string
		ref   string
		class error
		want  string
	}{
		{"unknown tag", host + "/team/app:2", errdefs.ErrNotFound, "manifest unknown"},
		{"unknown repository", host + "/team/nope:1", errdefs.ErrNotFound, "not found"},
		{"unknown digest", host + "/team/app@sha256:" + strings.Repeat("0", 64), errdefs.ErrNotFound, "manifest unknown"},
		{"closed port", deadHost + "/team/app:1", errdefs.ErrUnavailable, deadHost},
		{"invalid reference", "UPPER/case", errdefs.ErrInvalidArgument, "invalid reference format"},
		{"arm64 image", host + "/team/arm:1", errdefs.ErrFailedPrecondition, "linux/arm64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			rec, err := svc.Pull(t.Context(), "alice", tt.ref, nil)
			if err == nil {
				t.Fatalf("Pull = %+v, want an error", rec)
			}
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Pull = %v; want %v containing %q", err, tt.class, tt.want)
			}
			if refs, _ := svc.Store.Refs("alice"); len(refs) != 0 {
				t.Fatalf("a failed pull left refs %+v", refs)
			}
		})
	}
}

// closedPort returns a loopback host:port that refuses connections: a
// socket bound to it, and kept so no one else gets the port, that never
// listens.
func closedPort(t *testing.T) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
}

func TestPullIndex(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	amd64 := testImage(t, "linux", "amd64", "/bin/app")
	arm64 := testImage(t, "linux", "arm64", "/bin/app")
	idx := mutate.AppendManifests(empty.Index, platformAdd(arm64, "linux", "arm64"), platformAdd(amd64, "linux", "amd64"))
	pushIndex(t, host+"/multi:1", idx)
	pushIndex(t, host+"/armonly:1", mutate.AppendManifests(empty.Index, platformAdd(arm64, "linux", "arm64")))
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}

	svc := newService(t)
	rec, err := svc.Pull(t.Context(), "alice", host+"/multi:1", nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if rec.Manifest != digest(t, amd64) || rec.ID != configName(t, amd64) {
		t.Fatalf("Pull of an index picked %s (ID %s), want the amd64 image %s", rec.Manifest, rec.ID, digest(t, amd64))
	}
	if rec.RepoDigest != host+"/multi@"+idxDigest.String() {
		t.Fatalf("RepoDigest %s, want the index's digest %s", rec.RepoDigest, idxDigest)
	}
	wantBlobs(t, svc, true, imageBlobs(t, amd64)...)
	wantBlobs(t, svc, false, imageBlobs(t, arm64)...)
	// The repo digest finds the image.
	if r, err := svc.Lookup("alice", host+"/multi@"+idxDigest.String()); err != nil || r.ID != rec.ID {
		t.Fatalf("Lookup by repo digest: %v", err)
	}

	_, err = svc.Pull(t.Context(), "alice", host+"/armonly:1", nil)
	if err == nil || !strings.Contains(err.Error(), "no matching manifest for linux/amd64") {
		t.Fatalf("Pull of an arm64-only index = %v, want no matching manifest for linux/amd64", err)
	}
	if got := refNames(t, svc, "alice"); len(got) != 1 {
		t.Fatalf("refs after the failed pull: %v", got)
	}
}

// basicAuth wraps a registry with one user's basic auth.
func basicAuth(h http.Handler, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func TestPullWithCredentials(t *testing.T) {
	t.Parallel()
	host := serveRegistry(t, basicAuth(registry.New(registry.Logger(log.New(io.Discard, "", 0))), "alice", "pw"))
	img := testImage(t, "linux", "amd64", "/bin/app")
	a := &authn.Basic{Username: "alice", Password: "pw"}
	if err := remote.Write(mustRef(t, host+"/private/app:1"), img, remote.WithAuth(a)); err != nil {
		t.Fatal(err)
	}
	svc := newService(t)

	if err := svc.Login(t.Context(), "alice", host, "alice", "wrong"); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Fatalf("Login with a wrong password = %v, want ErrUnauthenticated", err)
	}
	if err := svc.Login(t.Context(), "alice", host, "alice", "pw"); err != nil {
		t.Fatalf("Login: %v", err)
	}
	if _, err := svc.Pull(t.Context(), "alice", host+"/private/app:1", nil); err != nil {
		t.Fatalf("Pull with credentials: %v", err)
	}
	// Bob has no credentials: having the blobs in the store does not let
	// him have the image.
	if _, err := svc.Pull(t.Context(), "bob", host+"/private/app:1", nil); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Fatalf("Pull without credentials = %v, want ErrUnauthenticated", err)
	}
	if got := refNames(t, svc, "bob"); len(got) != 0 {
		t.Fatalf("bob got refs %v", got)
	}
	if err := svc.Logout("alice", host); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if _, err := svc.Pull(t.Context(), "alice", host+"/private/app:1", nil); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Fatalf("Pull after logout = %v, want ErrUnauthenticated", err)
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	img := testImage(t, "linux", "amd64", "/bin/app")
	ref := host + "/team/app:1"
	push(t, ref, img)
	svc := newService(t)
	rec, err := svc.Pull(t.Context(), "a", ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{ref, rec.ID.String(), rec.ID.Hex[:12], rec.RepoDigest} {
		if _, err := svc.Lookup("a", q); err != nil {
			t.Errorf("a.Lookup(%s): %v", q, err)
		}
		if _, err := svc.Lookup("b", q); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("b.Lookup(%s) = %v, want ErrNotFound", q, err)
		}
	}
	if list, err := svc.List("b"); err != nil || len(list) != 0 {
		t.Fatalf("b.List = %v, %v", list, err)
	}
	if list, err := svc.List("a"); err != nil || len(list) != 1 {
		t.Fatalf("a.List = %v, %v", list, err)
	}
	if err := svc.Tag("b", ref, "stolen:1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("b.Tag = %v, want ErrNotFound", err)
	}
	if _, err := svc.Push(t.Context(), "b", ref, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("b.Push = %v, want ErrNotFound", err)
	}
	if _, err := svc.Remove("b", ref, true); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("b.Remove = %v, want ErrNotFound", err)
	}
	if _, err := svc.Inspect("b", ref); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("b.Inspect = %v, want ErrNotFound", err)
	}

	// b pulls it too: the blobs are shared, and survive a's removal.
	if _, err := svc.Pull(t.Context(), "b", ref, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Remove("a", ref, false); err != nil {
		t.Fatal(err)
	}
	wantBlobs(t, svc, true, imageBlobs(t, img)...)
	if _, err := svc.Lookup("a", ref); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a.Lookup after remove = %v", err)
	}
	if _, err := svc.Remove("b", ref, false); err != nil {
		t.Fatal(err)
	}
	wantBlobs(t, svc, false, imageBlobs(t, img)...)
}

// pulled is a Service with one image pulled for alice.
func pulled(t *testing.T) (svc *Service, host string, img v1.Image, rec *store.Ref) {
	t.Helper()
	host = newRegistry(t)
	img = testImage(t, "linux", "amd64", "/bin/app")
	push(t, host+"/team/app:1", img)
	svc = newService(t)
	rec, err := svc.Pull(t.Context(), "alice", host+"/team/app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc, host, img, rec
}

func TestTagAndLookup(t *testing.T) {
	t.Parallel()
	svc, host, img, rec := pulled(t)
	if err := svc.Tag("alice", host+"/team/app:1", "myapp"); err != nil {
		t.Fatalf("Tag: %v", err)
	}
	if err := svc.Tag("alice", rec.ID.Hex[:8], "other/app:2"); err != nil {
		t.Fatalf("Tag by ID prefix: %v", err)
	}
	names := refNames(t, svc, "alice")
	want := []string{host + "/team/app:1", "docker.io/library/myapp:latest", "docker.io/other/app:2"}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("refs %v, want %v", names, want)
	}
	d := digest(t, img)
	for _, q := range []string{
		"myapp", "myapp:latest", "docker.io/library/myapp:latest", "library/myapp",
		"other/app:2", host + "/team/app:1",
		rec.ID.String(), rec.ID.Hex, rec.ID.Hex[:12], rec.ID.Hex[:4], "sha256:" + rec.ID.Hex[:6],
		host + "/team/app@" + d.String(), // the repo digest
	} {
		got, err := svc.Lookup("alice", q)
		if err != nil {
			t.Errorf("Lookup(%q): %v", q, err)
			continue
		}
		if got.ID != rec.ID || got.Manifest != d {
			t.Errorf("Lookup(%q) = %+v", q, got)
		}
	}
	// The manifest digest under another of the image's names finds it too.
	if got, err := svc.Lookup("alice", "myapp@"+d.String()); err != nil || got.ID != rec.ID {
		t.Errorf("Lookup(myapp@digest) = %v, %v", got, err)
	}
	for _, q := range []string{"myapp:2", "nope", rec.ID.Hex[:3], "sha256:" + strings.Repeat("f", 64), "nope@" + d.String(), host + "/team/app@sha256:" + strings.Repeat("0", 64)} {
		if got, err := svc.Lookup("alice", q); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("Lookup(%q) = %+v, %v; want ErrNotFound", q, got, err)
		}
	}

	// Tag errors.
	if err := svc.Tag("alice", "nope", "x:1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Tag of a missing image = %v", err)
	}
	if err := svc.Tag("alice", "myapp", "BAD/x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Tag to an invalid name = %v", err)
	}
	if err := svc.Tag("alice", "myapp", "x@"+d.String()); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Tag to a digest = %v", err)
	}

	// Inspect lists every name of the image.
	info, err := svc.Inspect("alice", "myapp")
	if err != nil {
		t.Fatal(err)
	}
	tags := append([]string(nil), info.RepoTags...)
	slices.Sort(tags)
	wantTags := []string{host + "/team/app:1", "myapp:latest", "other/app:2"}
	slices.Sort(wantTags)
	if info.ID != rec.ID.String() || !slices.Equal(tags, wantTags) || !slices.Equal(info.RepoDigests, []string{host + "/team/app@" + d.String()}) {
		t.Fatalf("Inspect = %+v", info)
	}
	if info.Architecture != "amd64" || info.Os != "linux" || len(info.RootFS.Layers) != 2 || info.Manifest != d.String() || info.Size <= 0 {
		t.Fatalf("Inspect = %+v", info)
	}
	list, err := svc.List("alice")
	if err != nil || len(list) != 3 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	for _, s := range list {
		if s.ID != rec.ID || s.Size <= 0 || s.Created.IsZero() {
			t.Errorf("List entry %+v", s)
		}
	}
}

func TestLookupAmbiguousPrefix(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	id := func(h string) v1.Hash { return v1.Hash{Algorithm: "sha256", Hex: h + strings.Repeat("0", 64-len(h))} }
	m := id("ffff")
	err := svc.Store.UpdateRefs("alice", func([]store.Ref) ([]store.Ref, error) {
		return []store.Ref{
			{Name: "docker.io/library/one:latest", Manifest: m, ID: id("abcd1")},
			{Name: "docker.io/library/one:alias", Manifest: m, ID: id("abcd1")},
			{Name: "docker.io/library/two:latest", Manifest: m, ID: id("abcd2")},
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Lookup("alice", "abcd"); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("Lookup(abcd) = %v, want an ambiguous prefix error", err)
	}
	// Two names of one image are not ambiguous.
	if r, err := svc.Lookup("alice", "abcd1"); err != nil || r.ID != id("abcd1") {
		t.Fatalf("Lookup(abcd1) = %v, %v", r, err)
	}
	if r, err := svc.Lookup("alice", "sha256:abcd2"); err != nil || r.ID != id("abcd2") {
		t.Fatalf("Lookup(sha256:abcd2) = %v, %v", r, err)
	}
	// A name that looks like an ID prefix is a name first.
	if err := svc.Store.UpdateRefs("alice", func(refs []store.Ref) ([]store.Ref, error) {
		return append(refs, store.Ref{Name: "docker.io/library/abcd:latest", Manifest: m, ID: id("9999")}), nil
	}); err != nil {
		t.Fatal(err)
	}
	if r, err := svc.Lookup("alice", "abcd"); err != nil || r.ID != id("9999") {
		t.Fatalf("Lookup(abcd) with an image named abcd = %v, %v", r, err)
	}
}

func TestLookupDigestOfAnotherRepository(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	m := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("1", 64)}
	id := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("2", 64)}
	if err := svc.Store.UpdateRefs("alice", func([]store.Ref) ([]store.Ref, error) {
		return []store.Ref{{Name: "docker.io/library/busybox2:latest", Manifest: m, ID: id}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if r, err := svc.Lookup("alice", "busybox@"+m.String()); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Lookup(busybox@%s) = %+v, %v; want ErrNotFound: the image is busybox2's", m, r, err)
	}
}

func TestRemove(t *testing.T) {
	t.Parallel()
	svc, host, img, rec := pulled(t)
	ref := host + "/team/app:1"
	if err := svc.Tag("alice", ref, "second:1"); err != nil {
		t.Fatal(err)
	}

	// By ID with two names: must be forced.
	if _, err := svc.Remove("alice", rec.ID.Hex[:12], false); !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "must be forced") {
		t.Fatalf("Remove by ID with two names = %v, want ErrConflict", err)
	}
	if got := refNames(t, svc, "alice"); len(got) != 2 {
		t.Fatalf("a refused remove changed refs: %v", got)
	}

	// Untagging one of two names keeps the image.
	events, err := svc.Remove("alice", "second:1", false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(events, []string{"Untagged: second:1"}) {
		t.Fatalf("events %v", events)
	}
	wantBlobs(t, svc, true, imageBlobs(t, img)...)
	if got := refNames(t, svc, "alice"); !slices.Equal(got, []string{ref}) {
		t.Fatalf("refs %v", got)
	}

	// Removing the last name deletes the image and its blobs.
	events, err = svc.Remove("alice", ref, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) < 2 || events[0] != "Untagged: "+ref || events[1] != "Deleted: "+rec.ID.String() {
		t.Fatalf("events %v", events)
	}
	for _, d := range imageBlobs(t, img) {
		if d != rec.ID && !slices.Contains(events, "Deleted: "+d.String()) {
			t.Errorf("no Deleted event for blob %s: %v", d, events)
		}
	}
	if n := strings.Count(strings.Join(events, "\n"), rec.ID.String()); n != 1 {
		t.Errorf("image ID deleted %d times in %v", n, events)
	}
	wantBlobs(t, svc, false, imageBlobs(t, img)...)
	if got := refNames(t, svc, "alice"); len(got) != 0 {
		t.Fatalf("refs %v", got)
	}
	if _, err := svc.Remove("alice", ref, false); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Remove of a removed image = %v, want ErrNotFound", err)
	}
}

func TestRemoveByIDForced(t *testing.T) {
	t.Parallel()
	svc, host, img, rec := pulled(t)
	if err := svc.Tag("alice", host+"/team/app:1", "second:1"); err != nil {
		t.Fatal(err)
	}
	events, err := svc.Remove("alice", rec.ID.String(), true)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"Untagged: " + host + "/team/app:1", "Untagged: second:1", "Deleted: " + rec.ID.String()} {
		if !slices.Contains(events, e) {
			t.Errorf("events %v lack %q", events, e)
		}
	}
	wantBlobs(t, svc, false, imageBlobs(t, img)...)
	if got := refNames(t, svc, "alice"); len(got) != 0 {
		t.Fatalf("refs %v", got)
	}
}

func TestRemoveInUse(t *testing.T) {
	t.Parallel()
	svc, host, img, rec := pulled(t)
	ref := host + "/team/app:1"
	var asked []v1.Hash
	svc.InUse = func(id v1.Hash) []string {
		asked = append(asked, id)
		if id == rec.ID {
			return []string{"0123456789abcdef0123"}
		}
		return nil
	}
	if err := svc.Tag("alice", ref, "second:1"); err != nil {
		t.Fatal(err)
	}
	// Not the last name: no pod loses its image.
	if _, err := svc.Remove("alice", "second:1", false); err != nil {
		t.Fatalf("untag of one of two names of an image in use: %v", err)
	}
	// The last name of an image in use: a conflict.
	_, err := svc.Remove("alice", ref, false)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(err.Error(), "0123456789ab") || strings.Contains(err.Error(), "0123456789abc") {
		t.Fatalf("Remove of an image in use = %v, want ErrConflict naming the pod's short ID", err)
	}
	if !slices.Contains(asked, rec.ID) {
		t.Fatalf("InUse was asked about %v, not %s", asked, rec.ID)
	}
	wantBlobs(t, svc, true, imageBlobs(t, img)...)
	if _, err := svc.Remove("alice", rec.ID.Hex[:12], false); !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("Remove by ID of an image in use = %v, want ErrConflict", err)
	}
	if _, err := svc.Lookup("alice", ref); err != nil {
		t.Fatalf("refused removes dropped the image: %v", err)
	}
	// Forced, it goes.
	if _, err := svc.Remove("alice", ref, true); err != nil {
		t.Fatalf("forced Remove: %v", err)
	}
	wantBlobs(t, svc, false, imageBlobs(t, img)...)
}

func TestRetagKeepsPreviousImage(t *testing.T) {
	t.Parallel()
	svc, host, oldImg, old := pulled(t)
	svc.InUse = func(id v1.Hash) []string {
		if id == old.ID {
			return []string{"pod-using-old-image"}
		}
		return nil
	}
	newImg := testImage(t, "linux", "amd64", "/bin/app", "v2")
	push(t, host+"/team/app:1", newImg)
	if _, err := svc.Pull(t.Context(), "alice", host+"/team/app:1", nil); err != nil {
		t.Fatal(err)
	}
	// Any later GC (a Remove of something else, or Prune).
	if _, err := svc.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Lookup("alice", old.ID.String()); err != nil {
		t.Errorf("the replaced image, still in use, is gone: %v", err)
	}
	wantBlobs(t, svc, true, imageBlobs(t, oldImg)...)
}

// withLayer adds a layer of its own to img.
func withLayer(t *testing.T, img v1.Image, content string) v1.Image {
	t.Helper()
	l, err := testimage.Layer([]testimage.File{{Path: "/" + content, Data: []byte(content + "\n")}})
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.AppendLayers(img, l)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPrune(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	kept := withLayer(t, testImage(t, "linux", "amd64", "/bin/kept"), "kept")
	dangling := withLayer(t, testImage(t, "linux", "amd64", "/bin/dangling"), "dangling")
	busy := withLayer(t, testImage(t, "linux", "amd64", "/bin/busy"), "busy")
	push(t, host+"/kept:1", kept)
	push(t, host+"/dangling:1", dangling)
	push(t, host+"/busy:1", busy)
	// The three images share their first two layers, which stay; each has
	// a third of its own.
	svc := newService(t)
	for _, r := range []string{"kept:1", "dangling:1", "busy:1"} {
		if _, err := svc.Pull(t.Context(), "alice", host+"/"+r, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Another tenant's untagged image goes too.
	if _, err := svc.Pull(t.Context(), "bob", host+"/dangling:1", nil); err != nil {
		t.Fatal(err)
	}
	// dangling and busy lose their names (as a load without tags leaves
	// them).
	untag := func(tenant string) {
		if err := svc.Store.UpdateRefs(tenant, func(refs []store.Ref) ([]store.Ref, error) {
			for i := range refs {
				if !strings.Contains(refs[i].Name, "/kept:") {
					refs[i].Name = ""
				}
			}
			return refs, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	untag("alice")
	untag("bob")
	busyID := configName(t, busy)
	svc.InUse = func(id v1.Hash) []string {
		if id == busyID {
			return []string{"pod1"}
		}
		return nil
	}
	stray, err := svc.Store.WriteBlobBytes([]byte("stray blob"))
	if err != nil {
		t.Fatal(err)
	}

	// Prepared layers: one of a kept image, one a pod uses, one nobody.
	keptCF, err := kept.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	danglingCF, err := dangling.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layerDir := filepath.Join(svc.Layers.Dir, "sha256")
	if err := os.MkdirAll(layerDir, 0o755); err != nil {
		t.Fatal(err)
	}
	podLayer := strings.Repeat("a", 64)
	unused := strings.Repeat("b", 64)
	danglingOnly := danglingCF.RootFS.DiffIDs[2].Hex
	for _, h := range []string{keptCF.RootFS.DiffIDs[0].Hex, keptCF.RootFS.DiffIDs[1].Hex, podLayer, unused, danglingOnly} {
		if err := os.WriteFile(filepath.Join(layerDir, h+".erofs"), []byte("fake erofs "+h), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	svc.LayersInUse = func() map[string]bool { return map[string]bool{"sha256:" + podLayer: true} }

	rep, err := svc.Prune(t.Context())
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	wantBlobs(t, svc, true, imageBlobs(t, kept)...)
	wantBlobs(t, svc, true, imageBlobs(t, busy)...)
	wantBlobs(t, svc, false, digest(t, dangling), configName(t, dangling), layerDigests(t, dangling)[2], stray)
	wantBlobs(t, svc, true, layerDigests(t, dangling)[:2]...)
	if _, err := svc.Lookup("alice", busyID.String()); err != nil {
		t.Errorf("Prune removed an untagged image a pod uses: %v", err)
	}
	if _, err := svc.Lookup("alice", host+"/kept:1"); err != nil {
		t.Errorf("Prune removed a tagged image: %v", err)
	}
	for _, tenant := range []string{"alice", "bob"} {
		if _, err := svc.Lookup(tenant, configName(t, dangling).String()); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("%s still has the dangling image: %v", tenant, err)
		}
	}
	for _, e := range []string{
		"deleted: " + configName(t, dangling).String(),
		"deleted: " + digest(t, dangling).String(),
		"deleted: " + stray.String(),
		"deleted prepared layer: sha256:" + unused,
		"deleted prepared layer: sha256:" + danglingOnly,
	} {
		if !slices.Contains(rep.Deleted, e) {
			t.Errorf("Prune report lacks %q: %v", e, rep.Deleted)
		}
	}
	if rep.SpaceReclaimed <= 0 {
		t.Errorf("SpaceReclaimed %d", rep.SpaceReclaimed)
	}
	for h, want := range map[string]bool{keptCF.RootFS.DiffIDs[0].Hex: true, keptCF.RootFS.DiffIDs[1].Hex: true, podLayer: true, unused: false, danglingOnly: false} {
		_, err := os.Stat(filepath.Join(layerDir, h+".erofs"))
		if (err == nil) != want {
			t.Errorf("prepared layer %s present: %v, want %v", h[:12], err == nil, want)
		}
	}
	// Nothing left to prune.
	rep, err = svc.Prune(t.Context())
	if err != nil || len(rep.Deleted) != 0 {
		t.Fatalf("second Prune = %+v, %v", rep, err)
	}
}

func TestPushAndPullBack(t *testing.T) {
	t.Parallel()
	svc, host, img, rec := pulled(t)
	dst := host + "/mirror/app:2"
	if err := svc.Tag("alice", host+"/team/app:1", dst); err != nil {
		t.Fatal(err)
	}
	var p progressLog
	d, err := svc.Push(t.Context(), "alice", dst, p.add)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if d != digest(t, img) {
		t.Fatalf("Push = %s, want %s", d, digest(t, img))
	}
	for _, l := range layerDigests(t, img) {
		if p.count(ShortID(l), "Preparing") != 1 || p.count(ShortID(l), "Pushed") != 1 {
			t.Errorf("push progress of layer %s: %v", ShortID(l), p.statuses())
		}
	}
	got, err := svc.Lookup("alice", dst)
	if err != nil || got.RepoDigest != host+"/mirror/app@"+d.String() {
		t.Fatalf("pushed ref %+v, %v; want its repo digest set", got, err)
	}

	// A fresh store pulls it by digest.
	other := newService(t)
	byDigest := host + "/mirror/app@" + d.String()
	rec2, err := other.Pull(t.Context(), "bob", byDigest, nil)
	if err != nil {
		t.Fatalf("Pull by digest: %v", err)
	}
	if rec2.ID != rec.ID || rec2.Manifest != d || rec2.Name != byDigest || rec2.RepoDigest != byDigest {
		t.Fatalf("Pull by digest = %+v", rec2)
	}
	if r, err := other.Lookup("bob", byDigest); err != nil || r.ID != rec.ID {
		t.Fatalf("Lookup by digest: %v", err)
	}
	// A digest name is no tag.
	info, err := other.Inspect("bob", byDigest)
	if err != nil || len(info.RepoTags) != 0 || !slices.Equal(info.RepoDigests, []string{byDigest}) {
		t.Fatalf("Inspect = %+v, %v", info, err)
	}

	if _, err := svc.Push(t.Context(), "alice", host+"/never/tagged:1", nil); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "does not exist locally") {
		t.Fatalf("Push of a missing tag = %v", err)
	}
}

// A loaded image has uncompressed layers; it pushes and pulls back all
// the same.
func TestPushLoadedImage(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	img := testImage(t, "linux", "amd64", "/bin/app")
	svc := newService(t)
	if _, err := svc.Load(t.Context(), "alice", writeArchive(t, img), nil); err != nil {
		t.Fatal(err)
	}
	if err := svc.Tag("alice", "test/image:latest", host+"/loaded:1"); err != nil {
		t.Fatal(err)
	}
	d, err := svc.Push(t.Context(), "alice", host+"/loaded:1", nil)
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	other := newService(t)
	rec, err := other.Pull(t.Context(), "alice", host+"/loaded@"+d.String(), nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if rec.ID != configName(t, img) {
		t.Fatalf("pulled ID %s, want %s", rec.ID, configName(t, img))
	}
	got, _, err := other.Get("alice", rec.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := got.Layers()
	if err != nil || len(layers) != len(cf.RootFS.DiffIDs) {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	for i, l := range layers {
		if dd, err := l.DiffID(); err != nil || dd != cf.RootFS.DiffIDs[i] {
			t.Errorf("layer %d diff ID %s, %v; want %s", i, dd, err, cf.RootFS.DiffIDs[i])
		}
	}
}

func saveTo(t *testing.T, svc *Service, tenant string, refs ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "saved.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Save(t.Context(), tenant, refs, f); err != nil {
		f.Close()
		t.Fatalf("Save(%v): %v", refs, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// archiveManifest reads a docker-archive's manifest.json.
func archiveManifest(t *testing.T, p string) []tarball.Descriptor {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no manifest.json in %s: %v", p, err)
		}
		if h.Name == "manifest.json" {
			var m []tarball.Descriptor
			if err := json.NewDecoder(tr).Decode(&m); err != nil {
				t.Fatal(err)
			}
			return m
		}
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	t.Parallel()
	svc, host, img, rec := pulled(t)
	if err := svc.Tag("alice", host+"/team/app:1", "busybox:1"); err != nil {
		t.Fatal(err)
	}
	p := saveTo(t, svc, "alice", host+"/team/app:1", "busybox:1")
	// docker load reads it: one entry per name, the config's ID.
	m := archiveManifest(t, p)
	var tags []string
	for _, e := range m {
		tags = append(tags, e.RepoTags...)
		if e.Config != rec.ID.String() {
			t.Errorf("archive entry config %q, want %s", e.Config, rec.ID)
		}
	}
	if len(tags) != 2 {
		t.Fatalf("archive RepoTags %v, want two", tags)
	}

	fresh := newService(t)
	lines, err := fresh.Load(t.Context(), "admin", p, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	slices.Sort(lines)
	want := []string{"Loaded image: " + host + "/team/app:1", "Loaded image: busybox:1"}
	slices.Sort(want)
	if !slices.Equal(lines, want) {
		t.Fatalf("Load = %v, want %v", lines, want)
	}
	for _, q := range []string{host + "/team/app:1", "busybox:1"} {
		r, err := fresh.Lookup("admin", q)
		if err != nil || r.ID != rec.ID {
			t.Fatalf("Lookup(%s) after load = %+v, %v; want ID %s", q, r, err, rec.ID)
		}
	}
	// Same image, its layers stored uncompressed.
	loaded, _, err := fresh.Get("admin", "busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	lcf, err := loaded.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if !slices.Equal(lcf.RootFS.DiffIDs, cf.RootFS.DiffIDs) {
		t.Fatalf("diff IDs %v, want %v", lcf.RootFS.DiffIDs, cf.RootFS.DiffIDs)
	}
	for _, d := range cf.RootFS.DiffIDs {
		if !fresh.Store.HasBlob(d) {
			t.Errorf("layer %s not stored uncompressed", d)
		}
	}

	// Save by ID: untagged.
	p2 := saveTo(t, svc, "alice", rec.ID.Hex[:12])
	m2 := archiveManifest(t, p2)
	if len(m2) != 1 || len(m2[0].RepoTags) != 0 {
		t.Fatalf("save by ID: manifest %+v, want one untagged entry", m2)
	}

	if err := svc.Save(t.Context(), "alice", nil, io.Discard); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("Save of nothing = %v", err)
	}
	if err := svc.Save(t.Context(), "alice", []string{"nope:1"}, io.Discard); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Save of a missing image = %v", err)
	}
}

func TestSaveUntagged(t *testing.T) {
	t.Parallel()
	img := testImage(t, "linux", "amd64", "/bin/app")
	// An archive with no RepoTags.
	p := filepath.Join(t.TempDir(), "untagged.tar")
	var buf bytes.Buffer
	dref, err := name.NewDigest("example.com/x@" + digest(t, img).String())
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.MultiRefWrite(map[name.Reference]v1.Image{dref: img}, &buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if m := archiveManifest(t, p); len(m) != 1 || len(m[0].RepoTags) != 0 {
		t.Fatalf("test archive is tagged: %+v", m)
	}
	svc := newService(t)
	id := configName(t, img)
	lines, err := svc.Load(t.Context(), "alice", p, nil)
	if err != nil || !slices.Equal(lines, []string{"Loaded image ID: " + id.String()}) {
		t.Fatalf("Load = %v, %v", lines, err)
	}
	saved := saveTo(t, svc, "alice", id.String())
	m := archiveManifest(t, saved)
	if len(m) != 1 || len(m[0].RepoTags) != 0 {
		t.Fatalf("Save of an untagged image: manifest %+v, want one entry without RepoTags", m)
	}
	fresh := newService(t)
	lines, err = fresh.Load(t.Context(), "alice", saved, nil)
	if err != nil || !slices.Equal(lines, []string{"Loaded image ID: " + id.String()}) {
		t.Fatalf("Load of the saved archive = %v, %v", lines, err)
	}
	if r, err := fresh.Lookup("alice", id.Hex[:12]); err != nil || r.Name != "" {
		t.Fatalf("Lookup = %+v, %v", r, err)
	}
}

func TestGetOrPull(t *testing.T) {
	t.Parallel()
	host := newRegistry(t)
	img := testImage(t, "linux", "amd64", "/bin/app")
	push(t, host+"/app:1", img)
	svc := newService(t)
	var p progressLog
	got, rec, err := svc.GetOrPull(t.Context(), "alice", host+"/app:1", p.add)
	if err != nil || digest(t, got) != digest(t, img) || rec.ID != configName(t, img) {
		t.Fatalf("GetOrPull: %v", err)
	}
	if len(p.statuses()) == 0 {
		t.Fatal("GetOrPull of a missing image did not pull")
	}
	var p2 progressLog
	if _, _, err := svc.GetOrPull(t.Context(), "alice", host+"/app:1", p2.add); err != nil || len(p2.statuses()) != 0 {
		t.Fatalf("GetOrPull of a present image pulled again (%v): %v", p2.statuses(), err)
	}
	// The pull's error is the caller's.
	if _, _, err := svc.GetOrPull(t.Context(), "alice", host+"/app:2", nil); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "manifest unknown") {
		t.Fatalf("GetOrPull of a missing tag = %v, want ErrNotFound", err)
	}
	// What is no reference is not pulled.
	if _, _, err := svc.GetOrPull(t.Context(), "alice", "Not A Name", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("GetOrPull of an invalid name = %v, want ErrNotFound", err)
	}
}
