package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/testimage"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func hashOf(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// dirNames lists a directory's entries, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func blobNames(t *testing.T, s *Store) []string {
	t.Helper()
	return dirNames(t, filepath.Join(s.Root(), "blobs", "sha256"))
}

func tmpNames(t *testing.T, s *Store) []string {
	t.Helper()
	return dirNames(t, filepath.Join(s.Root(), "tmp"))
}

// failReader fails the test if anything reads it.
type failReader struct{ t *testing.T }

func (r failReader) Read([]byte) (int, error) {
	r.t.Error("WriteBlob read the content of a blob the store already has")
	return 0, io.EOF
}

var errBroken = errors.New("connection reset mid-blob")

// brokenReader returns some bytes, then an error.
func brokenReader(b []byte) io.Reader {
	return io.MultiReader(bytes.NewReader(b), iotestErrReader{})
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errBroken }

func TestOpenLayout(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "images")
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if s.Root() != root {
		t.Fatalf("Root() = %q, want %q", s.Root(), root)
	}
	for _, d := range []string{"blobs/sha256", "tmp", "refs", "locks"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "oci-layout"))
	if err != nil {
		t.Fatal(err)
	}
	var l struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(b, &l); err != nil || l.Version != "1.0.0" {
		t.Fatalf("oci-layout %q: %v", b, err)
	}
	// Opening again keeps what is there.
	if _, err := s.WriteBlobBytes([]byte("x")); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if !s2.HasBlob(hashOf([]byte("x"))) {
		t.Fatal("reopened store lost a blob")
	}
}

func TestWriteBlob(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	content := []byte("hello, blob")
	d := hashOf(content)
	var seen []int64
	if err := s.WriteBlob(d, int64(len(content)), bytes.NewReader(content), func(n int64) { seen = append(seen, n) }); err != nil {
		t.Fatalf("WriteBlob: %v", err)
	}
	if !s.HasBlob(d) {
		t.Fatal("HasBlob false after WriteBlob")
	}
	got, err := s.ReadBlob(d)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("ReadBlob = %q, %v", got, err)
	}
	if s.BlobPath(d) != filepath.Join(s.Root(), "blobs", "sha256", d.Hex) {
		t.Fatalf("BlobPath = %s", s.BlobPath(d))
	}
	if len(seen) == 0 || seen[len(seen)-1] != int64(len(content)) {
		t.Fatalf("progress saw %v, want it to end at %d", seen, len(content))
	}
	if got := tmpNames(t, s); len(got) != 0 {
		t.Fatalf("tmp/ holds %v after a write", got)
	}
	// An unknown size (< 0) is not checked.
	other := []byte("size unknown")
	if err := s.WriteBlob(hashOf(other), -1, bytes.NewReader(other), nil); err != nil {
		t.Fatalf("WriteBlob with size -1: %v", err)
	}
}

func TestWriteBlobVerifies(t *testing.T) {
	t.Parallel()
	content := []byte("the real content")
	tests := []struct {
		name string
		d    v1.Hash
		size int64
		body []byte
	}{
		{"wrong digest", hashOf([]byte("something else")), int64(len(content)), content},
		{"wrong size", hashOf(content), int64(len(content)) + 1, content},
		{"short body", hashOf(content), int64(len(content)), content[:4]},
		{"long body", hashOf(content), -1, append(append([]byte{}, content...), '!')},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			err := s.WriteBlob(tt.d, tt.size, bytes.NewReader(tt.body), nil)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("WriteBlob = %v, want ErrDigestMismatch", err)
			}
			if !strings.Contains(err.Error(), tt.d.String()) {
				t.Errorf("error %q does not name the digest", err)
			}
			if s.HasBlob(tt.d) {
				t.Error("HasBlob true after a failed write")
			}
			if got := blobNames(t, s); len(got) != 0 {
				t.Errorf("blobs/ holds %v after a failed write", got)
			}
			if got := tmpNames(t, s); len(got) != 0 {
				t.Errorf("tmp/ holds %v after a failed write", got)
			}
		})
	}
}

