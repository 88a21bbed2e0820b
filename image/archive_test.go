package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// tarEntry is one entry of a hand-made archive: a regular file, or a
// symlink or hard link when typ says so.
type tarEntry struct {
	name string
	body []byte
	typ  byte
	link string
}

func writeTarFile(t *testing.T, entries []tarEntry) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: e.typ, Linkname: e.link}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.body))
		}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "archive.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// rawLayer is an uncompressed layer tarball holding one file.
func rawLayer(t *testing.T, path, content string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: path, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(content))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// imageConfig is a linux/amd64 config over layers with these diff IDs.
func imageConfig(t *testing.T, diffIDs ...v1.Hash) []byte {
	t.Helper()
	cf := v1.ConfigFile{OS: "linux", Architecture: "amd64", Config: v1.Config{Cmd: []string{"sh"}},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDs}}
	b, err := json.Marshal(cf)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func manifestJSON(t *testing.T, entries ...dockerEntry) []byte {
	t.Helper()
	b, err := json.Marshal(entries)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// loadedImage is the image a tenant's reference names, with its manifest.
func loadedImage(t *testing.T, svc *Service, tenant, ref string) (v1.Image, *v1.Manifest) {
	t.Helper()
	img, _, err := svc.Get(tenant, ref)
	if err != nil {
		t.Fatalf("Get(%s): %v", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return img, m
}

func TestLoadDockerArchiveGzipLayers(t *testing.T) {
	t.Parallel()
	l1 := rawLayer(t, "a.txt", "first layer")
	l2 := rawLayer(t, "b.txt", "second layer")
	cfg := imageConfig(t, sha(l1), sha(l2))
	id := sha(cfg)
	p := writeTarFile(t, []tarEntry{
		{name: id.Hex + ".json", body: cfg},
		{name: "l1/layer.tar.gz", body: gz(t, l1)},
		{name: "l2/layer.tar", body: l2},
		{name: "manifest.json", body: manifestJSON(t, dockerEntry{Config: id.Hex + ".json", RepoTags: []string{"test/gz:1"}, Layers: []string{"l1/layer.tar.gz", "l2/layer.tar"}})},
	})
	svc := newService(t)
	var p1 progressLog
	lines, err := svc.Load(t.Context(), "alice", p, p1.add)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !slices.Equal(lines, []string{"Loaded image: test/gz:1"}) {
		t.Fatalf("Load = %v", lines)
	}
	if p1.count("l1", "Loading layer") != 1 || p1.count("l2", "Loading layer") != 1 {
		t.Errorf("progress %v", p1.statuses())
	}
	rec, err := svc.Lookup("alice", "test/gz:1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID != id || rec.Name != "docker.io/test/gz:1" || rec.RepoDigest != "" {
		t.Fatalf("ref %+v; want ID %s", rec, id)
	}
	img, m := loadedImage(t, svc, "alice", "test/gz:1")
	if m.MediaType != types.OCIManifestSchema1 || m.Config.Digest != id || len(m.Layers) != 2 {
		t.Fatalf("manifest %+v", m)
	}
	for i, want := range [][]byte{l1, l2} {
		l := m.Layers[i]
		if l.Digest != sha(want) || l.Size != int64(len(want)) || l.MediaType != types.OCIUncompressedLayer {
			t.Errorf("layer %d: %+v; want the uncompressed layer %s", i, l, sha(want))
		}
		got, err := svc.Store.ReadBlob(l.Digest)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("layer %d stored as %d bytes, %v", i, len(got), err)
		}
	}
	if cn, err := img.ConfigName(); err != nil || cn != id {
		t.Fatalf("image ID %s, %v; want %s", cn, err, id)
	}
	if rec.Manifest != digest(t, img) {
		t.Fatalf("ref manifest %s, image %s", rec.Manifest, digest(t, img))
	}
	// Loading it again changes nothing.
	if lines, err := svc.Load(t.Context(), "alice", p, nil); err != nil || len(lines) != 1 {
		t.Fatalf("second Load = %v, %v", lines, err)
	}
	if refs, _ := svc.Store.Refs("alice"); len(refs) != 1 || refs[0].ID != id {
		t.Fatalf("refs after a second load: %+v", refs)
	}
}

func TestLoadDockerArchiveLinks(t *testing.T) {
	t.Parallel()
	l1 := rawLayer(t, "a.txt", "layer behind a symlink")
	l2 := rawLayer(t, "b.txt", "layer behind a hard link")
	l3 := rawLayer(t, "c.txt", "layer behind two symlinks")
	cfg := imageConfig(t, sha(l1), sha(l2), sha(l3))
	id := sha(cfg)
	blob := func(b []byte) string { return "blobs/sha256/" + sha(b).Hex }
	p := writeTarFile(t, []tarEntry{
		{name: "blobs/", typ: tar.TypeDir},
		{name: "blobs/sha256/", typ: tar.TypeDir},
		// Links may come before their targets.
		{name: "aaa/layer.tar", typ: tar.TypeSymlink, link: "../" + blob(l1)},
		{name: blob(l1), body: l1},
		{name: blob(l2), body: l2},
		{name: "bbb/layer.tar", typ: tar.TypeLink, link: blob(l2)},
		{name: blob(l3), body: l3},
		{name: "ccc/inner.tar", typ: tar.TypeSymlink, link: "../" + blob(l3)},
		{name: "ccc/layer.tar", typ: tar.TypeSymlink, link: "inner.tar"},
		{name: blob(cfg), body: cfg},
		{name: "config.json", typ: tar.TypeSymlink, link: blob(cfg)},
		{name: "./manifest.json", body: manifestJSON(t, dockerEntry{Config: "config.json", RepoTags: []string{"linked:1"}, Layers: []string{"aaa/layer.tar", "./bbb/layer.tar", "ccc/layer.tar"}})},
	})
	svc := newService(t)
	lines, err := svc.Load(t.Context(), "alice", p, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !slices.Equal(lines, []string{"Loaded image: linked:1"}) {
		t.Fatalf("Load = %v", lines)
	}
	_, m := loadedImage(t, svc, "alice", "linked:1")
	if m.Config.Digest != id || len(m.Layers) != 3 {
		t.Fatalf("manifest %+v", m)
	}
	for i, want := range [][]byte{l1, l2, l3} {
		if m.Layers[i].Digest != sha(want) {
			t.Errorf("layer %d is %s, want %s", i, m.Layers[i].Digest, sha(want))
		}
	}
}

func TestLoadDockerArchiveCorrupt(t *testing.T) {
	t.Parallel()
	l1 := rawLayer(t, "a.txt", "what the config promised")
	l1bad := rawLayer(t, "a.txt", "what the archive holds!!")
	cfg := imageConfig(t, sha(l1))
	id := sha(cfg)
	cfgName := id.Hex + ".json"
	good := dockerEntry{Config: cfgName, RepoTags: []string{"corrupt:1"}, Layers: []string{"l1/layer.tar"}}
	tests := []struct {
		name    string
		entries []tarEntry
		class   error
		want    string
	}{
		{"layer does not match diff_ids", []tarEntry{
			{name: cfgName, body: cfg},
			{name: "l1/layer.tar", body: l1bad},
			{name: "manifest.json", body: manifestJSON(t, good)},
		}, errdefs.ErrInvalidArgument, "corrupt"},
		{"gzip layer does not match diff_ids", []tarEntry{
			{name: cfgName, body: cfg},
			{name: "l1/layer.tar", body: gz(t, l1bad)},
			{name: "manifest.json", body: manifestJSON(t, good)},
		}, errdefs.ErrInvalidArgument, "corrupt"},
		{"missing config", []tarEntry{
			{name: "l1/layer.tar", body: l1},
			{name: "manifest.json", body: manifestJSON(t, good)},
		}, errdefs.ErrInvalidArgument, "config " + cfgName + " is missing"},
		{"missing layer", []tarEntry{
			{name: cfgName, body: cfg},
			{name: "manifest.json", body: manifestJSON(t, good)},
		}, errdefs.ErrInvalidArgument, "layer l1/layer.tar is missing"},
		{"dangling symlink layer", []tarEntry{
			{name: cfgName, body: cfg},
			{name: "l1/layer.tar", typ: tar.TypeSymlink, link: "../nowhere.tar"},
			{name: "manifest.json", body: manifestJSON(t, good)},
		}, errdefs.ErrInvalidArgument, "is missing"},
		{"fewer layers than diff_ids", []tarEntry{
			{name: cfgName, body: cfg},
			{name: "manifest.json", body: manifestJSON(t, dockerEntry{Config: cfgName, RepoTags: []string{"corrupt:1"}})},
		}, errdefs.ErrInvalidArgument, "layers listed"},
		{"empty manifest.json", []tarEntry{
			{name: cfgName, body: cfg},
			{name: "manifest.json", body: []byte("[]")},
		}, errdefs.ErrInvalidArgument, "lists no image"},
		{"manifest.json not JSON", []tarEntry{
			{name: "manifest.json", body: []byte("{not json")},
		}, errdefs.ErrInvalidArgument, "manifest.json"},
		{"config not JSON", []tarEntry{
			{name: cfgName, body: []byte("nope")},
			{name: "l1/layer.tar", body: l1},
			{name: "manifest.json", body: manifestJSON(t, good)},
		}, errdefs.ErrInvalidArgument, "config"},
		{"bad tag", []tarEntry{
			{name: cfgName, body: cfg},
			{name: "l1/layer.tar", body: l1},
			{name: "manifest.json", body: manifestJSON(t, dockerEntry{Config: cfgName, RepoTags: []string{"BAD TAG"}, Layers: []string{"l1/layer.tar"}})},
		}, errdefs.ErrInvalidArgument, "bad tag"},
		{"neither format", []tarEntry{
			{name: "hello.txt", body: []byte("hi")},
		}, errdefs.ErrInvalidArgument, "neither a docker-archive"},
		{"empty tar", nil, errdefs.ErrInvalidArgument, "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			p := writeTarFile(t, tt.entries)
			lines, err := svc.Load(t.Context(), "alice", p, nil)
			if err == nil {
				t.Fatalf("Load = %v, want an error", lines)
			}
			if !errors.Is(err, tt.class) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v; want %v containing %q", err, tt.class, tt.want)
			}
			if refs, _ := svc.Store.Refs("alice"); len(refs) != 0 {
				t.Fatalf("a failed load added refs %+v", refs)
			}
		})
	}
}

func TestLoadNotAnArchive(t *testing.T) {
	t.Parallel()
	svc := newService(t)
	if _, err := svc.Load(t.Context(), "alice", filepath.Join(t.TempDir(), "nope.tar"), nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Load of a missing file = %v, want ErrNotFound", err)
	}
	p := filepath.Join(t.TempDir(), "text.tar")
	if err := os.WriteFile(p, []byte(strings.Repeat("not a tarball\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Load(t.Context(), "alice", p, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("Load of a text file = %v, want ErrInvalidArgument", err)
	}
	// A truncated archive.
	good, err := os.ReadFile(writeArchive(t, testImage(t, "linux", "amd64", "/bin/app")))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, good[:len(good)/2+3], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Load(t.Context(), "alice", p, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("Load of a truncated archive = %v, want ErrInvalidArgument", err)
	}
	if refs, _ := svc.Store.Refs("alice"); len(refs) != 0 {
		t.Fatalf("refs %+v", refs)
	}
}

func TestLoadDockerArchiveUntagged(t *testing.T) {
	t.Parallel()
	l1 := rawLayer(t, "a.txt", "untagged")
	cfg := imageConfig(t, sha(l1))
	id := sha(cfg)
	p := writeTarFile(t, []tarEntry{
		{name: id.Hex + ".json", body: cfg},
		{name: "l1/layer.tar", body: l1},
		{name: "manifest.json", body: manifestJSON(t, dockerEntry{Config: id.Hex + ".json", Layers: []string{"l1/layer.tar"}})},
	})
	svc := newService(t)
	lines, err := svc.Load(t.Context(), "alice", p, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !slices.Equal(lines, []string{"Loaded image ID: " + id.String()}) {
		t.Fatalf("Load = %v, want Loaded image ID: %s", lines, id)
	}
	for _, q := range []string{id.String(), id.Hex, id.Hex[:12]} {
		rec, err := svc.Lookup("alice", q)
		if err != nil || rec.ID != id || rec.Name != "" {
			t.Fatalf("Lookup(%s) = %+v, %v", q, rec, err)
		}
	}
	// Loaded again: still one entry.
	if _, err := svc.Load(t.Context(), "alice", p, nil); err != nil {
		t.Fatal(err)
	}
	if refs, _ := svc.Store.Refs("alice"); len(refs) != 1 {
		t.Fatalf("refs after a second load: %+v", refs)
	}
	list, err := svc.List("alice")
	if err != nil || len(list) != 1 || list[0].Name != "" || list[0].ID != id {
		t.Fatalf("List = %+v, %v", list, err)
	}
	// Tagging it replaces the untagged entry.
	if err := svc.Tag("alice", id.Hex[:12], "named:1"); err != nil {
		t.Fatal(err)
	}
	if got := refNames(t, svc, "alice"); !slices.Equal(got, []string{"docker.io/library/named:1"}) {
		t.Fatalf("refs after tagging %v", got)
	}
	// An untagged image is removed by ID, and its blobs go.
	svc2 := newService(t)
	if _, err := svc2.Load(t.Context(), "alice", p, nil); err != nil {
		t.Fatal(err)
	}
	events, err := svc2.Remove("alice", id.Hex[:12], false)
	if err != nil || !slices.Contains(events, "Deleted: "+id.String()) {
		t.Fatalf("Remove = %v, %v", events, err)
	}
	if svc2.Store.HasBlob(id) || svc2.Store.HasBlob(sha(l1)) {
		t.Fatal("blobs of the removed untagged image remain")
	}
}

func TestLoadDockerArchiveSeveralImages(t *testing.T) {
	t.Parallel()
	shared := rawLayer(t, "base.txt", "shared base")
	own := rawLayer(t, "own.txt", "own layer")
	cfgA := imageConfig(t, sha(shared))
	cfgB := imageConfig(t, sha(shared), sha(own))
	p := writeTarFile(t, []tarEntry{
		{name: sha(cfgA).Hex + ".json", body: cfgA},
		{name: sha(cfgB).Hex + ".json", body: cfgB},
		{name: "base/layer.tar", body: shared},
		{name: "own/layer.tar", body: own},
		{name: "manifest.json", body: manifestJSON(t,
			dockerEntry{Config: sha(cfgA).Hex + ".json", RepoTags: []string{"a:1", "a:latest"}, Layers: []string{"base/layer.tar"}},
			dockerEntry{Config: sha(cfgB).Hex + ".json", RepoTags: []string{"example.com/b:2"}, Layers: []string{"base/layer.tar", "own/layer.tar"}},
		)},
	})
	svc := newService(t)
	lines, err := svc.Load(t.Context(), "alice", p, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Loaded image: a:1", "Loaded image: a:latest", "Loaded image: example.com/b:2"}
	if !slices.Equal(lines, want) {
		t.Fatalf("Load = %v, want %v", lines, want)
	}
	for q, id := range map[string]v1.Hash{"a:1": sha(cfgA), "a": sha(cfgA), "example.com/b:2": sha(cfgB)} {
		if rec, err := svc.Lookup("alice", q); err != nil || rec.ID != id {
			t.Errorf("Lookup(%s) = %+v, %v; want %s", q, rec, err, id)
		}
	}
}

// ociArchive tars an OCI image layout of idx; edit, if set, may change the
// layout's files first.
func ociArchive(t *testing.T, idx v1.ImageIndex, edit func(dir string)) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := layout.Write(dir, idx); err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(dir)
	}
	var entries []tarEntry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			entries = append(entries, tarEntry{name: rel + "/", typ: tar.TypeDir})
			return nil
		}
		b, err := os.ReadFile(p)
		entries = append(entries, tarEntry{name: rel, body: b})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return writeTarFile(t, entries)
}

func named(img v1.Image, annotations map[string]string) mutate.IndexAddendum {
	return mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Annotations: annotations}}
}

