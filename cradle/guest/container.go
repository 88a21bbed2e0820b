package guest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/cradle/guest/stub"
	"github.com/hearth-cloud/hearth/cradle/spec"
)

// container is one container of the pod, inside the VM.
//
// Namespaces are made on a goroutine locked to its own OS thread: the
// thread unshares mount, UTS, IPC and PID namespaces, builds the rootfs in
// its private mount namespace, and forks the stub, which becomes PID 1 of
// the new PID namespace, mounts /proc, pivots into the rootfs and execs the
// container's process. The thread then ends, taking its namespaces with it.
// Execs join the namespaces the same way (setns on a locked thread), so no
// helper process lives beside the container's own.
type container struct {
	spec spec.Container
	dir  string // /run/hearth/c/<name>

	mu      sync.Mutex
	started bool
	pid     int
	exited  chan struct{}
	// reported is closed once the exit status is on its way to the host
	// (the start stream's last frame): a shutdown waits for it, or the
	// host would learn only that the VM went.
	reported chan struct{}
	exit     spec.ExitStatus
	cgroup   string
}

// start creates the container's namespaces and rootfs and starts its
// process.
func (g *Guest) startContainer(c *container) (*proc, error) {
	if g.shuttingDown() {
		return nil, &callError{spec.ErrConflict, "pod is shutting down"}
	}
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return nil, &callError{spec.ErrConflict, fmt.Sprintf("container %s already started", c.spec.Name)}
	}
	c.started = true
	c.mu.Unlock()

	p, err := onOwnThread(func() (*proc, error) { return g.nsStart(c) })
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.pid = p.pid
	c.mu.Unlock()
	return p, nil
}

// onOwnThread runs fn on an OS thread of its own that ends with it: fn
// changes the thread's namespaces, and no other goroutine may ever run
// on that thread afterwards.
func onOwnThread(fn func() (*proc, error)) (*proc, error) {
	type result struct {
		p   *proc
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: a goroutine that exits locked takes its thread
		// along.
		runtime.LockOSThread()
		p, err := fn()
		ch <- result{p, err}
	}()
	r := <-ch
	return r.p, r.err
}

func (g *Guest) nsStart(c *container) (*proc, error) {
	name := c.spec.Name
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWPID); err != nil {
		return nil, fmt.Errorf("container %s: unshare: %w", name, err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return nil, fmt.Errorf("container %s: private mounts: %w", name, err)
	}
	rootfs, err := g.buildRootfs(c)
	if err != nil {
		return nil, fmt.Errorf("container %s: rootfs: %w", name, err)
	}
	g.log.Debug("rootfs ready", "container", name)
	host := c.spec.Hostname
	if host == "" {
		host = g.hostname()
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		return nil, fmt.Errorf("container %s: hostname: %w", name, err)
	}

	cfg, err := resolveProcess(rootfs, c.spec.Process)
	if err != nil {
		return nil, err
	}
	if c.spec.Init {
		// The command was looked up here, so that a missing one fails
		// the start; the init runs it by its resolved path.
		args := append([]string{DockerInitPath, "--", cfg.Path}, cfg.Args[1:]...)
		cfg.Path, cfg.Args = DockerInitPath, args
	}

	var ptmx, pts *os.File
	if c.spec.Process.Terminal {
		if ptmx, pts, err = openPty(rootfs + "/dev/pts"); err != nil {
			return nil, fmt.Errorf("container %s: %w", name, err)
		}
	}
	sio, err := newStdio(c.spec.Process.OpenStdin, ptmx, pts)
	if err != nil {
		return nil, fmt.Errorf("container %s: stdio: %w", name, err)
	}
	cfgR, cfgW, err := pipe()
	if err != nil {
		sio.closeChild()
		return nil, err
	}
	statR, statW, err := pipe()
	if err != nil {
		sio.closeChild()
		cfgR.Close()
		cfgW.Close()
		return nil, err
	}
	// The stub reads its config to EOF; write it from a goroutine so a
	// large environment cannot fill the pipe and block us.
	go func() {
		cfgW.Write(stub.Encode(cfg))
		cfgW.Close()
	}()

	cg, cgfd := g.containerCgroup(name)
	c.cgroup = cg
	attr := &syscall.ProcAttr{
		Files: []uintptr{sio.files[0].Fd(), sio.files[1].Fd(), sio.files[2].Fd(), cfgR.Fd(), statW.Fd()},
		Sys: &syscall.SysProcAttr{
			Setsid:  true,
			Setctty: c.spec.Process.Terminal,
			Ctty:    0,
		},
	}
	if cgfd >= 0 {
		attr.Sys.UseCgroupFD = true
		attr.Sys.CgroupFD = cgfd
		defer unix.Close(cgfd)
	}
	pid, wait, err := g.reaper.start(func() (int, error) {
		return syscall.ForkExec(StubPath, []string{"hearth-stub"}, attr)
	})
	cfgR.Close()
	statW.Close()
	if err != nil {
		sio.closeChild()
		statR.Close()
		return nil, fmt.Errorf("container %s: start: %w", name, err)
	}
	p := sio.finish()
	p.pid, p.wait = pid, wait
	p.drain = 2 * time.Second
	// Wait for the stub to exec (or fail): until then the container's
	// mount namespace still shows the VM, and an exec must not join it.
	st := readStatus(statR)
	ch := make(chan *spec.ExitStatus, 1)
	ch <- st
	p.startErr = ch
	p.log = g.log
	return p, nil
}

