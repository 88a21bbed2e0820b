// Package guest is cradle's init: PID 1 inside every pod's microVM.
//
// It mounts the pseudo-filesystems, opens the control channel to the host
// (a virtio-serial port, or vsock where the host has it), and then serves
// the control protocol of cradle/spec: it configures the NICs, mounts the
// image layers and volumes, assembles each container's rootfs as an overlay,
// runs containers in their own mount, PID, UTS and IPC namespaces, streams
// their stdio, runs execs, reaps every process, and powers the VM off.
//
// Nothing here may panic: a fatal error is logged to the console and the
// VM powers off, which the host sees as QEMU exiting.
package guest

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/cradle/spec"
)

const (
	runDir     = "/run/hearth"
	cgroupRoot = "/sys/fs/cgroup"
	// PortName is the virtio-serial port of the control channel.
	PortName = "hearth.ctl"
	// ProbeEnv set in init's environment (a kernel parameter without a
	// dot) asks init to power off at once: the host is only checking that
	// an accelerator can boot the guest.
	ProbeEnv = "hearth_probe"
	// StubPath is hearth-stub in the initramfs.
	StubPath = "/stub"
	// InitPath is this program, which containers started with Init run
	// as /sbin/docker-init.
	InitPath = "/init"
	// DockerInitPath is where such a container finds it.
	DockerInitPath = "/sbin/docker-init"
	// DebugEnv turns on init's debug log on the console.
	DebugEnv = "hearth_debug"
)

// Guest is the state of init.
type Guest struct {
	log    *slog.Logger
	reaper *reaper

	mu         sync.Mutex
	launch     *spec.Launch
	layers     map[int]string            // layer index → mount point
	volumes    map[string]string         // volume name → mount point
	nics       map[string]spec.Interface // the NICs on networks now, by name
	containers map[string]*container
	shutdown   bool
}

// New returns an init with nothing set up yet.
func New(log *slog.Logger) *Guest {
	return &Guest{
		log:        log,
		reaper:     newReaper(),
		layers:     map[int]string{},
		volumes:    map[string]string{},
		nics:       map[string]spec.Interface{},
		containers: map[string]*container{},
	}
}

// Main runs init: it returns only by powering the VM off.
func Main() {
	if os.Getenv(ProbeEnv) != "" {
		// The host only checks that this accelerator boots us.
		powerOff()
	}
	level := slog.LevelInfo
	if os.Getenv(DebugEnv) != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	g := New(log)
	log.Debug("init started")
	if err := boot(); err != nil {
		log.Error("boot", "err", err)
		powerOff()
	}
	go g.reaper.run()
	log.Debug("booted")
	if err := g.serve(); err != nil {
		log.Error("control channel", "err", err)
	}
	g.stopAll(time.Second)
	powerOff()
}

// boot moves init off the initramfs (pivot_root cannot leave it, and the
// containers need to) and mounts the pseudo-filesystems.
func boot() error {
	if err := os.MkdirAll("/root", 0o700); err != nil {
		return err
	}
	if err := unix.Mount("root", "/root", "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount root tmpfs: %w", err)
	}
	// The stub and init itself come along into the new root.
	for _, p := range []string{StubPath, InitPath} {
		f, err := os.Create("/root" + p)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount(p, "/root"+p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", p, err)
		}
	}
	if err := os.Chdir("/root"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	const (
		nosuid = unix.MS_NOSUID
		nodev  = unix.MS_NODEV
		noexec = unix.MS_NOEXEC
	)
	mounts := []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "/proc", "proc", nosuid | nodev | noexec, ""},
		{"sysfs", "/sys", "sysfs", nosuid | nodev | noexec, ""},
		{"devtmpfs", "/dev", "devtmpfs", nosuid, "mode=0755"},
		{"devpts", "/dev/pts", "devpts", nosuid | noexec, "mode=0620,gid=5,ptmxmode=0666"},
		{"shm", "/dev/shm", "tmpfs", nosuid | nodev, "mode=1777"},
		{"run", "/run", "tmpfs", nosuid | nodev, "mode=0755"},
		{"tmp", "/tmp", "tmpfs", nosuid | nodev, "mode=1777"},
		{"cgroup2", cgroupRoot, "cgroup2", nosuid | nodev | noexec, ""},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	// Let containers' cgroups account memory and processes.
	// One write per controller: a write naming one the kernel lacks fails
	// as a whole.
	for _, c := range []string{"+memory", "+pids", "+cpu"} {
		os.WriteFile(cgroupRoot+"/cgroup.subtree_control", []byte(c), 0)
	}
	for _, d := range []string{runDir, runDir + "/c", runDir + "/layers", runDir + "/volumes"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return linkUp("lo")
}