func TestLoadOCIArchiveNestedIndex(t *testing.T) {
	t.Parallel()
	amd64 := testImage(t, "linux", "amd64", "/bin/app", "amd64")
	arm64 := testImage(t, "linux", "arm64", "/bin/app", "arm64")
	inner := mutate.AppendManifests(empty.Index, platformAdd(arm64, "linux", "arm64"), platformAdd(amd64, "linux", "amd64"))
	middle := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: inner, Descriptor: v1.Descriptor{MediaType: types.OCIImageIndex}})
	top := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: middle, Descriptor: v1.Descriptor{
		MediaType:   types.OCIImageIndex,
		Annotations: map[string]string{"io.containerd.image.name": "docker.io/library/multi:1"},
	}})
	p := ociArchive(t, top, nil)
	svc := newService(t)
	lines, err := svc.Load(t.Context(), "alice", p, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !slices.Equal(lines, []string{"Loaded image: multi:1"}) {
		t.Fatalf("Load = %v", lines)
	}
	rec, err := svc.Lookup("alice", "multi:1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Manifest != digest(t, amd64) || rec.ID != configName(t, amd64) {
		t.Fatalf("loaded %s (ID %s), want the amd64 image %s", rec.Manifest, rec.ID, digest(t, amd64))
	}
	// The blobs are stored as they are (compressed layers too).
	wantBlobs(t, svc, true, imageBlobs(t, amd64)...)
	img, _ := loadedImage(t, svc, "alice", "multi:1")
	if digest(t, img) != digest(t, amd64) {
		t.Fatal("stored image differs")
	}

	armOnly := ociArchive(t, mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add:        mutate.AppendManifests(empty.Index, platformAdd(arm64, "linux", "arm64")),
		Descriptor: v1.Descriptor{MediaType: types.OCIImageIndex, Annotations: map[string]string{"io.containerd.image.name": "arm:1"}},
	}), nil)
	svc2 := newService(t)
	if _, err := svc2.Load(t.Context(), "alice", armOnly, nil); err == nil || !strings.Contains(err.Error(), "no matching manifest for linux/amd64") {
		t.Fatalf("Load of an arm64-only index = %v", err)
	}
	if refs, _ := svc2.Store.Refs("alice"); len(refs) != 0 {
		t.Fatalf("refs %+v", refs)
	}
}