func TestWriteBlobRejectsDigests(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	for _, d := range []v1.Hash{
		{Algorithm: "sha512", Hex: strings.Repeat("a", 128)},
		{Algorithm: "sha256", Hex: "abcd"},
		{Algorithm: "sha256", Hex: ""},
	} {
		err := s.WriteBlob(d, -1, failReader{t}, nil)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("WriteBlob(%v) = %v, want ErrInvalidArgument", d, err)
		}
	}
	if got := blobNames(t, s); len(got) != 0 {
		t.Fatalf("blobs/ holds %v", got)
	}
}

func TestWriteBlobPresentReadsNothing(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	content := []byte("already here")
	d, err := s.WriteBlobBytes(content)
	if err != nil {
		t.Fatal(err)
	}
	progressCalled := false
	if err := s.WriteBlob(d, int64(len(content)), failReader{t}, func(int64) { progressCalled = true }); err != nil {
		t.Fatalf("second WriteBlob: %v", err)
	}
	if progressCalled {
		t.Error("second WriteBlob reported progress")
	}
	if got, _ := s.ReadBlob(d); !bytes.Equal(got, content) {
		t.Fatalf("blob now %q", got)
	}
}

func TestWriteBlobConcurrent(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	content := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	d := hashOf(content)
	start := make(chan struct{})
	errs := make(chan error, 10)
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs <- s.WriteBlob(d, int64(len(content)), bytes.NewReader(content), nil)
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("WriteBlob: %v", err)
		}
	}
	if got := blobNames(t, s); len(got) != 1 || got[0] != d.Hex {
		t.Fatalf("blobs/ = %v, want just %s", got, d.Hex)
	}
	if got := tmpNames(t, s); len(got) != 0 {
		t.Fatalf("tmp/ holds %v", got)
	}
	got, err := s.ReadBlob(d)
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("ReadBlob: %d bytes, %v", len(got), err)
	}
}

func TestWriteBlobReaderError(t *testing.T) {
	t.Parallel()
	content := bytes.Repeat([]byte("x"), 100<<10)
	t.Run("known digest", func(t *testing.T) {
		t.Parallel()
		s := openStore(t)
		d := hashOf(content)
		err := s.WriteBlob(d, int64(len(content)), brokenReader(content[:len(content)/2]), nil)
		if !errors.Is(err, errBroken) {
			t.Fatalf("WriteBlob = %v, want the reader's error", err)
		}
		if errors.Is(err, ErrDigestMismatch) {
			t.Errorf("a read error is reported as a digest mismatch: %v", err)
		}
		if s.HasBlob(d) {
			t.Error("HasBlob true after a failed write")
		}
		if got := blobNames(t, s); len(got) != 0 {
			t.Errorf("blobs/ holds %v", got)
		}
		if got := tmpNames(t, s); len(got) != 0 {
			t.Errorf("tmp/ holds %v", got)
		}
		// The blob can be written once the content comes whole.
		if err := s.WriteBlob(d, int64(len(content)), bytes.NewReader(content), nil); err != nil {
			t.Fatalf("retry: %v", err)
		}
	})
	t.Run("unknown digest", func(t *testing.T) {
		t.Parallel()
		s := openStore(t)
		_, _, err := s.WriteBlobUnknown(brokenReader(content[:len(content)/2]))
		if !errors.Is(err, errBroken) {
			t.Fatalf("WriteBlobUnknown = %v, want the reader's error", err)
		}
		if got := blobNames(t, s); len(got) != 0 {
			t.Errorf("blobs/ holds %v", got)
		}
		if got := tmpNames(t, s); len(got) != 0 {
			t.Errorf("tmp/ holds %v", got)
		}
	})
}

