// Package shim is the per-pod supervisor, in the manner of containerd's
// shims. `hearth cradle run` (and later the node agent) starts one per pod
// as a detached process; it owns QEMU and the control channel to the guest,
// records the pod's state and its containers' output under the pod
// directory, and serves the pod's API on a unix socket. It outlives the
// process that started it, so restarting that process never kills a pod,
// and QEMU never outlives it: QEMU is bound to the shim by a parent-death
// signal.
package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/hearth-cloud/hearth/cradle/guest"
	"github.com/hearth-cloud/hearth/cradle/host"
	"github.com/hearth-cloud/hearth/cradle/podlog"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/atomicfile"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Options configure one supervisor.
type Options struct {
	Paths  Paths
	Assets host.Assets
	Accel  string
	// AutoStart starts the containers once the VM is set up; otherwise
	// they wait for OpStartPod (so a foreground client can attach first).
	AutoStart bool
	// AutoRemove deletes the pod directory once the pod has exited.
	AutoRemove bool
	// Ready, when set, receives one JSON ReadyMessage once the pod is up
	// (or has failed), and is closed.
	Ready *os.File
	Log   *slog.Logger
}

// ReadyMessage tells the starter of a shim how the start went.
type ReadyMessage struct {
	Error string `json:"error,omitempty"`
}

// bootTimeout bounds how long a VM may take to connect its control
// channel. TCG on a loaded 2-core machine is slow; a real failure shows
// up as QEMU exiting well before this.
const bootTimeout = 60 * time.Second

// Shim supervises one pod.
type Shim struct {
	o      Options
	log    *slog.Logger
	launch *spec.Launch
	// guarded are the taps with spoofing guards to lift at the end.
	guarded []guarded
	// slots are the pod's NICs by tap index, nil where on no network,
	// and macs their MACs now; plugMu serialises plugs, and closing ends
	// them.
	slots   []*spec.Interface
	macs    []string
	plugMu  sync.Mutex
	closing bool

	mu         sync.Mutex
	state      spec.PodState
	ctrs       map[string]*ctr
	order      []*ctr
	sess       *yamux.Session
	vm         *exec.Cmd
	started    bool
	stopping   bool
	autoRemove bool
	readySent  bool

	vmDone  chan struct{} // QEMU has exited
	allDone chan struct{} // every container has exited
	stopReq chan time.Duration
	exited  chan struct{} // final state is written
	clients sync.WaitGroup
}

// Run supervises the pod until it has exited.
func Run(ctx context.Context, o Options) error {
	b, err := os.ReadFile(o.Paths.Spec())
	if err != nil {
		return fmt.Errorf("read launch spec: %w", err)
	}
	var l spec.Launch
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("parse launch spec: %w", err)
	}
	if err := l.Validate(); err != nil {
		return fmt.Errorf("launch spec: %w", err)
	}
	s := &Shim{
		o:          o,
		log:        o.Log.With("pod", l.ID[:12]),
		launch:     &l,
		ctrs:       map[string]*ctr{},
		autoRemove: o.AutoRemove,
		vmDone:     make(chan struct{}),
		allDone:    make(chan struct{}),
		stopReq:    make(chan time.Duration, 1),
		exited:     make(chan struct{}),
	}
	s.state = spec.PodState{ID: l.ID, Name: l.Name, Status: spec.StatusCreated, ShimPID: os.Getpid(), Accel: o.Accel, CreatedAt: time.Now().UTC()}
	if l.Network != nil && len(l.Network.Interfaces) > 0 {
		s.state.IP = l.Network.Interfaces[0].Address
		s.state.Interfaces = append([]spec.Interface(nil), l.Network.Interfaces...)
	}
	s.initSlots()
	logDir := o.Paths.LogDir()
	if l.LogDir != "" {
		logDir = l.LogDir
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	for _, c := range l.Containers {
		cs := &ctr{name: c.Name, shim: s, done: make(chan struct{}), started: make(chan struct{}), logPath: o.Paths.LaunchLog(&l, c.Name)}
		// The log exists from the start, so readers never wait for it.
		if cs.log, err = podlog.Create(cs.logPath); err != nil {
			return err
		}
		s.ctrs[c.Name] = cs
		s.order = append(s.order, cs)
		s.state.Containers = append(s.state.Containers, spec.ContainerState{Name: c.Name, Status: spec.StatusCreated})
	}
	s.saveState()

	if err := os.MkdirAll(o.Paths.RunDir, 0o755); err != nil {
		return err
	}
	os.Remove(o.Paths.Socket())
	ln, err := net.Listen("unix", o.Paths.Socket())
	if err != nil {
		s.finish(err)
		return fmt.Errorf("listen: %w", err)
	}
	go s.serveClients(ln)

	if err := s.boot(ctx); err != nil {
		s.killVM()
		s.finish(err)
		ln.Close()
		s.cleanup()
		return err
	}
	if o.AutoStart {
		s.startAll()
	}
	s.ready(nil)

	select {
	case <-s.allDone:
		s.shutdown(0)
	case t := <-s.stopReq:
		s.shutdown(t)
	case <-ctx.Done():
		s.shutdown(s.stopTimeout())
	case <-s.vmDone:
	}
	s.finish(nil)
	// Answer waiters and attached clients before the socket goes.
	waitTimeout(&s.clients, 2*time.Second)
	ln.Close()
	s.cleanup()
	return nil
}

