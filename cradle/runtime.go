// Package cradle runs pods as microVMs on this host, without a control
// plane: it creates a pod from a launch spec by starting the pod's
// supervisor (cradle/shim), and finds, lists, stops and removes pods again
// from their directories, also after the process that created them has
// gone. The node agent drives pods through it; `hearth cradle` is its CLI.
//
// The guest side lives in cradle/guest, the wire contracts in cradle/spec,
// QEMU and host networking in cradle/host.
package cradle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/cradle/host"
	"github.com/hearth-cloud/hearth/cradle/shim"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/atomicfile"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Runtime manages the pods of one data dir.
type Runtime struct {
	DataDir string
	RunDir  string
	// Exe is the hearth binary that runs supervisors (`hearth cradle
	// shim`); empty means the running binary.
	Exe string
	Log *slog.Logger
	// LogLevel is passed on to supervisors.
	LogLevel string
	// Bridge is where pods without a network of their own go; the zero
	// value means host.DefaultBridge.
	Bridge host.Bridge
}

func (r *Runtime) bridge() host.Bridge {
	if r.Bridge.Name == "" {
		return host.DefaultBridge
	}
	return r.Bridge
}

// NewID returns a new pod ID.
func NewID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (r *Runtime) podsDir() string { return filepath.Join(r.DataDir, "cradle", "pods") }

// Paths returns the layout of pod id.
func (r *Runtime) Paths(id string) shim.Paths { return shim.NewPaths(r.DataDir, r.RunDir, id) }

// CreateOptions choose how a pod runs.
type CreateOptions struct {
	// Accel is auto, kvm or tcg.
	Accel string
	// Detach starts the containers at once and keeps the pod after it
	// exits (until Remove). Otherwise the containers wait for StartPod,
	// so that a client can attach first, and the pod removes itself
	// once it has exited.
	Detach bool
	// Hold, with Detach, leaves the containers for StartPod: a client
	// that attaches first starts them.
	Hold bool
}

// Pod is a pod as found on disk.
type Pod struct {
	Paths  shim.Paths
	Launch spec.Launch
	State  spec.PodState
}

// Client returns a client of the pod's supervisor.
func (p *Pod) Client() *shim.Client { return &shim.Client{Socket: p.Paths.Socket()} }

// Create starts a pod from a launch spec. It returns once the VM is up
// (and, detached, its containers are started), or with the reason it could
// not be; a pod that fails to start leaves nothing behind.
func (r *Runtime) Create(ctx context.Context, l *spec.Launch, o CreateOptions) (*Pod, *exec.Cmd, error) {
	if err := l.Validate(); err != nil {
		return nil, nil, errdefs.InvalidArgument("%v", err)
	}
	paths := r.Paths(l.ID)
	if err := paths.CheckSockets(); err != nil {
		return nil, nil, errdefs.InvalidArgument("%v", err)
	}
	assets, err := host.FindAssets()
	if err != nil {
		return nil, nil, err
	}
	accel, err := host.ResolveAccel(ctx, o.Accel, assets, filepath.Join(r.DataDir, "cradle"))
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(r.podsDir(), 0o755); err != nil {
		return nil, nil, err
	}
	unlock, err := r.lock()
	if err != nil {
		return nil, nil, err
	}
	if l.Name != "" {
		if other, err := r.Find(l.Name); err == nil && other.Launch.Name == l.Name {
			unlock()
			return nil, nil, errdefs.Conflict("the pod name %q is already in use by pod %s", l.Name, other.Launch.ID[:12])
		}
	}
	if err := os.Mkdir(paths.Dir, 0o755); err != nil {
		unlock()
		if errors.Is(err, os.ErrExist) {
			return nil, nil, errdefs.AlreadyExists("pod %s already exists", l.ID)
		}
		return nil, nil, err
	}
	b, _ := json.MarshalIndent(l, "", "  ")
	err = atomicfile.WriteFile(paths.Spec(), b, 0o644)
	unlock()
	if err != nil {
		os.RemoveAll(paths.Dir)
		return nil, nil, err
	}
	cmd, err := r.spawnShim(ctx, paths, assets, accel, o)
	if err != nil {
		os.RemoveAll(paths.Dir)
		return nil, nil, err
	}
	p, err := r.load(paths)
	if err != nil {
		return nil, cmd, err
	}
	return p, cmd, nil
}

