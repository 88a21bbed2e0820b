package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/testimage"
)

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

type tarEntry struct {
	name     string
	typ      byte // tar.TypeReg when zero
	body     string
	mode     int64 // a default by type when zero
	uid, gid int
	link     string
	mtime    time.Time // t0 when zero
	major    int64
	minor    int64
	pax      map[string]string
}

func tarOf(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, ModTime: e.mtime, Devmajor: e.major, Devminor: e.minor,
			PAXRecords: e.pax, Format: tar.FormatPAX,
		}
		if h.Typeflag == tar.TypeXGlobalHeader {
			// Only the name and records are allowed.
			h = &tar.Header{Name: e.name, Typeflag: e.typ, PAXRecords: e.pax, Format: tar.FormatPAX}
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.ModTime.IsZero() && h.Typeflag != tar.TypeXGlobalHeader {
			h.ModTime = t0
		}
		if h.Mode == 0 && h.Typeflag != tar.TypeXGlobalHeader {
			switch h.Typeflag {
			case tar.TypeDir:
				h.Mode = 0o755
			case tar.TypeSymlink:
				h.Mode = 0o777
			default:
				h.Mode = 0o644
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := io.WriteString(tw, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("Unpack keeps owners and makes device nodes: needs root")
	}
}

func unpack(t *testing.T, dir string, entries ...tarEntry) error {
	t.Helper()
	return Unpack(bytes.NewReader(tarOf(t, entries...)), dir)
}

func lstat(t *testing.T, p string) (fs.FileInfo, *syscall.Stat_t) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi, fi.Sys().(*syscall.Stat_t)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUnpack(t *testing.T) {
	t.Parallel()
	needRoot(t)
	dir := t.TempDir()
	t1, t2, t3, t4 := t0.Add(time.Hour), t0.Add(2*time.Hour), t0.Add(3*time.Hour), t0.Add(4*time.Hour+5*time.Nanosecond)
	err := unpack(t, dir,
		tarEntry{name: "./", typ: tar.TypeDir, mode: 0o750, mtime: t4},
		tarEntry{name: "etc/", typ: tar.TypeDir, mtime: t1},
		tarEntry{name: "etc/conf", body: "conf\n", mode: 0o640, uid: 1000, gid: 50, mtime: t2},
		tarEntry{name: "home/alice/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000, mtime: t3},
		tarEntry{name: "home/alice/.profile", body: "export A=1\n", uid: 1000, gid: 1000},
		tarEntry{name: "bin/su", body: "su", mode: 0o4755},
		tarEntry{name: "bin/ping", body: "ping", mode: 0o4711, uid: 1000, gid: 1000},
		tarEntry{name: "bin/wall", body: "wall", mode: 0o2755, gid: 5},
		tarEntry{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
		tarEntry{name: "link", typ: tar.TypeSymlink, link: "etc/conf", uid: 1000, gid: 1000, mtime: t3},
		tarEntry{name: "abs", typ: tar.TypeSymlink, link: "/etc/conf"},
		tarEntry{name: "hard", typ: tar.TypeLink, link: "etc/conf"},
		tarEntry{name: "dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		tarEntry{name: "dev/loop0", typ: tar.TypeBlock, mode: 0o660, gid: 6, major: 7, minor: 0},
		tarEntry{name: "fifo", typ: tar.TypeFifo, mode: 0o600},
		tarEntry{name: "xattr", body: "x", pax: map[string]string{"SCHILY.xattr.user.hearth": "v1", "SCHILY.xattr.trusted.overlay.origin": "o"}},
		tarEntry{name: "pax_global_header", typ: tar.TypeXGlobalHeader, pax: map[string]string{"comment": "hi"}},
		tarEntry{name: "empty", body: ""},
	)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}

	type want struct {
		typ      fs.FileMode
		perm     fs.FileMode // with setuid, setgid and sticky
		uid, gid uint32
		mtime    time.Time // zero: not checked
		body     string
		link     string
		rdev     uint64
	}
	files := map[string]want{
		".":                   {typ: fs.ModeDir, perm: 0o750, mtime: t4},
		"etc":                 {typ: fs.ModeDir, perm: 0o755, mtime: t1},
		"etc/conf":            {perm: 0o640, uid: 1000, gid: 50, mtime: t2, body: "conf\n"},
		"home/alice":          {typ: fs.ModeDir, perm: 0o700, uid: 1000, gid: 1000, mtime: t3},
		"home/alice/.profile": {perm: 0o644, uid: 1000, gid: 1000, mtime: t0, body: "export A=1\n"},
		"bin/su":              {perm: 0o755 | fs.ModeSetuid, mtime: t0, body: "su"},
		"bin/ping":            {perm: 0o711 | fs.ModeSetuid, uid: 1000, gid: 1000, body: "ping"},
		"bin/wall":            {perm: 0o755 | fs.ModeSetgid, gid: 5, body: "wall"},
		"tmp":                 {typ: fs.ModeDir, perm: 0o777 | fs.ModeSticky, mtime: t0},
		"link":                {typ: fs.ModeSymlink, perm: 0o777, uid: 1000, gid: 1000, mtime: t3, link: "etc/conf"},
		"abs":                 {typ: fs.ModeSymlink, perm: 0o777, link: "/etc/conf"},
		"hard":                {perm: 0o640, uid: 1000, gid: 50, mtime: t2, body: "conf\n"},
		"dev/null":            {typ: fs.ModeDevice | fs.ModeCharDevice, perm: 0o666, rdev: unix.Mkdev(1, 3)},
		"dev/loop0":           {typ: fs.ModeDevice, perm: 0o660, gid: 6, rdev: unix.Mkdev(7, 0)},
		"fifo":                {typ: fs.ModeNamedPipe, perm: 0o600},
		"xattr":               {perm: 0o644, body: "x"},
		"empty":               {perm: 0o644, body: ""},
	}
	for name, w := range files {
		p := filepath.Join(dir, name)
		fi, st := lstat(t, p)
		if got := fi.Mode().Type(); got != w.typ {
			t.Errorf("%s: type %v, want %v", name, got, w.typ)
			continue
		}
		if got := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); got != w.perm {
			t.Errorf("%s: mode %v, want %v", name, got, w.perm)
		}
		if st.Uid != w.uid || st.Gid != w.gid {
			t.Errorf("%s: owner %d:%d, want %d:%d", name, st.Uid, st.Gid, w.uid, w.gid)
		}
		if !w.mtime.IsZero() && !fi.ModTime().Equal(w.mtime) {
			t.Errorf("%s: mtime %v, want %v", name, fi.ModTime().UTC(), w.mtime)
		}
		switch {
		case w.typ == 0:
			if got := readFile(t, p); got != w.body {
				t.Errorf("%s: content %q, want %q", name, got, w.body)
			}
		case w.typ == fs.ModeSymlink:
			if got, err := os.Readlink(p); err != nil || got != w.link {
				t.Errorf("%s: link %q, %v; want %q", name, got, err, w.link)
			}
		case w.typ&fs.ModeDevice != 0:
			if st.Rdev != w.rdev {
				t.Errorf("%s: device %#x, want %#x", name, st.Rdev, w.rdev)
			}
		}
	}
	// The hard link is the file itself.
	a, _ := os.Lstat(filepath.Join(dir, "etc/conf"))
	b, _ := os.Lstat(filepath.Join(dir, "hard"))
	if !os.SameFile(a, b) {
		t.Error("hard: not a hard link of etc/conf")
	}
	// Xattrs from PAX records.
	for k, v := range map[string]string{"user.hearth": "v1", "trusted.overlay.origin": "o"} {
		buf := make([]byte, 64)
		n, err := unix.Lgetxattr(filepath.Join(dir, "xattr"), k, buf)
		if err != nil || string(buf[:n]) != v {
			t.Errorf("xattr %s = %q, %v; want %q", k, buf[:max(n, 0)], err, v)
		}
	}
	// Nothing from the global header.
	if _, err := os.Lstat(filepath.Join(dir, "pax_global_header")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("global header unpacked as a file: %v", err)
	}
}

func isWhiteout(t *testing.T, p string) bool {
	t.Helper()
	fi, st := lstat(t, p)
	return fi.Mode().Type() == fs.ModeDevice|fs.ModeCharDevice && st.Rdev == 0
}

func opaque(p string) string {
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(p, opaqueXattr, buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func TestUnpackWhiteouts(t *testing.T) {
	t.Parallel()
	needRoot(t)
	dir := t.TempDir()
	err := unpack(t, dir,
		tarEntry{name: "a", body: "a"},
		tarEntry{name: "d/", typ: tar.TypeDir},
		tarEntry{name: "d/x", body: "x"},
		tarEntry{name: "full/", typ: tar.TypeDir},
		tarEntry{name: "full/inner", body: "i"},
		tarEntry{name: ".wh.a", body: ""},
		tarEntry{name: ".wh.b"},
		tarEntry{name: "d/.wh.y"},
		tarEntry{name: ".wh.full"},
		tarEntry{name: "deep/er/.wh.z"},
		tarEntry{name: "o/", typ: tar.TypeDir, mtime: t0},
		tarEntry{name: "o/keep", body: "k"},
		tarEntry{name: "o/.wh..wh..opq"},
		tarEntry{name: "p/.wh..wh..opq"},
		tarEntry{name: "p/q/.wh..wh..opq"},
	)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	for _, p := range []string{"a", "b", "d/y", "full", "deep/er/z"} {
		if !isWhiteout(t, filepath.Join(dir, p)) {
			t.Errorf("%s: not a 0/0 character device", p)
		}
	}
	if got := readFile(t, filepath.Join(dir, "d/x")); got != "x" {
		t.Errorf("d/x = %q", got)
	}
	for _, p := range []string{".wh.a", ".wh.b", "d/.wh.y", "o/.wh..wh..opq", "p/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("whiteout entry %s unpacked as a file (%v)", p, err)
		}
	}
	for _, p := range []string{"o", "p", "p/q"} {
		if got := opaque(filepath.Join(dir, p)); got != "y" {
			t.Errorf("%s: %s = %q, want y", p, opaqueXattr, got)
		}
	}
	for _, p := range []string{".", "d", "deep"} {
		if got := opaque(filepath.Join(dir, p)); got != "" {
			t.Errorf("%s: unexpectedly opaque", p)
		}
	}
	// An opaque directory keeps its own layer's entries.
	if got := readFile(t, filepath.Join(dir, "o/keep")); got != "k" {
		t.Errorf("o/keep = %q", got)
	}
	if fi, _ := lstat(t, filepath.Join(dir, "o")); !fi.ModTime().Equal(t0) {
		t.Errorf("o: mtime %v, want %v", fi.ModTime(), t0)
	}
}

func TestUnpackReplaces(t *testing.T) {
	t.Parallel()
	needRoot(t)
	outer := t.TempDir()
	outside := filepath.Join(outer, "outside")
	if err := os.WriteFile(outside, []byte("safe"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(outer, "root")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := unpack(t, dir,
		tarEntry{name: "f", body: "one", mode: 0o600},
		tarEntry{name: "f", body: "two", mode: 0o644, uid: 3},
		tarEntry{name: "s", typ: tar.TypeSymlink, link: outside},
		tarEntry{name: "s", body: "inside"},
		tarEntry{name: "rs", typ: tar.TypeSymlink, link: "../outside"},
		tarEntry{name: "rs", body: "inside too"},
		tarEntry{name: "x", body: "file"},
		tarEntry{name: "x/", typ: tar.TypeDir},
		tarEntry{name: "x/child", body: "c"},
		tarEntry{name: "y/", typ: tar.TypeDir},
		tarEntry{name: "y/child", body: "c"},
		tarEntry{name: "y", body: "now a file"},
		tarEntry{name: "d/", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "d/c", body: "kept"},
		tarEntry{name: "d/", typ: tar.TypeDir, mode: 0o700, uid: 7, gid: 8},
		tarEntry{name: "l", typ: tar.TypeSymlink, link: "a"},
		tarEntry{name: "l", typ: tar.TypeSymlink, link: "b"},
		tarEntry{name: "dl", typ: tar.TypeSymlink, link: "/"},
		tarEntry{name: "dl/", typ: tar.TypeDir},
		tarEntry{name: "dl/z", body: "z"},
	)
	if err != nil {
		t.Fatalf("Unpack: %v", err)
	}
	check := func(name, body string) {
		t.Helper()
		fi, _ := lstat(t, filepath.Join(dir, name))
		if !fi.Mode().IsRegular() {
			t.Errorf("%s: %v, want a regular file", name, fi.Mode())
			return
		}
		if got := readFile(t, filepath.Join(dir, name)); got != body {
			t.Errorf("%s = %q, want %q", name, got, body)
		}
	}
	check("f", "two")
	check("s", "inside")
	check("rs", "inside too")
	check("y", "now a file")
	check("x/child", "c")
	check("d/c", "kept")
	check("dl/z", "z")
	if fi, st := lstat(t, filepath.Join(dir, "f")); fi.Mode().Perm() != 0o644 || st.Uid != 3 {
		t.Errorf("f: %v uid %d, want the later entry's 0644 uid 3", fi.Mode(), st.Uid)
	}
	if fi, st := lstat(t, filepath.Join(dir, "d")); !fi.IsDir() || fi.Mode().Perm() != 0o700 || st.Uid != 7 || st.Gid != 8 {
		t.Errorf("d: %v %d:%d, want a 0700 directory owned by 7:8", fi.Mode(), st.Uid, st.Gid)
	}
	if fi, _ := lstat(t, filepath.Join(dir, "dl")); !fi.IsDir() {
		t.Errorf("dl: %v, want a directory in place of the symlink", fi.Mode())
	}
	if got, err := os.Readlink(filepath.Join(dir, "l")); err != nil || got != "b" {
		t.Errorf("l -> %q, %v; want b", got, err)
	}
	if got := readFile(t, outside); got != "safe" {
		t.Errorf("a file outside the root was overwritten: %q", got)
	}
}

// sandbox is a directory holding the unpack root and files that must
// survive every unpack.
type sandbox struct {
	outer, root, victim, secret string
}

func newSandbox(t *testing.T) sandbox {
	t.Helper()
	outer := t.TempDir()
	s := sandbox{outer: outer, root: filepath.Join(outer, "root"), victim: filepath.Join(outer, "victim"), secret: filepath.Join(outer, "secret")}
	if err := os.Mkdir(s.root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.victim, []byte("victim"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.secret, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// check verifies that nothing outside the root changed.
func (s sandbox) check(t *testing.T) {
	t.Helper()
	fi, err := os.Lstat(s.outer)
	if err != nil || !fi.IsDir() {
		t.Fatalf("sandbox directory damaged: %v, %v", fi, err)
	}
	ents, err := os.ReadDir(s.outer)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"root", "secret", "victim"}) {
		t.Errorf("outside the root: %v, want [root secret victim]", names)
	}
	if fi, err := os.Lstat(s.root); err != nil || !fi.IsDir() {
		t.Errorf("root is no longer a directory: %v, %v", fi, err)
	}
	for p, body := range map[string]string{s.victim: "victim", s.secret: "secret"} {
		fi, st := lstat(t, p)
		if !fi.Mode().IsRegular() || st.Nlink != 1 {
			t.Errorf("%s: %v with %d links", p, fi.Mode(), st.Nlink)
		}
		if got := readFile(t, p); got != body {
			t.Errorf("%s = %q, want %q", p, got, body)
		}
		if n, err := unix.Lgetxattr(p, opaqueXattr, make([]byte, 8)); err == nil {
			t.Errorf("%s: got an xattr of %d bytes", p, n)
		}
	}
	if got := opaque(s.outer); got != "" {
		t.Errorf("sandbox directory made opaque")
	}
}

func TestUnpackStaysInside(t *testing.T) {
	t.Parallel()
	needRoot(t)
	type tc struct {
		name    string
		entries func(s sandbox) []tarEntry
		mayFail bool
		inside  []string // paths (relative to root) that must exist
		// victimInside: the victim's host path must exist under the root.
		victimInside bool
	}
	tests := []tc{
		{name: "dot-dot name", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "../../victim", body: "pwned"}, {name: "../secret", body: "pwned"}, {name: "a/../../../../etc/x", body: "x"}}
		}, inside: []string{"victim", "secret", "etc/x"}},
		{name: "absolute name", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: s.victim, body: "pwned"}, {name: "/etc/y", body: "y"}}
		}, inside: []string{"etc/y"}, victimInside: true},
		{name: "dot-dot directory", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "../evil/", typ: tar.TypeDir}, {name: "../evil/f", body: "f"}}
		}, inside: []string{"evil/f"}},
		{name: "absolute symlink then file under it", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "evil", typ: tar.TypeSymlink, link: s.outer}, {name: "evil/victim", body: "pwned"}, {name: "evil/new", body: "new"}}
		}, inside: []string{"evil"}},
		{name: "relative symlink then file under it", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "evil", typ: tar.TypeSymlink, link: "../../../../../../.." + s.outer}, {name: "evil/victim", body: "pwned"}}
		}, inside: []string{"evil"}},
		{name: "dot-dot symlink then file under it", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "up", typ: tar.TypeSymlink, link: ".."}, {name: "up/victim", body: "pwned"}, {name: "up/up/secret", body: "pwned"}}
		}, inside: []string{"victim", "secret"}},
		{name: "symlink chain", entries: func(s sandbox) []tarEntry {
			return []tarEntry{
				{name: "a", typ: tar.TypeSymlink, link: "b"},
				{name: "b", typ: tar.TypeSymlink, link: "c/../.."},
				{name: "c/", typ: tar.TypeDir},
				{name: "a/victim", body: "pwned"},
			}
		}, inside: []string{"victim"}},
		{name: "symlink to a file then dir under it", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "v", typ: tar.TypeSymlink, link: s.victim}, {name: "v/sub/", typ: tar.TypeDir}}
		}},
		{name: "directory through symlink", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "evil", typ: tar.TypeSymlink, link: s.outer}, {name: "evil/sub/", typ: tar.TypeDir}, {name: "evil/sub/f", body: "f"}}
		}},
		{name: "device through symlink", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "evil", typ: tar.TypeSymlink, link: s.outer}, {name: "evil/dev", typ: tar.TypeChar, major: 1, minor: 3}}
		}},
		{name: "symlink through symlink", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "evil", typ: tar.TypeSymlink, link: s.outer}, {name: "evil/victim", typ: tar.TypeSymlink, link: "/etc/passwd"}}
		}},
		{name: "hard link to outside by dot-dot", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "h", typ: tar.TypeLink, link: "../secret"}}
		}, mayFail: true},
		{name: "hard link to outside by absolute name", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "h", typ: tar.TypeLink, link: s.secret}}
		}, mayFail: true},
		{name: "hard link through symlink", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "evil", typ: tar.TypeSymlink, link: s.outer}, {name: "h", typ: tar.TypeLink, link: "evil/secret"}}
		}, mayFail: true},
		{name: "hard link to a symlink to outside", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "sl", typ: tar.TypeSymlink, link: s.secret}, {name: "h", typ: tar.TypeLink, link: "sl"}}
		}, mayFail: true},
		{name: "whiteout through symlink", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "evil", typ: tar.TypeSymlink, link: s.outer}, {name: "evil/.wh.victim"}, {name: "evil/.wh.root"}}
		}},
		{name: "whiteout with dot-dot", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "../.wh.victim"}, {name: "../../.wh.root"}}
		}},
		{name: "opaque through symlink", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "evil", typ: tar.TypeSymlink, link: s.outer}, {name: "evil/.wh..wh..opq"}}
		}},
		{name: "opaque at dot-dot", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "../.wh..wh..opq"}}
		}},
		{name: "root entry", entries: func(s sandbox) []tarEntry {
			return []tarEntry{{name: "./", typ: tar.TypeDir, mode: 0o700}, {name: "../", typ: tar.TypeDir, mode: 0o700}, {name: "/", typ: tar.TypeDir}, {name: ".", body: "x"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t)
			err := unpack(t, s.root, tt.entries(s)...)
			if err != nil && !tt.mayFail {
				t.Fatalf("Unpack: %v", err)
			}
			s.check(t)
			inside := tt.inside
			if tt.victimInside {
				inside = append(inside, s.victim)
			}
			for _, p := range inside {
				if _, err := os.Lstat(filepath.Join(s.root, p)); err != nil {
					t.Errorf("%s not unpacked inside the root: %v", p, err)
				}
			}
		})
	}
}