func TestLoadOCIArchiveDigestMismatch(t *testing.T) {
	t.Parallel()
	img := testImage(t, "linux", "amd64", "/bin/app")
	layerDigest := layerDigests(t, img)[0]
	p := ociArchive(t, mutate.AppendManifests(empty.Index, named(img, map[string]string{"io.containerd.image.name": "x:1"})), func(dir string) {
		bp := filepath.Join(dir, "blobs", "sha256", layerDigest.Hex)
		b, err := os.ReadFile(bp)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] ^= 0xff // same size, other content
		if err := os.WriteFile(bp, b, 0o644); err != nil {
			t.Fatal(err)
		}
	})
	svc := newService(t)
	_, err := svc.Load(t.Context(), "alice", p, nil)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "digest mismatch") || !strings.Contains(err.Error(), layerDigest.Hex) {
		t.Fatalf("Load = %v, want an InvalidArgument digest mismatch naming %s", err, layerDigest)
	}
	if svc.Store.HasBlob(layerDigest) {
		t.Fatal("the corrupt blob was stored")
	}
	if refs, _ := svc.Store.Refs("alice"); len(refs) != 0 {
		t.Fatalf("refs %+v", refs)
	}
}

func TestLoadOCIArchiveErrors(t *testing.T) {
	t.Parallel()
	img := testImage(t, "linux", "amd64", "/bin/app")
	idx := mutate.AppendManifests(empty.Index, named(img, map[string]string{"io.containerd.image.name": "x:1"}))
	tests := []struct {
		name string
		edit func(dir string)
		want string
	}{
		{"missing layer", func(dir string) {
			os.Remove(filepath.Join(dir, "blobs", "sha256", layerDigests(t, img)[1].Hex))
		}, "blob " + layerDigests(t, img)[1].String() + " is missing"},
		{"missing manifest", func(dir string) {
			os.Remove(filepath.Join(dir, "blobs", "sha256", digest(t, img).Hex))
		}, "invalid OCI archive"},
		{"blob under another algorithm", func(dir string) {
			os.MkdirAll(filepath.Join(dir, "blobs", "md5"), 0o755)
			os.WriteFile(filepath.Join(dir, "blobs", "md5", "0123"), []byte("x"), 0o644)
		}, "unexpected blob"},
		{"index.json not JSON", func(dir string) {
			os.WriteFile(filepath.Join(dir, "index.json"), []byte("{"), 0o644)
		}, "index.json"},
		{"index.json lists nothing", func(dir string) {
			os.WriteFile(filepath.Join(dir, "index.json"), []byte(`{"schemaVersion":2,"manifests":[]}`), 0o644)
		}, "lists no image"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			_, err := svc.Load(t.Context(), "alice", ociArchive(t, idx, tt.edit), nil)
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, want InvalidArgument containing %q", err, tt.want)
			}
			if refs, _ := svc.Store.Refs("alice"); len(refs) != 0 {
				t.Fatalf("refs %+v", refs)
			}
		})
	}
}

