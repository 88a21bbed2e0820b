package guest

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFillVolume: an empty volume takes the image's tree with owners,
// modes, times, symlinks, hard links and fifos; one with content, or a
// path the image lacks, is left alone.
func TestFillVolume(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to keep owners")
	}
	rootfs := t.TempDir()
	src := filepath.Join(rootfs, "var", "lib", "db")
	must(t, os.MkdirAll(filepath.Join(src, "sub"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "sub", "f"), []byte("data"), 0o640))
	must(t, os.Link(filepath.Join(src, "sub", "f"), filepath.Join(src, "hard")))
	must(t, os.Symlink("sub/f", filepath.Join(src, "link")))
	must(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	must(t, os.Chown(filepath.Join(src, "sub", "f"), 999, 998))
	must(t, os.Chown(src, 1000, 1000))
	must(t, unix.Chmod(src, 0o1750))
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	must(t, os.Chtimes(filepath.Join(src, "sub"), old, old))

	vol := t.TempDir()
	must(t, fillVolume(rootfs, "/var/lib/db", vol))

	stat := func(p string) *syscall.Stat_t {
		t.Helper()
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t)
	}
	if st := stat(vol); st.Uid != 1000 || st.Mode&0o7777 != 0o1750 {
		t.Errorf("volume root: uid %d mode %o, want 1000 1750", st.Uid, st.Mode&0o7777)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "sub", "f")); err != nil || string(b) != "data" {
		t.Errorf("file: %q %v", b, err)
	}
	if st := stat(filepath.Join(vol, "sub", "f")); st.Uid != 999 || st.Gid != 998 || st.Mode&0o777 != 0o640 || st.Nlink != 2 {
		t.Errorf("file: uid %d gid %d mode %o links %d", st.Uid, st.Gid, st.Mode&0o777, st.Nlink)
	}
	if l, err := os.Readlink(filepath.Join(vol, "link")); err != nil || l != "sub/f" {
		t.Errorf("symlink: %q %v", l, err)
	}
	if st := stat(filepath.Join(vol, "fifo")); st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo mode %o", st.Mode)
	}
	if fi, err := os.Stat(filepath.Join(vol, "sub")); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("dir mtime %v, want %v (%v)", fi.ModTime(), old, err)
	}

	// A volume with content is not filled again.
	must(t, os.WriteFile(filepath.Join(src, "new"), nil, 0o644))
	must(t, fillVolume(rootfs, "/var/lib/db", vol))
	if _, err := os.Stat(filepath.Join(vol, "new")); err == nil {
		t.Error("a volume with content was filled")
	}
	// Nothing in the image at the path: nothing to do.
	empty := t.TempDir()
	must(t, fillVolume(rootfs, "/nowhere", empty))
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("filled from a missing path: %v", ents)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
