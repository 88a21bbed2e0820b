package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/testimage"
)

// testImage builds a two-layer image for os/arch, with cmd as its command
// (which also makes images of different platforms differ).
func testImage(t *testing.T, osName, arch string, cmd ...string) v1.Image {
	t.Helper()
	l1, err := testimage.Layer([]testimage.File{
		{Path: "/bin", Dir: true},
		{Path: "/bin/app", Mode: 0o755, Data: []byte("#!/bin/sh\necho " + arch + "\n")},
		{Path: "/etc", Dir: true},
		{Path: "/etc/passwd", Data: []byte("root:x:0:0::/root:/bin/sh\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := testimage.Layer([]testimage.File{
		{Path: "/etc/motd", Data: []byte("hello " + arch + "\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Image(v1.Config{Cmd: cmd, Env: []string{"ARCH=" + arch}}, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = osName, arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func writeArchive(t *testing.T, img v1.Image) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "image.tar")
	if err := testimage.WriteDockerArchive(p, "test/image:latest", img); err != nil {
		t.Fatal(err)
	}
	return p
}

func platformAdd(img v1.Image, osName, arch string) mutate.IndexAddendum {
	return mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: osName, Architecture: arch}}}
}

func writeLayout(t *testing.T, idx v1.ImageIndex) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if _, err := layout.Write(dir, idx); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOpenPathDockerArchive(t *testing.T) {
	t.Parallel()
	img := testImage(t, "linux", "amd64", "/bin/app")
	p := writeArchive(t, img)
	got, err := OpenPath(p)
	if err != nil {
		t.Fatalf("OpenPath: %v", err)
	}
	if digest(t, got) != digest(t, img) {
		t.Fatalf("opened image %s, want %s", digest(t, got), digest(t, img))
	}
	cf, err := got.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if len(cf.Config.Cmd) != 1 || cf.Config.Cmd[0] != "/bin/app" {
		t.Fatalf("config cmd %q", cf.Config.Cmd)
	}
	layers, err := got.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
}

func TestOpenPathErrors(t *testing.T) {
	t.Parallel()
	amd64 := testImage(t, "linux", "amd64", "/bin/app")
	arm64 := testImage(t, "linux", "arm64", "/bin/app")
	archive := writeArchive(t, amd64)
	good, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	random := make([]byte, 8192)
	rand.New(rand.NewSource(1)).Read(random)
	notLayout := filepath.Join(tmp, "not-a-layout")
	if err := os.Mkdir(notLayout, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(notLayout, "index.json"), []byte(`{"schemaVersion":2,"manifests":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	emptyLayout := writeLayout(t, empty.Index)
	brokenIndex := writeLayout(t, empty.Index)
	if err := os.WriteFile(filepath.Join(brokenIndex, "index.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		path  string
		class error
		want  string
	}{
		{"missing", filepath.Join(tmp, "nope.tar"), errdefs.ErrNotFound, "no such file or directory"},
		{"empty file", write("empty.tar", nil), errdefs.ErrInvalidArgument, "not a docker-archive tarball"},
		{"truncated", write("truncated.tar", good[:len(good)/2+7]), errdefs.ErrInvalidArgument, "not a docker-archive tarball"},
		{"random bytes", write("random.tar", random), errdefs.ErrInvalidArgument, "not a docker-archive tarball"},
		{"text file", write("text.tar", []byte("hello, world\n")), errdefs.ErrInvalidArgument, "not a docker-archive tarball"},
		{"tar without manifest", write("plain.tar", plainTar(t)), errdefs.ErrInvalidArgument, "invalid docker-archive"},
		{"arm64 archive", writeArchive(t, arm64), errdefs.ErrFailedPrecondition, "image is for linux/arm64; this host runs linux/amd64"},
		{"windows archive", writeArchive(t, testImage(t, "windows", "amd64")), errdefs.ErrFailedPrecondition, "image is for windows/amd64"},
		{"directory without oci-layout", notLayout, errdefs.ErrInvalidArgument, "not an OCI image layout (no oci-layout file)"},
		{"empty layout", emptyLayout, errdefs.ErrNotFound, "index holds no image"},
		{"corrupt index.json", brokenIndex, errdefs.ErrInvalidArgument, brokenIndex},
		{"layout with only arm64", writeLayout(t, mutate.AppendManifests(empty.Index, platformAdd(arm64, "linux", "arm64"))),
			errdefs.ErrFailedPrecondition, "no linux/amd64 image in index (it has [linux/arm64])"},
		{"layout with arm64 and s390x", writeLayout(t, mutate.AppendManifests(empty.Index,
			platformAdd(arm64, "linux", "arm64"), platformAdd(testImage(t, "linux", "s390x"), "linux", "s390x"))),
			errdefs.ErrFailedPrecondition, "it has [linux/arm64 linux/s390x]"},
		// An image without a platform in the index is judged by its config.
		{"layout with unlabelled arm64", writeLayout(t, mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: arm64})),
			errdefs.ErrFailedPrecondition, "image is for linux/arm64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			img, err := OpenPath(tt.path)
			if err == nil {
				t.Fatalf("OpenPath succeeded (%v); want %v", img, tt.class)
			}
			if !errors.Is(err, tt.class) {
				t.Fatalf("OpenPath error %q is not %v", err, tt.class)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("OpenPath error %q; want it to contain %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("OpenPath error %q does not name the path", err)
			}
		})
	}
}

// Every cut of an archive short of its last entry is an error, never an
// image that fails later.
func TestOpenPathTruncatedEverywhere(t *testing.T) {
	t.Parallel()
	p := writeArchive(t, testImage(t, "linux", "amd64", "/bin/app"))
	good, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// The archive ends with the last entry's data (padded to 512 bytes)
	// and two zero blocks; a cut at or before len-1536 loses data.
	dir := t.TempDir()
	for n := 0; n <= len(good)-1536; n += 509 {
		cut := filepath.Join(dir, "cut.tar")
		if err := os.WriteFile(cut, good[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenPath(cut); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Fatalf("archive cut to %d of %d bytes: OpenPath = %v, want ErrInvalidArgument", n, len(good), err)
		}
	}
}

func TestOpenPathLayout(t *testing.T) {
	t.Parallel()
	amd64 := testImage(t, "linux", "amd64", "/bin/app", "amd64")
	arm64 := testImage(t, "linux", "arm64", "/bin/app", "arm64")
	arm := testImage(t, "linux", "arm", "/bin/app", "arm")
	if digest(t, amd64) == digest(t, arm64) {
		t.Fatal("test images are the same")
	}
	nested := mutate.AppendManifests(empty.Index, platformAdd(arm64, "linux", "arm64"), platformAdd(amd64, "linux", "amd64"))
	tests := []struct {
		name string
		idx  v1.ImageIndex
	}{
		{"single image without platform", mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: amd64})},
		{"amd64 only", mutate.AppendManifests(empty.Index, platformAdd(amd64, "linux", "amd64"))},
		{"arm64 then amd64", mutate.AppendManifests(empty.Index, platformAdd(arm64, "linux", "arm64"), platformAdd(amd64, "linux", "amd64"))},
		{"amd64 then arm64", mutate.AppendManifests(empty.Index, platformAdd(amd64, "linux", "amd64"), platformAdd(arm64, "linux", "arm64"))},
		{"three platforms", mutate.AppendManifests(empty.Index, platformAdd(arm, "linux", "arm"), platformAdd(arm64, "linux", "arm64"), platformAdd(amd64, "linux", "amd64"))},
		// A platform match wins over an unlabelled entry listed first.
		{"unlabelled arm64 then amd64", mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: arm64}, platformAdd(amd64, "linux", "amd64"))},
		{"nested index", mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: nested, Descriptor: v1.Descriptor{MediaType: types.OCIImageIndex}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := writeLayout(t, tt.idx)
			img, err := OpenPath(dir)
			if err != nil {
				t.Fatalf("OpenPath: %v", err)
			}
			if digest(t, img) != digest(t, amd64) {
				t.Fatalf("OpenPath picked %s, want the amd64 image %s", digest(t, img), digest(t, amd64))
			}
		})
	}
}

func TestCheckPlatform(t *testing.T) {
	t.Parallel()
	tests := []struct {
		os, arch string
		ok       bool
	}{
		{"linux", "amd64", true},
		{"", "", true}, // unknown: allowed
		{"linux", "", true},
		{"", "amd64", true},
		{"linux", "arm64", false},
		{"", "arm64", false},
		{"darwin", "amd64", false},
		{"windows", "", false},
	}
	for _, tt := range tests {
		img := testImage(t, tt.os, tt.arch, "x")
		err := CheckPlatform(img)
		if (err == nil) != tt.ok {
			t.Errorf("CheckPlatform(%s/%s) = %v, want ok=%v", tt.os, tt.arch, err, tt.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Errorf("CheckPlatform(%s/%s) error %v is not ErrFailedPrecondition", tt.os, tt.arch, err)
		}
	}
}

// plainTar is a valid tarball that is no image.
func plainTar(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: 2}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("hi"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