// boot creates the taps, starts QEMU, and sets the guest up.
func (s *Shim) boot(ctx context.Context) error {
	l := s.launch
	var taps []*os.File
	defer func() {
		// QEMU holds its own copies; the taps go when it exits.
		for _, t := range taps {
			t.Close()
		}
	}()
	cfg := host.VMConfig{
		Name:      "hearth-" + l.ID[:12],
		Accel:     s.o.Accel,
		CPUs:      l.Resources.CPUs,
		MemoryMiB: l.Resources.MemoryMiB,
		Kernel:    s.o.Assets.Kernel,
		Initrd:    s.o.Assets.Initrd,
		Control:   s.o.Paths.Control(),
		Console:   s.o.Paths.Console(),
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		cfg.Cmdline = guest.DebugEnv + "=1"
	}
	if l.Network != nil {
		for i, ifc := range l.Network.Interfaces {
			name := host.TapName(l.ID, i)
			t, err := host.OpenTap(l.Network.NetNS, name)
			if err != nil {
				return err
			}
			taps = append(taps, t)
			pfx, err := netip.ParsePrefix(ifc.Address)
			if err != nil {
				return fmt.Errorf("interface %s: address %q: %w", ifc.Name, ifc.Address, err)
			}
			// The guard goes up before the tap joins its bridge.
			if err := host.Guard(l.Network.NetNS, name, ifc.MAC, pfx.Addr()); err != nil {
				return err
			}
			s.guarded = append(s.guarded, guarded{l.Network.NetNS, name, ifc.MAC, pfx.Addr()})
			if err := host.AttachTap(l.Network.NetNS, name, ifc.Bridge); err != nil {
				return err
			}
			cfg.NICs = append(cfg.NICs, host.NIC{FD: 3 + i, MAC: ifc.MAC})
		}
		// Spare NICs: taps on no bridge, until a plug.
		for i := len(l.Network.Interfaces); i < len(l.Network.Interfaces)+l.Network.Spare; i++ {
			t, err := host.OpenTap(l.Network.NetNS, host.TapName(l.ID, i))
			if err != nil {
				return err
			}
			taps = append(taps, t)
			cfg.NICs = append(cfg.NICs, host.NIC{FD: 3 + i, MAC: host.SpareMAC(l.ID, i)})
		}
	}
	for i, ly := range l.Layers {
		cfg.Disks = append(cfg.Disks, host.Disk{Path: ly.Path, Serial: guest.LayerSerial(i), ReadOnly: true})
	}
	for _, v := range l.Volumes {
		switch v.Type {
		case spec.VolumeBlock:
			if err := host.EnsureBlockVolume(v.Source, v.SizeBytes); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
			if v.ReadOnly {
				// Replaying the journal of a disk a VM is writing
				// would corrupt it.
				if busy, err := host.InUse(v.Source); err != nil || busy {
					if err == nil {
						err = errdefs.Conflict("the disk is in use read-write by another pod")
					}
					return fmt.Errorf("volume %s: %w", v.Name, err)
				}
				if err := host.ReplayJournal(v.Source); err != nil {
					return fmt.Errorf("volume %s: %w", v.Name, err)
				}
			}
			cfg.Disks = append(cfg.Disks, host.Disk{Path: v.Source, Serial: guest.VolumeSerial(v.Name), ReadOnly: v.ReadOnly})
		case spec.VolumeDir:
			cfg.Shares = append(cfg.Shares, host.Share{Path: v.Source, Tag: guest.VolumeTag(v.Name), ReadOnly: v.ReadOnly, Mapped: v.Mapped})
		}
	}
	args, err := cfg.Args()
	if err != nil {
		return err
	}

	os.Remove(s.o.Paths.Control())
	ctl, err := net.Listen("unix", s.o.Paths.Control())
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer func() {
		ctl.Close()
		os.Remove(s.o.Paths.Control())
	}()
	if err := s.startVM(args, taps); err != nil {
		return err
	}
	s.log.Debug("vm started")

	type accepted struct {
		c   net.Conn
		err error
	}
	ach := make(chan accepted, 1)
	go func() {
		c, err := ctl.Accept()
		ach <- accepted{c, err}
	}()
	var conn net.Conn
	select {
	case a := <-ach:
		if a.err != nil {
			return fmt.Errorf("control channel: %w", a.err)
		}
		conn = a.c
	case <-s.vmDone:
		return fmt.Errorf("qemu exited during start: %s", s.qemuError())
	case <-time.After(bootTimeout):
		return fmt.Errorf("vm did not connect its control channel within %s", bootTimeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	s.log.Debug("control channel connected")
	sess, err := yamux.Client(conn, guest.YamuxConfig())
	if err != nil {
		return fmt.Errorf("control session: %w", err)
	}
	s.mu.Lock()
	s.sess = sess
	s.mu.Unlock()

	resp, err := s.call(&spec.Request{Op: spec.OpHello, Version: spec.ProtocolVersion})
	if err != nil {
		return s.vmError("guest hello", err)
	}
	s.log.Debug("guest hello", "kernel", resp.Info.KernelRelease)
	if _, err := s.call(&spec.Request{Op: spec.OpSetup, Launch: l, Time: time.Now()}); err != nil {
		return s.vmError("guest setup", err)
	}
	s.log.Debug("guest set up")
	s.mu.Lock()
	s.state.Kernel = resp.Info.KernelRelease
	s.mu.Unlock()
	s.saveState()
	return nil
}

// vmError prefers QEMU's own words when the VM died under a call.
func (s *Shim) vmError(what string, err error) error {
	select {
	case <-s.vmDone:
		return fmt.Errorf("%s: vm exited: %s", what, s.qemuError())
	case <-time.After(100 * time.Millisecond):
	}
	return fmt.Errorf("%s: %w", what, err)
}

func (s *Shim) qemuError() string {
	b, _ := os.ReadFile(s.o.Paths.QEMULog())
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	if len(b) == 0 {
		return "no output (see " + s.o.Paths.Console() + ")"
	}
	return string(b)
}

// startVM starts QEMU on a locked OS thread that lives until QEMU exits:
// the parent-death signal fires when the thread that forked the child
// ends, not the process, so the thread must outlast QEMU.
func (s *Shim) startVM(args []string, taps []*os.File) error {
	qlog, err := os.Create(s.o.Paths.QEMULog())
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer qlog.Close()
		cmd := exec.Command(s.o.Assets.QEMU, args...)
		cmd.ExtraFiles = taps
		cmd.Stdout, cmd.Stderr = qlog, qlog
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			errc <- fmt.Errorf("start qemu: %w", err)
			return
		}
		s.mu.Lock()
		s.vm = cmd
		s.state.VMPID = cmd.Process.Pid
		s.mu.Unlock()
		errc <- nil
		err := cmd.Wait()
		s.log.Debug("vm exited", "status", err)
		close(s.vmDone)
		// Containers still marked running died with the VM.
		for _, c := range s.order {
			c.finish(spec.ExitStatus{Code: 137, Signal: int(syscall.SIGKILL), Error: "vm exited", FinishedAt: time.Now()})
		}
	}()
	return <-errc
}

