package guest

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/cradle/spec"
)

// containerRoot is the container's root as init reaches it: through its
// PID 1's view, so the container's own mounts (volumes) are in it.
func (g *Guest) containerRoot(c *container) (string, error) {
	c.mu.Lock()
	pid := c.pid
	c.mu.Unlock()
	if pid == 0 || isClosed(c.exited) {
		return "", &callError{spec.ErrConflict, fmt.Sprintf("container %s is not running", c.spec.Name)}
	}
	return "/proc/" + strconv.Itoa(pid) + "/root", nil
}

// inRoot resolves a container path inside root, symlinks included.
func inRoot(root, p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", &callError{spec.ErrInvalid, fmt.Sprintf("path %q is not absolute", p)}
	}
	return securejoin.SecureJoin(root, p)
}

func pathStat(name, full string) (*spec.PathStat, error) {
	fi, err := os.Lstat(full)
	if err != nil {
		return nil, err
	}
	st := &spec.PathStat{Name: name, Size: fi.Size(), Mode: uint32(fi.Mode()), Mtime: fi.ModTime().UTC()}
	if fi.Mode()&os.ModeSymlink != 0 {
		st.LinkTarget, _ = os.Readlink(full)
	}
	return st, nil
}

// statPath answers Docker's HEAD archive: a path's stat, following a final
// symlink as Docker does for the path the user named.
func (g *Guest) statPath(c *container, p string) (*spec.PathStat, error) {
	root, err := g.containerRoot(c)
	if err != nil {
		return nil, err
	}
	full, err := inRoot(root, p)
	if err != nil {
		return nil, err
	}
	st, err := pathStat(filepath.Base(p), full)
	if errors.Is(err, os.ErrNotExist) {
		return nil, &callError{spec.ErrNotFound, fmt.Sprintf("Could not find the file %s in container %s", p, c.spec.Name)}
	}
	return st, err
}

// writeArchive writes a tar of the path full, named by its base name, as
// `docker cp` reads it.
func writeArchive(w io.Writer, full, base string) error {
	tw := tar.NewWriter(w)
	err := filepath.Walk(full, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(full, p)
		if err != nil {
			return err
		}
		name := base
		if rel != "." {
			name = filepath.Join(base, rel)
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = name
		if fi.IsDir() {
			h.Name += "/"
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			h.Uid, h.Gid = int(st.Uid), int(st.Gid)
		}
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// extractArchive writes a tar's entries under the container directory p,
// every path resolved inside root, owners and modes kept.
func extractArchive(r io.Reader, root, p string) error {
	dir, err := inRoot(root, p)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return &callError{spec.ErrNotFound, fmt.Sprintf("Could not find the directory %s in the container", p)}
	}
	tr := tar.NewReader(r)
	var dirTimes []struct {
		path string
		t    time.Time
	}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return &callError{spec.ErrInvalid, "invalid tar archive: " + err.Error()}
		}
		name := filepath.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		target, err := inRoot(root, filepath.Join(p, name))
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		mode := h.FileInfo().Mode()
		if fi, err := os.Lstat(target); err == nil && !(fi.IsDir() && h.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(target); err != nil {
				return err
			}
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
			dirTimes = append(dirTimes, struct {
				path string
				t    time.Time
			}{target, h.ModTime})
		case tar.TypeReg, tar.TypeRegA:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		case tar.TypeLink:
			src, err := inRoot(root, filepath.Join(p, filepath.Clean("/"+h.Linkname)))
			if err != nil {
				return err
			}
			if err := os.Link(src, target); err != nil {
				return err
			}
			continue
		default:
			continue
		}
		os.Lchown(target, h.Uid, h.Gid)
		if h.Typeflag != tar.TypeSymlink {
			os.Chmod(target, mode&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
			ts := []unix.Timespec{unix.NsecToTimespec(h.ModTime.UnixNano()), unix.NsecToTimespec(h.ModTime.UnixNano())}
			unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW)
		}
	}
	for _, d := range dirTimes {
		ts := []unix.Timespec{unix.NsecToTimespec(d.t.UnixNano()), unix.NsecToTimespec(d.t.UnixNano())}
		unix.UtimesNanoAt(unix.AT_FDCWD, d.path, ts, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// frameWriter sends what is written as FrameStdout frames.
type frameWriter struct{ w io.Writer }

func (f frameWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += 32 << 10 {
		end := off + 32<<10
		if end > len(p) {
			end = len(p)
		}
		if err := spec.WriteFrame(f.w, spec.FrameStdout, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// frameReader reads the payloads of FrameStdin frames until an empty one.
type frameReader struct {
	r   io.Reader
	buf []byte
	eof bool
}

func (f *frameReader) Read(p []byte) (int, error) {
	for len(f.buf) == 0 {
		if f.eof {
			return 0, io.EOF
		}
		kind, b, err := spec.ReadFrame(f.r)
		if err != nil {
			return 0, err
		}
		if kind != spec.FrameStdin {
			continue
		}
		if len(b) == 0 {
			f.eof = true
		}
		f.buf = b
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}

// stats reads the pod's resource use.
func (g *Guest) stats() *spec.Stats {
	st := &spec.Stats{Read: time.Now().UTC()}
	g.mu.Lock()
	l := g.launch
	var cs []*container
	for _, c := range g.containers {
		cs = append(cs, c)
	}
	g.mu.Unlock()
	if l != nil {
		st.CPUs = l.Resources.CPUs
		st.Memory = int64(l.Resources.MemoryMiB) << 20
	}
	for _, c := range cs {
		c.mu.Lock()
		cg := c.cgroup
		c.mu.Unlock()
		s := spec.ContainerStats{Name: c.spec.Name, MemoryLimit: st.Memory}
		if cg != "" {
			s.MemoryBytes = readInt(cg + "/memory.current")
			if max := readInt(cg + "/memory.max"); max > 0 {
				s.MemoryLimit = max
			}
			s.Pids = readInt(cg + "/pids.current")
			s.CPUNanos = uint64(keyed(cg+"/cpu.stat", "usage_usec")) * 1000
		}
		st.Containers = append(st.Containers, s)
	}
	ents, _ := os.ReadDir("/sys/class/net")
	for _, e := range ents {
		if e.Name() == "lo" {
			continue
		}
		base := "/sys/class/net/" + e.Name() + "/statistics/"
		st.Network.RxBytes += uint64(readInt(base + "rx_bytes"))
		st.Network.TxBytes += uint64(readInt(base + "tx_bytes"))
		st.Network.RxPackets += uint64(readInt(base + "rx_packets"))
		st.Network.TxPackets += uint64(readInt(base + "tx_packets"))
	}
	return st
}

func readInt(p string) int64 {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func keyed(p, key string) int64 {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}