// resolveProcess does, from outside the container, every lookup the
// stub would otherwise do inside: user and groups from the rootfs's
// /etc/passwd and /etc/group, the command in PATH, and the working
// directory, which Docker creates when it is missing. Paths resolve inside
// rootfs, symlinks included.
func resolveProcess(rootfs string, p spec.Process) (*stub.Config, error) {
	u, err := lookupUser(rootfs, p.User)
	if err != nil {
		return nil, &execError{Code: 126, Msg: err.Error()}
	}
	env := processEnv(p.Env, u)
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	dir, err := securejoin.SecureJoin(rootfs, cwd)
	if err != nil {
		return nil, &execError{Code: 126, Msg: err.Error()}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, &execError{Code: 126, Msg: fmt.Sprintf("create working directory %s: %v", cwd, err)}
	}
	path, err := lookPath(rootfs, cwd, p.Args[0], env)
	if err != nil {
		return nil, err
	}
	return &stub.Config{Rootfs: rootfs, Cwd: cwd, Path: path, Args: p.Args, Env: env, UID: u.UID, GID: u.GID, Groups: u.Groups}, nil
}

// readStatus reads the stub's status pipe to EOF: nothing means the exec
// succeeded; otherwise the stub wrote "CODE MESSAGE".
func readStatus(f *os.File) *spec.ExitStatus {
	defer f.Close()
	var b bytes.Buffer
	b.ReadFrom(f)
	if b.Len() == 0 {
		return nil
	}
	st := &spec.ExitStatus{Code: 126, Error: b.String()}
	if code, msg, ok := strings.Cut(b.String(), " "); ok {
		if n, err := strconv.Atoi(code); err == nil {
			st.Code, st.Error = n, msg
		}
	}
	return st
}