func TestWriteBlobBytesAndUnknown(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	a := []byte("blob a")
	d, err := s.WriteBlobBytes(a)
	if err != nil {
		t.Fatal(err)
	}
	if want := hashOf(a); d != want {
		t.Fatalf("WriteBlobBytes = %s, want %s", d, want)
	}
	if d.String() != "sha256:"+d.Hex || len(d.Hex) != 64 {
		t.Fatalf("digest %q is not sha256:<64 hex>", d)
	}

	b := bytes.Repeat([]byte("layer"), 10000)
	d2, n, err := s.WriteBlobUnknown(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if want := hashOf(b); d2 != want || n != int64(len(b)) {
		t.Fatalf("WriteBlobUnknown = %s, %d; want %s, %d", d2, n, want, len(b))
	}
	if got, err := s.ReadBlob(d2); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("ReadBlob: %d bytes, %v", len(got), err)
	}
	// Again: the same digest, still one file, nothing left in tmp/.
	d3, n3, err := s.WriteBlobUnknown(bytes.NewReader(b))
	if err != nil || d3 != d2 || n3 != n {
		t.Fatalf("second WriteBlobUnknown = %s, %d, %v", d3, n3, err)
	}
	if got := blobNames(t, s); len(got) != 2 {
		t.Fatalf("blobs/ = %v, want 2 blobs", got)
	}
	if got := tmpNames(t, s); len(got) != 0 {
		t.Fatalf("tmp/ holds %v", got)
	}
	// The empty blob is a blob like any other.
	de, err := s.WriteBlobBytes(nil)
	if err != nil || de.Hex != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatalf("empty blob: %s, %v", de, err)
	}
}

func TestHasAndReadBlobUnknown(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	present, err := s.WriteBlobBytes([]byte("present"))
	if err != nil {
		t.Fatal(err)
	}
	missing := hashOf([]byte("missing"))
	if s.HasBlob(missing) {
		t.Error("HasBlob(missing) = true")
	}
	if _, err := s.ReadBlob(missing); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("ReadBlob(missing) = %v, want ErrNotFound", err)
	}
	// A blob is known by its sha256 digest only, even when another
	// algorithm's hex names a file that exists.
	other := v1.Hash{Algorithm: "sha512", Hex: present.Hex}
	if s.HasBlob(other) {
		t.Error("HasBlob(sha512:…) = true")
	}
	if _, err := s.ReadBlob(other); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("ReadBlob(sha512:…) = %v, want ErrInvalidArgument", err)
	}
	if !s.HasBlob(present) {
		t.Error("HasBlob(present) = false")
	}
}