// Regressions: whiteouts named ".wh.", ".wh.." or ".wh..." once removed
// paths outside their directory, and a repeated directory entry or a
// directory replaced by a file kept the wrong mtime.
func TestUnpackRegressions(t *testing.T) {
	t.Parallel()
	needRoot(t)
	t.Run("whiteout names", func(t *testing.T) {
		for _, name := range []string{".wh.", ".wh..", ".wh...", "sub/.wh...", "sub/.wh.."} {
			t.Run(name, func(t *testing.T) {
				s := newSandbox(t)
				err := unpack(t, s.root, tarEntry{name: "sub/", typ: tar.TypeDir}, tarEntry{name: "sub/f", body: "f"}, tarEntry{name: name})
				t.Logf("Unpack: %v", err)
				s.check(t)
				if fi, err := os.Lstat(filepath.Join(s.root, "sub")); err != nil || !fi.IsDir() {
					t.Errorf("sub is no longer a directory: %v, %v", fi, err)
				}
			})
		}
	})
	t.Run("repeated directory keeps the later mtime", func(t *testing.T) {
		dir := t.TempDir()
		later := t0.Add(time.Hour)
		if err := unpack(t, dir, tarEntry{name: "d/", typ: tar.TypeDir, mtime: t0}, tarEntry{name: "d/", typ: tar.TypeDir, mode: 0o700, mtime: later}); err != nil {
			t.Fatal(err)
		}
		if fi, _ := lstat(t, filepath.Join(dir, "d")); !fi.ModTime().Equal(later) {
			t.Errorf("d: mtime %v, want the later entry's %v", fi.ModTime().UTC(), later)
		}
	})
	t.Run("directory replaced by a file keeps the file's mtime", func(t *testing.T) {
		dir := t.TempDir()
		later := t0.Add(time.Hour)
		if err := unpack(t, dir, tarEntry{name: "x/", typ: tar.TypeDir, mtime: t0}, tarEntry{name: "x", body: "f", mtime: later}); err != nil {
			t.Fatal(err)
		}
		if fi, _ := lstat(t, filepath.Join(dir, "x")); !fi.ModTime().Equal(later) {
			t.Errorf("x: mtime %v, want the file's %v", fi.ModTime().UTC(), later)
		}
	})
}