// spawnShim starts the pod's supervisor as a process of its own session
// and waits for it to report the pod up.
func (r *Runtime) spawnShim(ctx context.Context, paths shim.Paths, a host.Assets, accel string, o CreateOptions) (*exec.Cmd, error) {
	exe := r.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	args := []string{"--log-level", r.LogLevel, "cradle", "shim",
		"--data-dir", r.DataDir, "--run-dir", r.RunDir, "--id", paths.ID,
		"--accel", accel, "--kernel", a.Kernel, "--initrd", a.Initrd, "--qemu", a.QEMU}
	if o.Detach {
		if !o.Hold {
			args = append(args, "--autostart")
		}
	} else {
		args = append(args, "--autoremove")
	}
	logf, err := os.OpenFile(paths.ShimLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{readyW}
	// A session of its own: the terminal's signals and hangups are the
	// CLI's, not the pod's.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return nil, fmt.Errorf("start pod supervisor: %w", err)
	}
	readyW.Close()

	msgc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(readyR)
		msgc <- b
	}()
	var b []byte
	select {
	case b = <-msgc:
	case <-ctx.Done():
		// Whoever gave up on the start has nobody to hand the pod to.
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		return nil, ctx.Err()
	}
	var m shim.ReadyMessage
	if len(b) == 0 || json.Unmarshal(b, &m) != nil {
		cmd.Wait()
		return nil, fmt.Errorf("pod supervisor exited during start: %s", tail(paths.ShimLog()))
	}
	if m.Error != "" {
		cmd.Wait()
		return nil, errors.New(m.Error)
	}
	return cmd, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if s == "" {
		return "no output"
	}
	return s
}

// lock serialises creations, so two pods cannot take one name.
func (r *Runtime) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(r.DataDir, "cradle", "pods.lock"), os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// load reads a pod's spec and state. A pod whose state says it runs but
// whose supervisor is gone is reported dead.
func (r *Runtime) load(paths shim.Paths) (*Pod, error) {
	b, err := os.ReadFile(paths.Spec())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.NotFound("no such pod: %s", paths.ID)
		}
		return nil, err
	}
	p := &Pod{Paths: paths}
	if err := json.Unmarshal(b, &p.Launch); err != nil {
		return nil, fmt.Errorf("pod %s: corrupt spec: %w", paths.ID, err)
	}
	if b, err := os.ReadFile(paths.State()); err == nil {
		json.Unmarshal(b, &p.State)
	}
	if p.State.ID == "" {
		p.State = spec.PodState{ID: p.Launch.ID, Name: p.Launch.Name, Status: spec.StatusCreated}
	}
	if p.State.Status != spec.StatusExited && !alive(p.State.ShimPID) {
		p.State.Status = spec.StatusDead
	}
	return p, nil
}

// alive reports whether pid is a running process.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// A zombie (an exited shim its starter has not reaped) is not alive.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// waitExit waits for a process that is not our child to exit.
func waitExit(pid int, timeout time.Duration) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone already
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	unix.Poll(fds, int(timeout/time.Millisecond))
}

// List returns every pod, newest first.
func (r *Runtime) List() ([]*Pod, error) {
	ents, err := os.ReadDir(r.podsDir())
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []*Pod
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		p, err := r.load(r.Paths(e.Name()))
		if err != nil {
			// A pod half made or half removed by someone else right now.
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].State.CreatedAt.After(out[j].State.CreatedAt) })
	return out, nil
}

// Get returns the pod of ID id.
func (r *Runtime) Get(id string) (*Pod, error) { return r.load(r.Paths(id)) }

