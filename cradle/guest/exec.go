package guest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/cradle/spec"
)

// defaultPath is Docker's PATH for a process whose environment has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// execError is a process that could not be started: Code follows Docker's
// convention (127 not found, 126 not executable).
type execError struct {
	Code int
	Msg  string
}

func (e *execError) Error() string { return e.Msg }

// execInContainer starts p inside the running container c.
func (g *Guest) execInContainer(c *container, p spec.Process) (*proc, error) {
	c.mu.Lock()
	pid, cg := c.pid, c.cgroup
	running := c.started && c.pid != 0 && !isClosed(c.exited)
	c.mu.Unlock()
	if !running || g.shuttingDown() {
		return nil, &callError{spec.ErrConflict, fmt.Sprintf("container %s is not running", c.spec.Name)}
	}
	return onOwnThread(func() (*proc, error) { return g.nsExec(pid, cg, p) })
}

func (g *Guest) nsExec(pid int, cgroup string, p spec.Process) (*proc, error) {
	// setns(CLONE_NEWNS) needs a thread that shares its filesystem
	// context with no one.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return nil, fmt.Errorf("unshare fs: %w", err)
	}
	// Open every namespace before joining any: /proc is init's until the
	// mount namespace changes.
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	kinds := []struct {
		name string
		flag int
	}{{"ipc", unix.CLONE_NEWIPC}, {"uts", unix.CLONE_NEWUTS}, {"pid", unix.CLONE_NEWPID}, {"mnt", unix.CLONE_NEWNS}}
	for _, k := range kinds {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, k.name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s namespace: %w", k.name, err)
		}
		fds = append(fds, fd)
	}
	var cgfd = -1
	if cgroup != "" {
		if fd, err := unix.Open(cgroup, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			cgfd = fd
			fds = append(fds, fd)
		}
	}
	for i, k := range kinds {
		if err := unix.Setns(fds[i], k.flag); err != nil {
			return nil, fmt.Errorf("join %s namespace: %w", k.name, err)
		}
	}

	// From here on, paths are the container's.
	u, err := lookupUser("/", p.User)
	if err != nil {
		return nil, &execError{Code: 126, Msg: err.Error()}
	}
	env := processEnv(p.Env, u)
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
		return nil, &execError{Code: 126, Msg: fmt.Sprintf("chdir to cwd (%q) set in config.json failed: no such file or directory", cwd)}
	}
	path, err := lookPath("/", cwd, p.Args[0], env)
	if err != nil {
		return nil, err
	}

	var ptmx, pts *os.File
	if p.Terminal {
		if ptmx, pts, err = openPty("/dev/pts"); err != nil {
			return nil, err
		}
	}
	sio, err := newStdio(p.OpenStdin, ptmx, pts)
	if err != nil {
		return nil, err
	}
	attr := &syscall.ProcAttr{
		Dir:   cwd,
		Env:   env,
		Files: []uintptr{sio.files[0].Fd(), sio.files[1].Fd(), sio.files[2].Fd()},
		Sys: &syscall.SysProcAttr{
			Setsid:     true,
			Setctty:    p.Terminal,
			Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups},
		},
	}
	if cgfd >= 0 {
		attr.Sys.UseCgroupFD = true
		attr.Sys.CgroupFD = cgfd
	}
	epid, wait, err := g.reaper.start(func() (int, error) {
		return syscall.ForkExec(path, p.Args, attr)
	})
	if err != nil {
		sio.closeChild()
		sio.parent.closeAll()
		return nil, startError(p.Args[0], err)
	}
	pr := sio.finish()
	pr.pid, pr.wait = epid, wait
	pr.drain = 200 * time.Millisecond
	return pr, nil
}

// lookupUser resolves a user spec against the /etc of the tree at root.
func lookupUser(root, user string) (ExecUser, error) {
	open := func(p string) (io.Reader, func()) {
		full, err := securejoin.SecureJoin(root, p)
		if err != nil {
			return nil, func() {}
		}
		f, err := os.Open(full)
		if err != nil {
			return nil, func() {}
		}
		return f, func() { f.Close() }
	}
	pw, c1 := open("/etc/passwd")
	defer c1()
	gr, c2 := open("/etc/group")
	defer c2()
	return ResolveUser(user, pw, gr)
}

// processEnv completes an environment as Docker does: PATH and HOME are
// set when the image and caller did not set them.
func processEnv(env []string, u ExecUser) []string {
	out := append([]string(nil), env...)
	has := func(k string) bool {
		for _, e := range env {
			if strings.HasPrefix(e, k+"=") {
				return true
			}
		}
		return false
	}
	if !has("PATH") {
		out = append(out, "PATH="+defaultPath)
	}
	if !has("HOME") {
		out = append(out, "HOME="+u.Home)
	}
	return out
}

// lookPath finds a command in the tree at root as the container will see
// it, with Docker's messages and exit codes. It returns the path to exec
// inside the container.
func lookPath(root, cwd, name string, env []string) (string, error) {
	check := func(p string) error {
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		full, err := securejoin.SecureJoin(root, p)
		if err != nil {
			return err
		}
		return executable(full)
	}
	if strings.Contains(name, "/") {
		if err := check(name); err != nil {
			return "", startError(name, err)
		}
		return name, nil
	}
	pathEnv := defaultPath
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	denied := false
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		err := check(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, unix.EACCES) {
			denied = true
		}
	}
	if denied {
		return "", &execError{Code: 126, Msg: fmt.Sprintf("exec: %q: permission denied", name)}
	}
	return "", &execError{Code: 127, Msg: fmt.Sprintf("exec: %q: executable file not found in $PATH", name)}
}

func startError(name string, err error) error {
	var ee *execError
	if errors.As(err, &ee) {
		return err
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return &execError{Code: 127, Msg: fmt.Sprintf("exec: %q: no such file or directory", name)}
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.ENOEXEC), errors.Is(err, unix.EPERM):
		return &execError{Code: 126, Msg: fmt.Sprintf("exec: %q: permission denied", name)}
	}
	return &execError{Code: 126, Msg: fmt.Sprintf("exec: %q: %v", name, err)}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// executable reports whether p is a file someone may execute.
func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return unix.EACCES
	}
	return nil
}