// buildRootfs assembles the container's root in the calling thread's
// mount namespace and returns its path.
func (g *Guest) buildRootfs(c *container) (string, error) {
	dir := c.dir
	for _, d := range []string{"upper", "work", "rootfs", "empty", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	rootfs := filepath.Join(dir, "rootfs")

	// overlayfs lists lower layers top first.
	var lowers []string
	for i := len(c.spec.Layers) - 1; i >= 0; i-- {
		lowers = append(lowers, g.layerDir(c.spec.Layers[i]))
	}
	lowers = append(lowers, filepath.Join(dir, "empty"))
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s",
		strings.Join(lowers, ":"), filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if err := unix.Mount("overlay", rootfs, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount overlay: %w", err)
	}

	if err := mountDev(rootfs); err != nil {
		return "", err
	}
	if err := mountAt(rootfs, "/sys", "sysfs", "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return "", err
	}
	if err := mkdirIn(rootfs, "/proc"); err != nil {
		return "", err
	}

	// /etc/hostname, /etc/hosts and /etc/resolv.conf are the pod's, bound
	// over the image's as Docker does.
	host := c.spec.Hostname
	if host == "" {
		host = g.hostname()
	}
	files := map[string]string{
		"hostname":    host + "\n",
		"hosts":       g.hostsFile(host),
		"resolv.conf": g.resolvConf(),
	}
	for name, content := range files {
		src := filepath.Join(dir, "etc", name)
		if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
			return "", err
		}
		if err := bindFile(rootfs, "/etc/"+name, src, false); err != nil {
			return "", err
		}
	}

	if c.spec.Init {
		if err := bindFile(rootfs, DockerInitPath, InitPath, true); err != nil {
			return "", fmt.Errorf("bind docker-init: %w", err)
		}
	}

	// Volumes, shallowest first so nested mount points stack correctly.
	mounts := append([]spec.Mount(nil), c.spec.Mounts...)
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(filepath.Clean(mounts[i].Target), "/") < strings.Count(filepath.Clean(mounts[j].Target), "/")
	})
	for _, m := range mounts {
		src, ok := g.volumeDir(m.Volume)
		if !ok {
			return "", fmt.Errorf("volume %s is not set up", m.Volume)
		}
		if m.Fill {
			if err := fillVolume(rootfs, m.Target, src); err != nil {
				return "", fmt.Errorf("fill volume %s from %s: %w", m.Volume, m.Target, err)
			}
		}
		if m.SubPath != "" {
			var err error
			if src, err = securejoin.SecureJoin(src, m.SubPath); err != nil {
				return "", err
			}
			if fi, err := os.Stat(src); err == nil && !fi.IsDir() {
				if err := bindFile(rootfs, m.Target, src, m.ReadOnly); err != nil {
					return "", fmt.Errorf("mount %s of volume %s at %s: %w", m.SubPath, m.Volume, m.Target, err)
				}
				continue
			}
		}
		if err := bindDir(rootfs, m.Target, src, m.ReadOnly); err != nil {
			return "", fmt.Errorf("mount volume %s at %s: %w", m.Volume, m.Target, err)
		}
	}

	if c.spec.ReadonlyRootfs {
		if err := unix.Mount("", rootfs, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return "", fmt.Errorf("read-only rootfs: %w", err)
		}
	}
	return rootfs, nil
}

// fillVolume copies what the container's image has at target into the
// volume mounted at vol when the volume is empty, as Docker fills a new
// named volume: content, owners, modes and times, and the directory's
// own owner and mode, which images set for the user that writes there.
// It runs on the calling thread, which is in the container's mount
// namespace.
func fillVolume(rootfs, target, vol string) error {
	src, err := securejoin.SecureJoin(rootfs, target)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
		return nil // nothing to copy
	}
	if ents, err := os.ReadDir(vol); err != nil || len(ents) > 0 {
		return err
	}
	return copyTree(src, vol)
}