// setPaused stops or continues the QEMU process: a paused VM uses no CPU
// and keeps its memory, as Docker's freezer does for a container.
func (s *Shim) setPaused(pause bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vm == nil || isClosed(s.vmDone) || s.stopping {
		return callErr(spec.ErrConflict, "pod %s is not running", s.launch.ID[:12])
	}
	if s.state.Paused == pause {
		if pause {
			return callErr(spec.ErrConflict, "pod %s is already paused", s.launch.ID[:12])
		}
		return callErr(spec.ErrConflict, "pod %s is not paused", s.launch.ID[:12])
	}
	sig := syscall.SIGCONT
	if pause {
		sig = syscall.SIGSTOP
	}
	if err := s.vm.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal qemu: %w", err)
	}
	s.state.Paused = pause
	return nil
}

// resumeVM continues a paused VM, before a stop or a kill.
func (s *Shim) resumeVM() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Paused && s.vm != nil {
		s.vm.Process.Signal(syscall.SIGCONT)
		s.state.Paused = false
	}
}

// refuseIfPaused refuses a call that needs the guest while it is frozen.
func (s *Shim) refuseIfPaused() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state.Paused {
		return callErr(spec.ErrConflict, "pod %s is paused", s.launch.ID[:12])
	}
	return nil
}