func TestLoadOCIArchiveNames(t *testing.T) {
	t.Parallel()
	img := testImage(t, "linux", "amd64", "/bin/app")
	id := configName(t, img)
	tests := []struct {
		name        string
		annotations map[string]string
		line        string
		ref         string // canonical name, "" for untagged
	}{
		{"containerd name wins", map[string]string{
			"io.containerd.image.name":          "docker.io/library/winner:1",
			"org.opencontainers.image.ref.name": "loser:2",
		}, "Loaded image: winner:1", "docker.io/library/winner:1"},
		{"full ref.name", map[string]string{"org.opencontainers.image.ref.name": "example.com/team/app:3"},
			"Loaded image: example.com/team/app:3", "example.com/team/app:3"},
		{"ref.name with a tag", map[string]string{"org.opencontainers.image.ref.name": "app:4"},
			"Loaded image: app:4", "docker.io/library/app:4"},
		{"bare tag ref.name", map[string]string{"org.opencontainers.image.ref.name": "1.0"},
			"Loaded image ID: " + id.String(), ""},
		{"bare word ref.name", map[string]string{"org.opencontainers.image.ref.name": "latest"},
			"Loaded image ID: " + id.String(), ""},
		{"no annotations", nil, "Loaded image ID: " + id.String(), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			svc := newService(t)
			p := ociArchive(t, mutate.AppendManifests(empty.Index, named(img, tt.annotations)), nil)
			lines, err := svc.Load(t.Context(), "alice", p, nil)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !slices.Equal(lines, []string{tt.line}) {
				t.Fatalf("Load = %v, want %q", lines, tt.line)
			}
			refs, err := svc.Store.Refs("alice")
			if err != nil || len(refs) != 1 {
				t.Fatalf("refs %+v, %v", refs, err)
			}
			if refs[0].Name != tt.ref || refs[0].ID != id || refs[0].Manifest != digest(t, img) {
				t.Fatalf("ref %+v; want name %q, ID %s", refs[0], tt.ref, id)
			}
		})
	}
}