// copyTree copies the tree at src onto the existing directory dst, which
// takes src's owner, mode and times. Symlinks are copied as links, hard
// links stay linked, devices and fifos are made anew.
func copyTree(src, dst string) error {
	type inode struct{ dev, ino uint64 }
	links := map[inode]string{}
	var dirs []string // to finish once their content is in
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		st, _ := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode()
		switch {
		case rel == ".":
		case mode.IsDir():
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
		case mode&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, to); err != nil {
				return err
			}
		case mode.IsRegular():
			if st != nil && st.Nlink > 1 {
				key := inode{uint64(st.Dev), st.Ino}
				if first, ok := links[key]; ok {
					return os.Link(first, to)
				}
				links[key] = to
			}
			if err := copyFile(p, to); err != nil {
				return err
			}
		case st != nil:
			// Devices, fifos and sockets.
			if err := unix.Mknod(to, st.Mode, int(st.Rdev)); err != nil {
				return err
			}
		}
		if mode.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		return finish(to, fi)
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		rel, _ := filepath.Rel(src, dirs[i])
		fi, err := os.Lstat(dirs[i])
		if err != nil {
			return err
		}
		if err := finish(filepath.Join(dst, rel), fi); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// finish gives a copied entry its original's owner, mode and times.
func finish(to string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		if err := unix.Chmod(to, st.Mode&0o7777); err != nil {
			return err
		}
	}
	ts := []unix.Timespec{unix.Timespec(st.Atim), unix.Timespec(st.Mtim)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, to, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// mountDev gives the container a /dev of its own: a tmpfs with the usual
// nodes, a private devpts instance, /dev/shm and /dev/mqueue.
func mountDev(rootfs string) error {
	if err := mountAt(rootfs, "/dev", "tmpfs", "tmpfs", unix.MS_NOSUID, "mode=755,size=65536k"); err != nil {
		return err
	}
	dev := rootfs + "/dev"
	nodes := []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}}
	for _, n := range nodes {
		if err := unix.Mknod(dev+"/"+n.name, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			return fmt.Errorf("mknod /dev/%s: %w", n.name, err)
		}
		// mknod obeys the umask; the nodes must be world-usable.
		os.Chmod(dev+"/"+n.name, 0o666)
	}
	links := [][2]string{
		{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
	}
	for _, l := range links {
		if err := os.Symlink(l[0], dev+"/"+l[1]); err != nil {
			return err
		}
	}
	if err := mountAt(rootfs, "/dev/pts", "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return err
	}
	if err := mountAt(rootfs, "/dev/shm", "shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return err
	}
	return mountAt(rootfs, "/dev/mqueue", "mqueue", "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
}

// mkdirIn creates path inside rootfs, resolving symlinks inside rootfs so
// an image cannot point a mount outside its root.
func mkdirIn(rootfs, path string) error {
	p, err := securejoin.SecureJoin(rootfs, path)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}

func mountAt(rootfs, target, source, fstype string, flags uintptr, data string) error {
	p, err := securejoin.SecureJoin(rootfs, target)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", target, err)
	}
	if err := unix.Mount(source, p, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	return nil
}

func bindDir(rootfs, target, src string, ro bool) error {
	p, err := securejoin.SecureJoin(rootfs, target)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", target, err)
	}
	return bind(src, p, ro)
}

// bindFile binds src over the file target, creating it when missing.
func bindFile(rootfs, target, src string, ro bool) error {
	p, err := securejoin.SecureJoin(rootfs, target)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return fmt.Errorf("%s is a directory", target)
	} else if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("create %s: %w", target, err)
		}
		f.Close()
	}
	return bind(src, p, ro)
}

func bind(src, dst string, ro bool) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", dst, err)
	}
	if ro {
		if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("read-only %s: %w", dst, err)
		}
	}
	return nil
}

// containerCgroup creates the container's cgroup and opens it for
// CLONE_INTO_CGROUP; fd is -1 when cgroups are unavailable.
func (g *Guest) containerCgroup(name string) (path string, fd int) {
	path = filepath.Join(cgroupRoot, "c-"+name)
	if err := os.Mkdir(path, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		g.log.Warn("cgroup", "container", name, "err", err)
		return "", -1
	}
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1
	}
	return path, fd
}

// oomKilled reports whether the kernel's OOM killer killed a process of
// the container's cgroup.
func oomKilled(cgroup string) bool {
	if cgroup == "" {
		return false
	}
	b, err := os.ReadFile(cgroup + "/memory.events")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
			return true
		}
	}
	return false
}