// powerOff ends the VM. microvm has no ACPI: the kernel reboots (reboot=t)
// and QEMU, run with -no-reboot, exits.
func powerOff() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	// Reboot only fails without CAP_SYS_BOOT; there is nothing left to do.
	for {
		time.Sleep(time.Hour)
	}
}

// setup applies the launch spec: clock, hostname, network, disks.
func (g *Guest) setup(l *spec.Launch, now time.Time) error {
	g.mu.Lock()
	if g.launch != nil {
		g.mu.Unlock()
		return &callError{spec.ErrConflict, "pod is already set up"}
	}
	g.launch = l
	g.mu.Unlock()

	if !now.IsZero() {
		tv := unix.NsecToTimeval(now.UnixNano())
		if err := unix.Settimeofday(&tv); err != nil {
			g.log.Warn("set clock", "err", err)
		}
	}
	host := l.Hostname
	if host == "" {
		host = l.ID[:12]
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		return fmt.Errorf("hostname: %w", err)
	}
	if l.Network != nil {
		g.mu.Lock()
		for _, ifc := range l.Network.Interfaces {
			g.nics[ifc.Name] = ifc
		}
		g.mu.Unlock()
	}
	if err := configureNetwork(l.Network); err != nil {
		return err
	}
	disks, err := disksBySerial()
	if err != nil {
		return err
	}
	for i := range l.Layers {
		dev, ok := disks[LayerSerial(i)]
		if !ok {
			return fmt.Errorf("layer %d: no disk with serial %s", i, LayerSerial(i))
		}
		dir := filepath.Join(runDir, "layers", fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(dev, dir, "erofs", unix.MS_RDONLY|unix.MS_NODEV, ""); err != nil {
			return fmt.Errorf("mount layer %d (%s): %w", i, l.Layers[i].Digest, err)
		}
		g.layers[i] = dir
	}
	for _, v := range l.Volumes {
		dir, err := mountVolume(v, disks)
		if err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		g.mu.Lock()
		g.volumes[v.Name] = dir
		g.mu.Unlock()
	}
	g.mu.Lock()
	for _, c := range l.Containers {
		g.containers[c.Name] = &container{spec: c, dir: filepath.Join(runDir, "c", c.Name), exited: make(chan struct{}), reported: make(chan struct{})}
	}
	g.mu.Unlock()
	return nil
}

// LayerSerial is the virtio-blk serial of layer i.
func LayerSerial(i int) string { return fmt.Sprintf("layer%d", i) }

// VolumeSerial is the virtio-blk serial of a block volume.
func VolumeSerial(name string) string { return "vol-" + name }

// VolumeTag is the 9p mount tag of a directory volume.
func VolumeTag(name string) string { return "vol-" + name }

func mountVolume(v spec.Volume, disks map[string]string) (string, error) {
	dir := filepath.Join(runDir, "volumes", v.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var flags uintptr = unix.MS_NODEV
	if v.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	switch v.Type {
	case spec.VolumeDir:
		// cache=none: every write reaches the host at once, and fsync
		// becomes a host fsync.
		opts := "trans=virtio,version=9p2000.L,cache=none,msize=262144,access=client"
		if err := unix.Mount(VolumeTag(v.Name), dir, "9p", flags, opts); err != nil {
			return "", fmt.Errorf("mount 9p: %w", err)
		}
	case spec.VolumeBlock:
		dev, ok := disks[VolumeSerial(v.Name)]
		if !ok {
			return "", fmt.Errorf("no disk with serial %s", VolumeSerial(v.Name))
		}
		if err := unix.Mount(dev, dir, "ext4", flags, ""); err != nil {
			return "", fmt.Errorf("mount ext4 %s: %w", dev, err)
		}
	case spec.VolumeTmpfs:
		opts := "mode=1777"
		if v.SizeBytes > 0 {
			opts += fmt.Sprintf(",size=%d", v.SizeBytes)
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", flags|unix.MS_NOSUID, opts); err != nil {
			return "", fmt.Errorf("mount tmpfs: %w", err)
		}
	}
	return dir, nil
}

// disksBySerial maps virtio-blk serials to device nodes.
func disksBySerial() (map[string]string, error) {
	ents, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "serial"))
		if err != nil {
			continue
		}
		out[strings.TrimSpace(string(b))] = "/dev/" + e.Name()
	}
	return out, nil
}