func TestUnpackErrors(t *testing.T) {
	t.Parallel()
	needRoot(t)
	good := tarOf(t, tarEntry{name: "a", body: strings.Repeat("a", 4096)}, tarEntry{name: "b", body: "b"})
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"garbage", bytes.Repeat([]byte("garbage!"), 128), "read layer"},
		{"cut in data", good[:2000], "a: unexpected EOF"},
		{"cut in header", good[:len(good)-1024-512-200], "read layer: unexpected EOF"},
		{"hard link to missing", tarOf(t, tarEntry{name: "h", typ: tar.TypeLink, link: "missing"}), "h: hard link to missing"},
		{"file under a file", tarOf(t, tarEntry{name: "f", body: "f"}, tarEntry{name: "f/g", body: "g"}), "f/g"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Unpack(bytes.NewReader(tt.in), t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Unpack = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// An empty stream (no end marker even) is an empty layer.
	if err := Unpack(bytes.NewReader(nil), t.TempDir()); err != nil {
		t.Fatalf("Unpack of nothing: %v", err)
	}
}

// lyingLayer is a layer whose diff ID is not the digest of its content.
type lyingLayer struct {
	v1.Layer
	diffID v1.Hash
}

func (l lyingLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }

// countingLayer counts the calls to Uncompressed.
type countingLayer struct {
	v1.Layer
	mu sync.Mutex
	n  int
}

func (l *countingLayer) Uncompressed() (io.ReadCloser, error) {
	l.mu.Lock()
	l.n++
	l.mu.Unlock()
	return l.Layer.Uncompressed()
}

func (l *countingLayer) calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func smallLayer(t *testing.T, tag string) v1.Layer {
	t.Helper()
	l, err := testimage.Layer([]testimage.File{
		{Path: "/bin", Dir: true},
		{Path: "/bin/tool", Mode: 0o755, Data: []byte("tool " + tag)},
		{Path: "/etc", Dir: true},
		{Path: "/etc/tag", Data: []byte(tag)},
		{Path: "/etc/link", Link: "tag"},
		{Path: "/etc/.wh.gone"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func needMkfsErofs(t *testing.T) {
	t.Helper()
	needRoot(t)
	if _, err := exec.LookPath("mkfs.erofs"); err != nil {
		t.Skip("mkfs.erofs not installed")
	}
}

// cacheEntries lists the cache's files for algorithm sha256.
func cacheEntries(t *testing.T, c *Cache) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(c.Dir, "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestCachePrepare(t *testing.T) {
	t.Parallel()
	needMkfsErofs(t)
	c := &Cache{Dir: filepath.Join(t.TempDir(), "layers")}
	l := &countingLayer{Layer: smallLayer(t, "one")}
	diffID, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Prepare(context.Background(), l)
	if err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if want := filepath.Join(c.Dir, "sha256", diffID.Hex+".erofs"); p != want || c.Path(diffID) != want {
		t.Fatalf("Prepare = %s, Path = %s; want %s", p, c.Path(diffID), want)
	}
	fi1, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi1.Size() == 0 {
		t.Fatalf("layer image is empty")
	}
	checkErofs(t, p)

	// Again: the same file, not rebuilt, the layer not read.
	p2, err := c.Prepare(context.Background(), l)
	if err != nil {
		t.Fatalf("second Prepare: %v", err)
	}
	fi2, err := os.Stat(p2)
	if err != nil {
		t.Fatal(err)
	}
	if p2 != p || !fi2.ModTime().Equal(fi1.ModTime()) || !os.SameFile(fi1, fi2) {
		t.Fatalf("second Prepare rebuilt the layer: %s %v, was %s %v", p2, fi2.ModTime(), p, fi1.ModTime())
	}
	if n := l.calls(); n != 1 {
		t.Fatalf("layer content read %d times, want 1", n)
	}
	if got := cacheEntries(t, c); !slices.Equal(got, []string{diffID.Hex + ".erofs", diffID.Hex + ".lock"}) {
		t.Fatalf("cache holds %v", got)
	}

	// Another layer gets a file of its own.
	p3, err := c.Prepare(context.Background(), smallLayer(t, "two"))
	if err != nil {
		t.Fatal(err)
	}
	if p3 == p {
		t.Fatal("two layers share one file")
	}
}

// checkErofs looks into the image with dump.erofs when it is installed.
func checkErofs(t *testing.T, img string) {
	t.Helper()
	dump, err := exec.LookPath("dump.erofs")
	if err != nil {
		return
	}
	out, err := exec.Command(dump, "--ls", "--path=/etc", img).CombinedOutput()
	if err != nil {
		t.Fatalf("dump.erofs: %v: %s", err, out)
	}
	for _, name := range []string{"tag", "link", "gone"} {
		if !strings.Contains(string(out), name) {
			t.Errorf("/etc of the layer image has no %s:\n%s", name, out)
		}
	}
	if strings.Contains(string(out), ".wh.") {
		t.Errorf("whiteout entry kept in OCI form:\n%s", out)
	}
}

func TestCachePrepareConcurrent(t *testing.T) {
	t.Parallel()
	needMkfsErofs(t)
	c := &Cache{Dir: filepath.Join(t.TempDir(), "layers")}
	l := &countingLayer{Layer: smallLayer(t, "concurrent")}
	const n = 8
	paths := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Each caller has its own cache value, as separate processes do.
			cc := &Cache{Dir: c.Dir}
			paths[i], errs[i] = cc.Prepare(context.Background(), l)
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Prepare %d: %v", i, errs[i])
		}
		if paths[i] != paths[0] {
			t.Fatalf("Prepare %d = %s, Prepare 0 = %s", i, paths[i], paths[0])
		}
	}
	if got := l.calls(); got != 1 {
		t.Fatalf("layer built %d times, want once", got)
	}
	diffID, _ := l.DiffID()
	if got := cacheEntries(t, c); !slices.Equal(got, []string{diffID.Hex + ".erofs", diffID.Hex + ".lock"}) {
		t.Fatalf("cache holds %v", got)
	}
}

func TestCachePrepareRejects(t *testing.T) {
	t.Parallel()
	needMkfsErofs(t)
	real := smallLayer(t, "real")
	other, err := smallLayer(t, "other").DiffID()
	if err != nil {
		t.Fatal(err)
	}
	notTar, err := testimage.Layer(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		l    v1.Layer
		want string
	}{
		{"diff ID of another layer", lyingLayer{Layer: real, diffID: other}, "content has digest sha256:"},
		{"made-up diff ID", lyingLayer{Layer: real, diffID: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}}, "the image is corrupt"},
		{"diff ID of an empty layer", lyingLayer{Layer: real, diffID: mustDiffID(t, notTar)}, "content has digest"},
		{"not sha256", lyingLayer{Layer: real, diffID: v1.Hash{Algorithm: "sha512", Hex: strings.Repeat("0", 128)}}, "unsupported digest algorithm"},
		{"content not a tar", lyingLayer{Layer: garbageLayer{real}, diffID: other}, "read layer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &Cache{Dir: filepath.Join(t.TempDir(), "layers")}
			p, err := c.Prepare(context.Background(), tt.l)
			if err == nil {
				t.Fatalf("Prepare = %s; want an error", p)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Prepare error %q; want ErrInvalidArgument containing %q", err, tt.want)
			}
			d, _ := tt.l.DiffID()
			if _, err := os.Stat(c.Path(d)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a rejected layer left %s (%v)", c.Path(d), err)
			}
			if d.Algorithm != "sha256" {
				return
			}
			for _, e := range cacheEntries(t, c) {
				if e != d.Hex+".lock" {
					t.Errorf("a rejected layer left %s", e)
				}
			}
		})
	}
}

// garbageLayer serves bytes that are not a tar stream.
type garbageLayer struct{ v1.Layer }

func (garbageLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(bytes.Repeat([]byte("not a tar "), 100))), nil
}

func mustDiffID(t *testing.T, l v1.Layer) v1.Hash {
	t.Helper()
	h, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A build that died half way leaves temporary files; the next Prepare
// clears them and builds.
func TestCachePrepareStale(t *testing.T) {
	t.Parallel()
	needMkfsErofs(t)
	c := &Cache{Dir: filepath.Join(t.TempDir(), "layers")}
	l := smallLayer(t, "stale")
	d := mustDiffID(t, l)
	sdir := filepath.Join(c.Dir, "sha256")
	if err := os.MkdirAll(filepath.Join(sdir, d.Hex+".tmp-dir", "junk"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sdir, d.Hex+".tmp-img"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Prepare(context.Background(), l); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	if got := cacheEntries(t, c); !slices.Equal(got, []string{d.Hex + ".erofs", d.Hex + ".lock"}) {
		t.Fatalf("cache holds %v", got)
	}
}

func ExampleCache_Path() {
	c := &Cache{Dir: "/var/lib/hearth/layers"}
	fmt.Println(c.Path(v1.Hash{Algorithm: "sha256", Hex: "abc"}))
	// Output: /var/lib/hearth/layers/sha256/abc.erofs
}