// Find returns a pod by ID, unique ID prefix, or name.
func (r *Runtime) Find(ref string) (*Pod, error) {
	if ref == "" {
		return nil, errdefs.InvalidArgument("no pod given")
	}
	pods, err := r.List()
	if err != nil {
		return nil, err
	}
	for _, p := range pods {
		if p.Launch.ID == ref || p.Launch.Name == ref {
			return p, nil
		}
	}
	var match *Pod
	for _, p := range pods {
		if strings.HasPrefix(p.Launch.ID, ref) {
			if match != nil {
				return nil, errdefs.InvalidArgument("pod id prefix %q is ambiguous", ref)
			}
			match = p
		}
	}
	if match == nil {
		return nil, errdefs.NotFound("no such pod: %s", ref)
	}
	return match, nil
}

// Stop stops a running pod; stopping a pod that is not running is a no-op.
func (r *Runtime) Stop(p *Pod, timeout time.Duration) error {
	if p.State.Status == spec.StatusExited || p.State.Status == spec.StatusDead {
		return nil
	}
	err := p.Client().Stop(timeout)
	if errors.Is(err, shim.ErrGone) {
		return nil
	}
	return err
}

// Remove deletes a pod that is not running; with force a running pod is
// killed first.
func (r *Runtime) Remove(p *Pod, force bool) error {
	if p.State.Status == spec.StatusRunning || p.State.Status == spec.StatusCreated {
		if !force {
			return errdefs.Conflict("pod %s is running: stop it first, or remove it with -f", p.Launch.ID[:12])
		}
		if err := r.Stop(p, 0); err != nil {
			return fmt.Errorf("stop pod %s: %w", p.Launch.ID[:12], err)
		}
		// The supervisor answers just before it exits; wait for it to
		// let go of the pod's files.
		waitExit(p.State.ShimPID, 10*time.Second)
	}
	// A dead pod's QEMU went with its supervisor; its sockets did not.
	os.Remove(p.Paths.Socket())
	os.Remove(p.Paths.Control())
	if err := os.RemoveAll(p.Paths.Dir); err != nil {
		return fmt.Errorf("remove pod %s: %w", p.Launch.ID[:12], err)
	}
	return nil
}

// ipam is the address book of the default bridge.
func (r *Runtime) ipam() *host.IPAM {
	return &host.IPAM{
		Path:   filepath.Join(r.DataDir, "cradle", "ipam.json"),
		Bridge: r.bridge(),
		Alive: func(id string) bool {
			_, err := os.Stat(r.Paths(id).Dir)
			return err == nil
		},
	}
}

// DefaultNetwork sets pod id up on the default bridge, with NAT to the
// host's network: it makes sure the bridge exists and leases an address.
func (r *Runtime) DefaultNetwork(id string) (*spec.Network, error) {
	br := r.bridge()
	if err := br.Ensure(); err != nil {
		return nil, err
	}
	ip, err := r.ipam().Allocate(id)
	if err != nil {
		return nil, err
	}
	return &spec.Network{
		Interfaces: []spec.Interface{{
			Name:    "eth0",
			MAC:     host.MACFor(ip),
			Address: fmt.Sprintf("%s/%d", ip, br.Subnet.Bits()),
			Gateway: br.Gateway.String(),
			Bridge:  br.Name,
		}},
		DNS: host.HostDNS(),
	}, nil
}

// ReleaseNetwork returns pod id's address.
func (r *Runtime) ReleaseNetwork(id string) {
	if err := r.ipam().Release(id); err != nil && r.Log != nil {
		r.Log.Warn("release address", "pod", id[:12], "err", err)
	}
}

// Start creates a detached pod for a caller that manages it afterwards by
// ID (the node agent), and reaps its supervisor when that exits. With
// hold, its containers wait for StartPod.
func (r *Runtime) Start(ctx context.Context, l *spec.Launch, accel string, hold bool) error {
	_, cmd, err := r.Create(ctx, l, CreateOptions{Accel: accel, Detach: true, Hold: hold})
	if err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}