func (g *Guest) layerDir(i int) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.layers[i]
}

func (g *Guest) volumeDir(name string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, ok := g.volumes[name]
	return d, ok
}

func (g *Guest) hostname() string {
	h, _ := os.Hostname()
	return h
}

func (g *Guest) hostsFile(host string) string {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	g.mu.Lock()
	l := g.launch
	g.mu.Unlock()
	if l != nil && l.Network != nil {
		for _, ifc := range l.Network.Interfaces {
			if ip, _, ok := strings.Cut(ifc.Address, "/"); ok {
				fmt.Fprintf(&b, "%s\t%s\n", ip, host)
				break
			}
		}
	}
	return b.String()
}

func (g *Guest) resolvConf() string {
	g.mu.Lock()
	l := g.launch
	g.mu.Unlock()
	var b strings.Builder
	if l != nil && l.Network != nil {
		for _, d := range l.Network.DNS {
			fmt.Fprintf(&b, "nameserver %s\n", d)
		}
		if len(l.Network.Search) > 0 {
			fmt.Fprintf(&b, "search %s\n", strings.Join(l.Network.Search, " "))
		}
	}
	return b.String()
}

func (g *Guest) container(name string) (*container, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c, ok := g.containers[name]
	if !ok {
		return nil, &callError{spec.ErrNotFound, fmt.Sprintf("no such container: %s", name)}
	}
	return c, nil
}

func (g *Guest) shuttingDown() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.shutdown
}

// stopAll stops every running container: its stop signal, then SIGKILL
// once timeout has passed. It returns when all have exited.
func (g *Guest) stopAll(timeout time.Duration) {
	g.mu.Lock()
	g.shutdown = true
	var cs []*container
	for _, c := range g.containers {
		cs = append(cs, c)
	}
	g.mu.Unlock()
	deadline := time.After(timeout)
	signalAll := func(pick func(*container) unix.Signal) {
		for _, c := range cs {
			c.mu.Lock()
			pid := c.pid
			c.mu.Unlock()
			if pid > 0 && !isClosed(c.exited) {
				unix.Kill(pid, pick(c))
			}
		}
	}
	signalAll(func(c *container) unix.Signal {
		if c.spec.StopSignal > 0 {
			return unix.Signal(c.spec.StopSignal)
		}
		return unix.SIGTERM
	})
	for _, c := range cs {
		c.mu.Lock()
		started := c.started
		c.mu.Unlock()
		if !started {
			continue
		}
		select {
		case <-c.exited:
		case <-deadline:
			signalAll(func(*container) unix.Signal { return unix.SIGKILL })
			<-c.exited
		}
		select {
		case <-c.reported:
		case <-time.After(2 * time.Second):
		}
	}
}

// unmountVolumes flushes and detaches the pod's volumes.
func (g *Guest) unmountVolumes() {
	unix.Sync()
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, dir := range g.volumes {
		if err := unix.Unmount(dir, 0); err != nil {
			// Still busy (a straggler): detach, after the sync above.
			unix.Unmount(dir, unix.MNT_DETACH)
			g.log.Warn("unmount volume", "volume", name, "err", err)
		}
	}
}