func (s *Shim) killVM() {
	s.mu.Lock()
	vm := s.vm
	s.mu.Unlock()
	if vm == nil {
		return
	}
	vm.Process.Kill()
	<-s.vmDone
}

// call makes one guest call that has no stream after the response.
func (s *Shim) call(req *spec.Request) (*spec.Response, error) {
	st, err := s.openStream()
	if err != nil {
		return nil, err
	}
	defer st.Close()
	return spec.Call(st, req)
}

func (s *Shim) openStream() (net.Conn, error) {
	s.mu.Lock()
	sess := s.sess
	s.mu.Unlock()
	if sess == nil {
		return nil, errors.New("vm is not up")
	}
	st, err := sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open control stream: %w", err)
	}
	return st, nil
}

// startAll starts every container that has not started yet.
func (s *Shim) startAll() error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return nil
	}
	s.started = true
	s.state.Status = spec.StatusRunning
	s.state.StartedAt = time.Now().UTC()
	s.mu.Unlock()
	var first error
	for _, c := range s.order {
		if err := c.start(); err != nil && first == nil {
			first = err
		}
	}
	s.saveState()
	return first
}

// containerExited closes allDone once no container is left running.
func (s *Shim) containerExited() {
	for _, c := range s.order {
		if !isClosed(c.done) {
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !isClosed(s.allDone) {
		close(s.allDone)
	}
}

// requestStop asks the main loop for a graceful stop.
func (s *Shim) requestStop(timeout time.Duration, remove bool) {
	s.mu.Lock()
	if remove {
		s.autoRemove = true
	}
	already := s.stopping
	s.stopping = true
	s.mu.Unlock()
	if !already {
		s.stopReq <- timeout
	}
}

func (s *Shim) stopTimeout() time.Duration {
	t := 10 * time.Second
	for i, c := range s.launch.Containers {
		if c.StopTimeout != nil {
			if d := time.Duration(*c.StopTimeout) * time.Second; i == 0 || d > t {
				t = d
			}
		}
	}
	return t
}

// shutdown stops the containers within timeout, flushes and powers the VM
// off, and kills QEMU if the guest does not get there.
func (s *Shim) shutdown(timeout time.Duration) {
	s.log.Debug("shutting down", "timeout", timeout)
	s.resumeVM()
	done := make(chan error, 1)
	go func() {
		_, err := s.call(&spec.Request{Op: spec.OpShutdown, Timeout: spec.Duration(timeout)})
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			// The guest answers once every container is gone and the
			// volumes are synced and unmounted: nothing is left in the VM
			// to lose, so its reboot need not be waited for.
			s.killVM()
			return
		}
		s.log.Debug("shutdown call", "err", err)
	case <-s.vmDone:
		return
	}
	select {
	case <-s.vmDone:
	case <-time.After(timeout + 30*time.Second):
		s.log.Warn("vm did not power off; killing it")
		s.killVM()
	}
}

// finish writes the final state and tells a waiting starter.
func (s *Shim) finish(err error) {
	s.mu.Lock()
	s.state.Status = spec.StatusExited
	s.state.FinishedAt = time.Now().UTC()
	s.state.VMPID = 0
	if err != nil {
		s.state.Error = err.Error()
		for i := range s.state.Containers {
			if s.state.Containers[i].Exit == nil {
				s.state.Containers[i].Status = spec.StatusExited
				s.state.Containers[i].Exit = &spec.ExitStatus{Code: 125, Error: err.Error(), FinishedAt: time.Now().UTC()}
			}
		}
	}
	s.mu.Unlock()
	s.saveState()
	close(s.exited)
	s.ready(err)
}

func (s *Shim) ready(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readySent || s.o.Ready == nil {
		return
	}
	s.readySent = true
	var m ReadyMessage
	if err != nil {
		m.Error = err.Error()
	}
	b, _ := json.Marshal(m)
	s.o.Ready.Write(b)
	s.o.Ready.Close()
}

// guarded is a tap whose spoofing guard the pod holds.
type guarded struct {
	ns, tap, mac string
	ip           netip.Addr
}

// cleanup removes what the pod leaves on the host.
func (s *Shim) cleanup() {
	os.Remove(s.o.Paths.Socket())
	os.Remove(s.o.Paths.Control())
	s.mu.Lock()
	s.closing = true // no plug from now on
	guards := slices.Clone(s.guarded)
	s.mu.Unlock()
	for _, g := range guards {
		if err := host.Unguard(g.ns, g.tap, g.mac, g.ip); err != nil {
			s.log.Warn("remove the spoofing guard of a tap", "tap", g.tap, "err", err)
		}
	}
	s.mu.Lock()
	remove := s.autoRemove
	s.mu.Unlock()
	if remove {
		if err := os.RemoveAll(s.o.Paths.Dir); err != nil {
			s.log.Warn("remove pod", "err", err)
		}
	}
}

func (s *Shim) saveState() {
	s.mu.Lock()
	b, err := json.MarshalIndent(&s.state, "", "  ")
	s.mu.Unlock()
	if err != nil {
		return
	}
	if err := atomicfile.WriteFile(s.o.Paths.State(), b, 0o644); err != nil {
		s.log.Warn("save state", "err", err)
	}
}

func (s *Shim) snapshot() spec.PodState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	st.Containers = append([]spec.ContainerState(nil), s.state.Containers...)
	st.Interfaces = slices.Clone(s.state.Interfaces)
	return st
}