// Wait blocks until pod id has exited (or ctx ends) and returns its final
// state. A pod whose supervisor is gone without a record is reported
// dead.
func (r *Runtime) Wait(ctx context.Context, id string) (*spec.PodState, error) {
	p, err := r.load(r.Paths(id))
	if err != nil {
		return nil, err
	}
	if p.State.Status == spec.StatusExited || p.State.Status == spec.StatusDead {
		return &p.State, nil
	}
	type result struct {
		st  *spec.PodState
		err error
	}
	ch := make(chan result, 1)
	go func() {
		st, err := p.Client().Wait()
		ch <- result{st, err}
	}()
	select {
	case res := <-ch:
		if errors.Is(res.err, shim.ErrGone) || (res.err != nil && !alive(p.State.ShimPID)) {
			// Gone between the load and the call: read what it left.
			if p, err := r.load(r.Paths(id)); err == nil {
				return &p.State, nil
			}
		}
		return res.st, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// StartPod starts the containers of pod id, started with hold.
func (r *Runtime) StartPod(id string) error {
	p, err := r.load(r.Paths(id))
	if err != nil {
		return err
	}
	return p.Client().StartPod()
}

// Client reaches the supervisor of pod id.
func (r *Runtime) Client(id string) (*shim.Client, error) {
	p, err := r.load(r.Paths(id))
	if err != nil {
		return nil, err
	}
	return p.Client(), nil
}

// StopPod stops pod id within timeout.
func (r *Runtime) StopPod(id string, timeout time.Duration) error {
	p, err := r.load(r.Paths(id))
	if err != nil {
		return err
	}
	return r.Stop(p, timeout)
}

// RemovePod removes pod id, stopping it first if it runs, and frees its
// address.
func (r *Runtime) RemovePod(id string) error {
	p, err := r.load(r.Paths(id))
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	if err := r.Remove(p, true); err != nil {
		return err
	}
	r.ReleaseNetwork(id)
	return nil
}

// PodsUsingImage lists the pods (in any state) made from image id, the
// config digest.
func (r *Runtime) PodsUsingImage(id string) []string {
	pods, _ := r.List()
	var out []string
	for _, p := range pods {
		if p.Launch.Labels["hearth.image.id"] == id {
			out = append(out, p.Launch.ID)
		}
	}
	return out
}

// LayersInUse is the set of layer digests existing pods use.
func (r *Runtime) LayersInUse() map[string]bool {
	pods, _ := r.List()
	keep := map[string]bool{}
	for _, p := range pods {
		for _, l := range p.Launch.Layers {
			keep[l.Digest] = true
		}
	}
	return keep
}

// Probe runs args in a container of pod id as an exec with the container's
// own environment, user and working directory, as a healthcheck does, and
// returns its exit code and up to limit bytes of its combined output. When
// ctx ends first, the process is killed and ctx's error returned.
func (r *Runtime) Probe(ctx context.Context, id, container string, args []string, limit int) (int, string, error) {
	p, err := r.load(r.Paths(id))
	if err != nil {
		return 0, "", err
	}
	var proc *spec.Process
	for i, c := range p.Launch.Containers {
		if c.Name == container || (container == "" && i == 0) {
			proc = &spec.Process{Args: args, Env: c.Process.Env, Cwd: c.Process.Cwd, User: c.Process.User}
			container = c.Name
			break
		}
	}
	if proc == nil {
		return 0, "", errdefs.NotFound("no container %q in pod %s", container, id)
	}
	st, err := p.Client().Exec(container, *proc, nil)
	if err != nil {
		return 0, "", err
	}
	defer st.Close()
	out := &limitedBuffer{max: limit}
	type result struct {
		es  *spec.ExitStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		es, err := st.Relay(nil, out, out)
		done <- result{es, err}
	}()
	select {
	case res := <-done:
		if res.err != nil {
			return 0, "", res.err
		}
		msg := out.String()
		if res.es.Error != "" {
			msg = res.es.Error
		}
		return res.es.Code, msg, nil
	case <-ctx.Done():
		st.Signal(syscall.SIGKILL)
		return 0, "", ctx.Err()
	}
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