func TestRefsPerTenant(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	refs, err := s.Refs("alice")
	if err != nil || len(refs) != 0 {
		t.Fatalf("Refs of a new tenant = %v, %v", refs, err)
	}
	m1, m2 := hashOf([]byte("m1")), hashOf([]byte("m2"))
	id1, id2 := hashOf([]byte("c1")), hashOf([]byte("c2"))
	added := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	err = s.UpdateRefs("alice", func(refs []Ref) ([]Ref, error) {
		return append(refs,
			Ref{Name: "docker.io/library/zeta:latest", Manifest: m1, ID: id1, Added: added},
			Ref{Name: "docker.io/library/alpha:1", Manifest: m2, ID: id2, RepoDigest: "docker.io/library/alpha@" + m2.String(), Added: added},
			Ref{Manifest: m2, ID: id2, Added: added}, // untagged
			Ref{Manifest: m1, ID: id1, Added: added}, // untagged
		), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	refs, err = s.Refs("alice")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range refs {
		names = append(names, r.Name+"|"+r.ID.Hex[:4])
	}
	want := []string{"|" + minHex(id1, id2), "|" + maxHex(id1, id2), "docker.io/library/alpha:1|" + id2.Hex[:4], "docker.io/library/zeta:latest|" + id1.Hex[:4]}
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("Refs = %v, want sorted %v", names, want)
	}
	alpha := refs[2]
	if alpha.Manifest != m2 || alpha.ID != id2 || alpha.RepoDigest != "docker.io/library/alpha@"+m2.String() || !alpha.Added.Equal(added) {
		t.Fatalf("ref did not round-trip: %+v", alpha)
	}

	// Another tenant sees none of them.
	if refs, err := s.Refs("bob"); err != nil || len(refs) != 0 {
		t.Fatalf("Refs(bob) = %v, %v", refs, err)
	}
	tenants, err := s.Tenants()
	if err != nil || strings.Join(tenants, ",") != "alice" {
		t.Fatalf("Tenants = %v, %v", tenants, err)
	}

	// An error from fn changes nothing.
	boom := errors.New("boom")
	if err := s.UpdateRefs("alice", func([]Ref) ([]Ref, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("UpdateRefs = %v, want fn's error", err)
	}
	if refs, _ := s.Refs("alice"); len(refs) != 4 {
		t.Fatalf("a failed update changed the refs: %v", refs)
	}
	// Removing all of them leaves an empty list.
	if err := s.UpdateRefs("alice", func([]Ref) ([]Ref, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if refs, err := s.Refs("alice"); err != nil || len(refs) != 0 {
		t.Fatalf("Refs after clearing = %v, %v", refs, err)
	}
}

func minHex(a, b v1.Hash) string {
	if a.Hex < b.Hex {
		return a.Hex[:4]
	}
	return b.Hex[:4]
}

func maxHex(a, b v1.Hash) string {
	if a.Hex < b.Hex {
		return b.Hex[:4]
	}
	return a.Hex[:4]
}

func TestUpdateRefsConcurrent(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			err := s.UpdateRefs("t", func(refs []Ref) ([]Ref, error) {
				return append(refs, Ref{Name: fmt.Sprintf("docker.io/library/img:%02d", i), Manifest: hashOf([]byte{byte(i)}), ID: hashOf([]byte{byte(i)})}), nil
			})
			if err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	refs, err := s.Refs("t")
	if err != nil || len(refs) != 20 {
		t.Fatalf("after 20 concurrent updates: %d refs, %v", len(refs), err)
	}
}

func TestInvalidTenants(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	for _, tenant := range []string{"", "Bad", "../x", "a/b", "-a", "a.b", "a_b", strings.Repeat("a", 64), strings.Repeat("a", 100)} {
		if _, err := s.Refs(tenant); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Refs(%q) = %v, want ErrInvalidArgument", tenant, err)
		}
		called := false
		err := s.UpdateRefs(tenant, func(r []Ref) ([]Ref, error) { called = true; return r, nil })
		if !errors.Is(err, errdefs.ErrInvalidArgument) || called {
			t.Errorf("UpdateRefs(%q) = %v (fn called: %v), want ErrInvalidArgument", tenant, err, called)
		}
	}
	for _, tenant := range []string{"a", "0", "admin", "team-1", strings.Repeat("a", 63)} {
		if err := s.UpdateRefs(tenant, func(r []Ref) ([]Ref, error) { return r, nil }); err != nil {
			t.Errorf("UpdateRefs(%q) = %v", tenant, err)
		}
	}
	// Nothing escaped refs/.
	if _, err := os.Stat(filepath.Join(s.Root(), "x.json")); err == nil {
		t.Error("../x wrote outside refs/")
	}
	for _, n := range dirNames(t, filepath.Join(s.Root(), "refs")) {
		if !strings.HasSuffix(n, ".json") {
			t.Errorf("refs/ holds %q", n)
		}
	}
}

func TestCorruptRefs(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	p := filepath.Join(s.Root(), "refs", "alice.json")
	if err := os.WriteFile(p, []byte(`[{"name": "x", "manifest": `), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Refs("alice"); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Refs of a corrupt file = %v, want a corrupt reference file error", err)
	}
	called := false
	if err := s.UpdateRefs("alice", func(r []Ref) ([]Ref, error) { called = true; return nil, nil }); err == nil || called {
		t.Fatalf("UpdateRefs over a corrupt file = %v (fn called: %v), want an error", err, called)
	}
	// The corrupt file is left for a human, not overwritten.
	if b, _ := os.ReadFile(p); !bytes.HasPrefix(b, []byte(`[{"name"`)) {
		t.Fatalf("corrupt file was rewritten: %q", b)
	}
	// GC refuses to run on an incomplete picture of what is reachable.
	d, err := s.WriteBlobBytes([]byte("maybe alice's"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(); err == nil {
		t.Fatal("GC succeeded with a corrupt reference file")
	}
	if !s.HasBlob(d) {
		t.Fatal("GC deleted a blob while a reference file was unreadable")
	}
}

// fakeImage writes a manifest with a config and layers (all small blobs)
// and returns the manifest's, config's and layers' digests.
func fakeImage(t *testing.T, s *Store, tag string, nlayers int) (manifest, config v1.Hash, layers []v1.Hash) {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","tag":"` + tag + `"}`)
	config, err := s.WriteBlobBytes(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: config, Size: int64(len(cfg))}}
	for i := 0; i < nlayers; i++ {
		b := []byte(fmt.Sprintf("layer %d of %s", i, tag))
		d, err := s.WriteBlobBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, d)
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.OCILayer, Digest: d, Size: int64(len(b))})
	}
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if manifest, err = s.WriteBlobBytes(mb); err != nil {
		t.Fatal(err)
	}
	return manifest, config, layers
}

func addRef(t *testing.T, s *Store, tenant, name string, manifest, id v1.Hash) {
	t.Helper()
	err := s.UpdateRefs(tenant, func(refs []Ref) ([]Ref, error) {
		return append(refs, Ref{Name: name, Manifest: manifest, ID: id}), nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestReachable(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	m1, c1, l1 := fakeImage(t, s, "one", 2)
	m2, c2, l2 := fakeImage(t, s, "two", 1)
	m3, c3, l3 := fakeImage(t, s, "three", 1) // no reference
	addRef(t, s, "alice", "docker.io/library/one:latest", m1, c1)
	addRef(t, s, "bob", "", m2, c2) // untagged, still reachable
	// A reference to a manifest that is missing keeps that digest only.
	missing := hashOf([]byte("missing manifest"))
	addRef(t, s, "carol", "docker.io/library/gone:latest", missing, hashOf([]byte("gone")))

	keep, err := s.Reachable()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]v1.Hash{m1, c1, m2, c2, missing}, append(l1, l2...)...) {
		if !keep[d.Hex] {
			t.Errorf("%s not reachable", d)
		}
	}
	for _, d := range append([]v1.Hash{m3, c3}, l3...) {
		if keep[d.Hex] {
			t.Errorf("%s of the unreferenced image is reachable", d)
		}
	}
	if len(keep) != 8 {
		t.Errorf("Reachable has %d entries, want 8: %v", len(keep), keep)
	}
}

func TestGC(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	m1, c1, l1 := fakeImage(t, s, "kept", 2)
	m2, c2, l2 := fakeImage(t, s, "dropped", 2)
	// A layer both images share stays.
	shared := l1[0]
	sharedManifest := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{Digest: c2, Size: 1}, Layers: []v1.Descriptor{{Digest: shared, Size: 1}}}
	mb, _ := json.Marshal(sharedManifest)
	m3, err := s.WriteBlobBytes(mb)
	if err != nil {
		t.Fatal(err)
	}
	addRef(t, s, "alice", "docker.io/library/kept:latest", m1, c1)
	stray, err := s.WriteBlobBytes([]byte("stray"))
	if err != nil {
		t.Fatal(err)
	}
	// Leftovers of writes that died.
	if err := os.WriteFile(filepath.Join(s.Root(), "tmp", "dead.123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.Root(), "tmp", "deaddir", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}

	res, err := s.GC()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]v1.Hash{m1, c1}, l1...) {
		if !s.HasBlob(d) {
			t.Errorf("GC removed reachable blob %s", d)
		}
	}
	removed := append([]v1.Hash{m2, c2, m3, stray}, l2...)
	var want []string
	var wantBytes int64 = int64(len("partial"))
	for _, d := range removed {
		if s.HasBlob(d) {
			t.Errorf("GC kept unreachable blob %s", d)
		}
		want = append(want, d.Hex)
	}
	var got []string
	for _, d := range res.Blobs {
		got = append(got, d.Hex)
		if d.Algorithm != "sha256" {
			t.Errorf("GC reported %s", d)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("GC reported %v, want %v", got, want)
	}
	if res.Bytes < wantBytes {
		t.Errorf("GC reclaimed %d bytes, want at least %d", res.Bytes, wantBytes)
	}
	if got := tmpNames(t, s); len(got) != 0 {
		t.Errorf("tmp/ holds %v after GC", got)
	}
	// A second GC finds nothing.
	res, err = s.GC()
	if err != nil || len(res.Blobs) != 0 || res.Bytes != 0 {
		t.Fatalf("second GC = %+v, %v", res, err)
	}
}

// waitFlockWaiter returns once some open file description is blocked
// waiting for a flock of path, as /proc/locks shows; it fails the test if
// done closes first (the locker never blocked).
func waitFlockWaiter(t *testing.T, path string, done <-chan struct{}) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ino := fmt.Sprintf(":%d", fileIno(fi))
	for {
		select {
		case <-done:
			t.Fatal("GC returned while a writer held the store's shared lock")
		default:
		}
		b, err := os.ReadFile("/proc/locks")
		if err != nil {
			t.Skipf("cannot see lock waiters: %v", err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 8 && f[1] == "->" && f[2] == "FLOCK" && strings.HasSuffix(f[6], ino) {
				return
			}
		}
		runtime.Gosched()
	}
}

func TestGCWaitsForWriters(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	unlock, err := s.Writing()
	if err != nil {
		t.Fatal(err)
	}
	// A second writer shares the lock.
	unlock2, err := s.Writing()
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
	// A blob written under the lock, whose reference is not in place yet.
	d, err := s.WriteBlobBytes([]byte("pulled, not yet referenced"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Root(), "tmp", "in-progress"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var res GCResult
	var gcErr error
	go func() {
		defer close(done)
		res, gcErr = s.GC()
	}()
	waitFlockWaiter(t, filepath.Join(s.Root(), "locks", "gc.lock"), done)
	select {
	case <-done:
		t.Fatal("GC returned while a writer held the store's shared lock")
	default:
	}
	if !s.HasBlob(d) {
		t.Fatal("GC removed a blob while a writer held the lock")
	}
	if got := tmpNames(t, s); len(got) != 1 {
		t.Fatalf("GC emptied tmp/ while a writer held the lock: %v", got)
	}
	// The writer puts its reference in place and lets go.
	addRef(t, s, "alice", "", d, d)
	unlock()
	<-done
	if gcErr != nil {
		t.Fatal(gcErr)
	}
	if !s.HasBlob(d) || len(res.Blobs) != 0 {
		t.Fatalf("GC removed %v; the referenced blob is there: %v", res.Blobs, s.HasBlob(d))
	}
	if got := tmpNames(t, s); len(got) != 0 {
		t.Fatalf("tmp/ holds %v after GC", got)
	}
}

func TestImage(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	src := buildTestImage(t)
	writeImageBlobs(t, s, src)
	d, err := src.Digest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Image(d)
	if err != nil {
		t.Fatalf("Image: %v", err)
	}
	gotD, err := img.Digest()
	if err != nil || gotD != d {
		t.Fatalf("image digest %s, %v; want %s", gotD, err, d)
	}
	wantName, _ := src.ConfigName()
	gotName, err := img.ConfigName()
	if err != nil || gotName != wantName {
		t.Fatalf("ConfigName = %s, %v; want %s", gotName, err, wantName)
	}
	wantCF, _ := src.ConfigFile()
	gotCF, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if gotCF.Architecture != "amd64" || strings.Join(gotCF.Config.Cmd, " ") != strings.Join(wantCF.Config.Cmd, " ") {
		t.Fatalf("config %+v", gotCF)
	}
	mt, err := img.MediaType()
	if err != nil || mt != types.DockerManifestSchema2 {
		t.Fatalf("MediaType = %s, %v", mt, err)
	}
	wantLayers, _ := src.Layers()
	gotLayers, err := img.Layers()
	if err != nil || len(gotLayers) != len(wantLayers) {
		t.Fatalf("Layers: %d, %v; want %d", len(gotLayers), err, len(wantLayers))
	}
	for i := range wantLayers {
		wd, _ := wantLayers[i].Digest()
		gd, err := gotLayers[i].Digest()
		if err != nil || gd != wd {
			t.Errorf("layer %d digest %s, %v; want %s", i, gd, err, wd)
		}
		wdiff, _ := wantLayers[i].DiffID()
		gdiff, err := gotLayers[i].DiffID()
		if err != nil || gdiff != wdiff {
			t.Errorf("layer %d diff ID %s, %v; want %s", i, gdiff, err, wdiff)
		}
		// The content comes from the store's file.
		rc, err := gotLayers[i].Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || hashOf(b) != wd {
			t.Errorf("layer %d content hashes to %s, %v", i, hashOf(b), err)
		}
		rc, err = gotLayers[i].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err = io.ReadAll(rc)
		rc.Close()
		if err != nil || hashOf(b) != wdiff {
			t.Errorf("layer %d uncompressed content hashes to %s, %v", i, hashOf(b), err)
		}
	}
	// A layer whose file is gone reads as not found.
	ld, _ := wantLayers[0].Digest()
	if err := os.Remove(s.BlobPath(ld)); err != nil {
		t.Fatal(err)
	}
	l, err := img.LayerByDigest(ld)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Compressed(); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Compressed of a missing blob = %v, want ErrNotFound", err)
	}
	if _, err := img.LayerByDigest(hashOf([]byte("not a layer"))); err == nil {
		t.Fatal("LayerByDigest of a foreign digest succeeded")
	}
}

func TestImageManifestWithoutMediaType(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	_, c, l := fakeImage(t, s, "nomt", 1)
	cfg, _ := s.ReadBlob(c)
	raw := fmt.Sprintf(`{"schemaVersion":2,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":%q,"digest":%q,"size":%d}]}`,
		types.OCIConfigJSON, c, len(cfg), types.OCILayer, l[0], len("layer 0 of nomt"))
	d, err := s.WriteBlobBytes([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Image(d)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Fatalf("MediaType = %s, want the OCI manifest type", mt)
	}
	if name, err := img.ConfigName(); err != nil || name != c {
		t.Fatalf("ConfigName = %s, %v", name, err)
	}
}

func TestImageErrors(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	if _, err := s.Image(hashOf([]byte("no such manifest"))); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Image(missing) = %v, want ErrNotFound", err)
	}
	m, _, _ := fakeImage(t, s, "child", 1)
	idx := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[{"mediaType":%q,"digest":%q,"size":10}]}`,
		types.OCIImageIndex, types.OCIManifestSchema1, m)
	d, err := s.WriteBlobBytes([]byte(idx))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Image(d); !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "index") {
		t.Errorf("Image(index) = %v, want an InvalidArgument index error", err)
	}
	dockerList := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"manifests":[]}`, types.DockerManifestList)
	d, err = s.WriteBlobBytes([]byte(dockerList))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Image(d); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Image(docker manifest list) = %v, want ErrInvalidArgument", err)
	}
	d, err = s.WriteBlobBytes([]byte("not json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Image(d); err == nil {
		t.Error("Image(garbage) succeeded")
	}
}

func fileIno(fi os.FileInfo) uint64 { return fi.Sys().(*syscall.Stat_t).Ino }

// buildTestImage is a two-layer image made with internal/testimage.
func buildTestImage(t *testing.T) v1.Image {
	t.Helper()
	l1, err := testimage.Layer([]testimage.File{
		{Path: "/bin", Dir: true},
		{Path: "/bin/app", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := testimage.Layer([]testimage.File{{Path: "/etc/motd", Data: []byte("hello\n")}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Image(v1.Config{Cmd: []string{"/bin/app", "run"}}, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeImageBlobs stores an image's config, layers and manifest with
// WriteBlob, as a pull does.
func writeImageBlobs(t *testing.T, s *Store, img v1.Image) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBlob(m.Config.Digest, m.Config.Size, bytes.NewReader(cfg), nil); err != nil {
		t.Fatal(err)
	}
	for _, l := range m.Layers {
		layer, err := img.LayerByDigest(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := layer.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		err = s.WriteBlob(l.Digest, l.Size, rc, nil)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBlob(d, int64(len(raw)), bytes.NewReader(raw), nil); err != nil {
		t.Fatal(err)
	}
}