func (s *Shim) setContainerState(name string, fn func(*spec.ContainerState)) {
	s.mu.Lock()
	for i := range s.state.Containers {
		if s.state.Containers[i].Name == name {
			fn(&s.state.Containers[i])
		}
	}
	s.mu.Unlock()
	s.saveState()
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// ctr is the supervisor's side of one container: its guest stream, its log,
// and the clients attached to it.
type ctr struct {
	name    string
	shim    *Shim
	logPath string

	mu        sync.Mutex
	stream    net.Conn // the guest's start stream
	wmu       sync.Mutex
	log       *podlog.Writer
	attachers map[*attacher]bool
	exit      *spec.ExitStatus
	done      chan struct{}
	// started is closed once the container's process runs (or it has
	// ended without): input may flow from then on.
	started     chan struct{}
	startedOnce sync.Once
	// grow is closed and replaced whenever output is appended, waking
	// followers of the log.
	grow chan struct{}
}

type frame struct {
	kind spec.FrameKind
	data []byte
}

type attacher struct {
	ch   chan frame
	gone chan struct{}
}

func (c *ctr) start() error {
	st, err := c.shim.openStream()
	var resp *spec.Response
	if err == nil {
		resp, err = spec.Call(st, &spec.Request{Op: spec.OpStart, Container: c.name})
	}
	if err == nil && resp.Exit != nil {
		// The command could not run: that is the container's exit, and
		// the starter's error (Docker's start fails with it).
		st.Close()
		es := *resp.Exit
		c.finish(es)
		kind := spec.ErrNotExecutable
		if es.Code == 127 {
			kind = spec.ErrNotFound
		}
		return callErr(kind, "start container %s: %s", c.name, es.Error)
	}
	if err != nil {
		if st != nil {
			st.Close()
		}
		c.finish(spec.ExitStatus{Code: 125, Error: err.Error(), FinishedAt: time.Now()})
		return fmt.Errorf("start container %s: %w", c.name, err)
	}
	c.mu.Lock()
	c.stream = st
	c.mu.Unlock()
	c.markStarted()
	c.shim.setContainerState(c.name, func(cs *spec.ContainerState) {
		cs.Status = spec.StatusRunning
		cs.StartedAt = time.Now().UTC()
	})
	s := c.shim
	s.log.Debug("container started", "container", c.name)
	go c.pump(st)
	return nil
}

// pump reads the container's stream: output to the log and the attached
// clients, and its exit.
func (c *ctr) pump(st net.Conn) {
	for {
		kind, b, err := spec.ReadFrame(st)
		if err != nil {
			c.finish(spec.ExitStatus{Code: 137, Error: "lost the container's stream: " + err.Error(), FinishedAt: time.Now()})
			return
		}
		switch kind {
		case spec.FrameStdout, spec.FrameStderr:
			c.output(kind, b)
		case spec.FrameExit:
			c.shim.log.Debug("container exited", "container", c.name)
			var es spec.ExitStatus
			if err := json.Unmarshal(b, &es); err != nil {
				es = spec.ExitStatus{Code: 137, Error: "bad exit frame", FinishedAt: time.Now()}
			}
			c.finish(es)
			st.Close()
			return
		}
	}
}

func (c *ctr) output(kind spec.FrameKind, b []byte) {
	stream := "stdout"
	if kind == spec.FrameStderr {
		stream = "stderr"
	}
	c.mu.Lock()
	if c.log != nil {
		if err := c.log.Write(stream, b, time.Now()); err != nil {
			c.shim.log.Warn("write log", "container", c.name, "err", err)
		}
	}
	if c.grow != nil {
		close(c.grow)
		c.grow = nil
	}
	subs := make([]*attacher, 0, len(c.attachers))
	for a := range c.attachers {
		subs = append(subs, a)
	}
	c.mu.Unlock()
	// Attached clients get output as a pipe would: a client that does not
	// read holds the container up, as with docker attach.
	for _, a := range subs {
		select {
		case a.ch <- frame{kind, b}:
		case <-a.gone:
		}
	}
}

// finish records the container's exit once.
func (c *ctr) finish(es spec.ExitStatus) {
	c.mu.Lock()
	if c.exit != nil {
		c.mu.Unlock()
		return
	}
	c.exit = &es
	if c.log != nil {
		c.log.Close()
		c.log = nil
	}
	subs := c.attachers
	c.attachers = nil
	if c.grow != nil {
		close(c.grow)
		c.grow = nil
	}
	close(c.done)
	c.mu.Unlock()
	c.markStarted()
	b, _ := json.Marshal(es)
	for a := range subs {
		select {
		case a.ch <- frame{spec.FrameExit, b}:
		case <-a.gone:
		}
		close(a.ch)
	}
	es.FinishedAt = es.FinishedAt.UTC()
	c.shim.setContainerState(c.name, func(cs *spec.ContainerState) {
		cs.Status = spec.StatusExited
		cs.Exit = &es
	})
	c.shim.containerExited()
}

func (c *ctr) markStarted() { c.startedOnce.Do(func() { close(c.started) }) }

// send writes a frame to the guest's stream of this container.
func (c *ctr) send(kind spec.FrameKind, b []byte) error {
	c.mu.Lock()
	st := c.stream
	c.mu.Unlock()
	if st == nil {
		return errors.New("container is not running")
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return spec.WriteFrame(st, kind, b)
}

// attach registers a client for live output; nil when the container has
// already exited (the caller then sends its exit).
func (c *ctr) attach() *attacher {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exit != nil {
		return nil
	}
	a := &attacher{ch: make(chan frame, 64), gone: make(chan struct{})}
	if c.attachers == nil {
		c.attachers = map[*attacher]bool{}
	}
	c.attachers[a] = true
	return a
}

func (c *ctr) detach(a *attacher) {
	close(a.gone)
	c.mu.Lock()
	delete(c.attachers, a)
	c.mu.Unlock()
}

func (c *ctr) exitStatus() *spec.ExitStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exit
}

// growth returns a channel closed at the next append or at exit, and
// whether the container has exited.
func (c *ctr) growth() (<-chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exit != nil {
		return nil, true
	}
	if c.grow == nil {
		c.grow = make(chan struct{})
	}
	return c.grow, false
}