// index.json itself may list an image per platform (no nested index).
func TestLoadOCIArchiveTopLevelPlatforms(t *testing.T) {
	t.Parallel()
	amd64 := testImage(t, "linux", "amd64", "/bin/app", "amd64")
	arm64 := testImage(t, "linux", "arm64", "/bin/app", "arm64")
	ann := map[string]string{"io.containerd.image.name": "docker.io/library/multi:1"}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}, Annotations: ann}},
		mutate.IndexAddendum{Add: arm64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}, Annotations: ann}},
	)
	svc := newService(t)
	if _, err := svc.Load(t.Context(), "alice", ociArchive(t, idx, nil), nil); err != nil {
		t.Fatalf("Load: %v", err)
	}
	rec, err := svc.Lookup("alice", "multi:1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Manifest != digest(t, amd64) {
		t.Fatalf("multi:1 names %s, want the linux/amd64 image %s (not arm64 %s)", rec.Manifest, digest(t, amd64), digest(t, arm64))
	}
}

// Within an index, an entry for linux/amd64 wins over one without a
// platform listed before it, as FromIndex (open.go) has it.
func TestLoadOCIArchivePlatformBeatsUnlabelled(t *testing.T) {
	t.Parallel()
	amd64 := testImage(t, "linux", "amd64", "/bin/app", "amd64")
	arm64 := testImage(t, "linux", "arm64", "/bin/app", "arm64")
	inner := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: arm64}, platformAdd(amd64, "linux", "amd64"))
	top := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: inner, Descriptor: v1.Descriptor{
		MediaType: types.OCIImageIndex, Annotations: map[string]string{"io.containerd.image.name": "mixed:1"}}})
	svc := newService(t)
	if _, err := svc.Load(t.Context(), "alice", ociArchive(t, top, nil), nil); err != nil {
		t.Fatalf("Load: %v", err)
	}
	rec, err := svc.Lookup("alice", "mixed:1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Manifest != digest(t, amd64) {
		t.Fatalf("mixed:1 names %s, want the linux/amd64 image %s", rec.Manifest, digest(t, amd64))
	}
}
