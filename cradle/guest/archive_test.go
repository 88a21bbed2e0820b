package guest

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-cloud/hearth/cradle/spec"
)

func TestArchiveRoundTrip(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	src := filepath.Join(root, "srv", "d")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "sub", "f"), []byte("data"), 0o640)
	os.Symlink("sub/f", filepath.Join(src, "link"))

	var buf bytes.Buffer
	if err := writeArchive(&buf, src, "d"); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "dst"), 0o755)
	if err := extractArchive(bytes.NewReader(buf.Bytes()), root, "/dst"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "dst", "d", "sub", "f"))
	if err != nil || string(b) != "data" {
		t.Fatalf("extracted file: %q, %v", b, err)
	}
	if fi, _ := os.Stat(filepath.Join(root, "dst", "d", "sub", "f")); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if l, _ := os.Readlink(filepath.Join(root, "dst", "d", "link")); l != "sub/f" {
		t.Fatalf("link %q", l)
	}
}

// Entries, and symlinks they pass through, stay inside the container's
// root, whatever the archive says.
func TestExtractStaysInRoot(t *testing.T) {
	t.Parallel()
	outside := t.TempDir()
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "dst"), 0o755)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(h *tar.Header, body string) {
		h.Size = int64(len(body))
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		tw.WriteHeader(h)
		io.WriteString(tw, body)
	}
	add(&tar.Header{Name: "../../escape", Typeflag: tar.TypeReg}, "x")
	add(&tar.Header{Name: "out", Typeflag: tar.TypeSymlink, Linkname: outside}, "")
	add(&tar.Header{Name: "out/evil", Typeflag: tar.TypeReg}, "x")
	tw.Close()
	if err := extractArchive(&buf, root, "/dst"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("wrote outside the root: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(root, "dst", "escape")); err != nil {
		t.Fatalf("../../escape should land at /dst/escape: %v", err)
	}
}

func TestExtractIntoMissingDirectory(t *testing.T) {
	t.Parallel()
	err := extractArchive(bytes.NewReader(nil), t.TempDir(), "/nope")
	if ce, ok := err.(*callError); !ok || ce.kind != spec.ErrNotFound {
		t.Fatalf("err = %v, want not found", err)
	}
}

func TestFrames(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	big := bytes.Repeat([]byte("0123456789"), 10000)
	if _, err := (frameWriter{&buf}).Write(big); err != nil {
		t.Fatal(err)
	}
	// Re-tag the stdout frames as stdin, as a caller would send them.
	var in bytes.Buffer
	for {
		_, b, err := spec.ReadFrame(&buf)
		if err != nil {
			break
		}
		spec.WriteFrame(&in, spec.FrameStdin, b)
	}
	spec.WriteFrame(&in, spec.FrameStdin, nil)
	got, err := io.ReadAll(&frameReader{r: &in})
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("frames lost data: %d bytes, %v", len(got), err)
	}
}
