package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/agent"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

const wait = 15 * time.Second

// fakeVM is one VM of the fake VMM.
type fakeVM struct {
	id      string
	labels  map[string]string
	exited  chan struct{}
	once    sync.Once
	code    int
	lost    bool // Wait fails instead of reporting an exit
	removed bool
}

// fakeVMM runs VMs in memory: a VM "runs" until the test (or Stop, or
// Remove) closes its exit channel.
type fakeVMM struct {
	mu      sync.Mutex
	vms     map[string]*fakeVM
	starts  []string // VM IDs in the order started
	stops   []string
	removes []string
	waits   []string
	calls   []string // every call, as "start <id>", "stop <id>"...
	held    map[string]bool
	forgot  []string
	// probe answers healthchecks; nil passes them.
	probe func(id string, args []string) (int, string, error)
}

func newFakeVMM() *fakeVMM { return &fakeVMM{vms: map[string]*fakeVM{}} }

func (f *fakeVMM) Start(ctx context.Context, l *spec.Launch, hold bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.vms[l.ID]; ok {
		return errdefs.AlreadyExists("VM %s exists", l.ID)
	}
	if hold {
		if f.held == nil {
			f.held = map[string]bool{}
		}
		f.held[l.ID] = true
	}
	f.vms[l.ID] = &fakeVM{id: l.ID, labels: maps(l.Labels), exited: make(chan struct{})}
	f.starts = append(f.starts, l.ID)
	f.calls = append(f.calls, "start "+l.ID)
	return nil
}

func (f *fakeVMM) StartPod(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "start-pod "+id)
	delete(f.held, id)
	return nil
}

func (f *fakeVMM) isHeld(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held[id]
}

func (f *fakeVMM) Forget(uid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgot = append(f.forgot, uid)
	return nil
}

func (f *fakeVMM) Sweep(keep map[string]bool) error { return nil }

func (f *fakeVMM) Probe(ctx context.Context, id string, args []string, limit int) (int, string, error) {
	f.mu.Lock()
	probe := f.probe
	f.mu.Unlock()
	if probe == nil {
		return 0, "", nil
	}
	return probe(id, args)
}

func maps(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (f *fakeVMM) Wait(ctx context.Context, id string) (*spec.PodState, error) {
	f.mu.Lock()
	vm := f.vms[id]
	f.waits = append(f.waits, id)
	f.calls = append(f.calls, "wait "+id)
	f.mu.Unlock()
	if vm == nil {
		return nil, errdefs.NotFound("no VM %s", id)
	}
	select {
	case <-vm.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm.lost {
		return nil, errors.New("supervisor gone")
	}
	return &spec.PodState{ID: id, Status: spec.StatusExited, Containers: []spec.ContainerState{
		{Name: "c0", Status: spec.StatusExited, Exit: &spec.ExitStatus{Code: vm.code}},
	}}, nil
}

// exit makes VM id exit with code.
func (f *fakeVMM) exit(id string, code int) {
	f.mu.Lock()
	vm := f.vms[id]
	f.mu.Unlock()
	if vm == nil {
		return
	}
	vm.once.Do(func() {
		f.mu.Lock()
		vm.code = code
		f.mu.Unlock()
		close(vm.exited)
	})
}

// lose makes VM id's Wait fail.
func (f *fakeVMM) lose(id string) {
	f.mu.Lock()
	vm := f.vms[id]
	if vm != nil {
		vm.lost = true
	}
	f.mu.Unlock()
	f.exit(id, 0)
}

func (f *fakeVMM) Stop(id string, timeout time.Duration) error {
	f.mu.Lock()
	f.stops = append(f.stops, id)
	f.calls = append(f.calls, "stop "+id)
	f.mu.Unlock()
	f.exit(id, 137)
	return nil
}

func (f *fakeVMM) Remove(id string) error {
	f.mu.Lock()
	f.removes = append(f.removes, id)
	f.calls = append(f.calls, "remove "+id)
	vm := f.vms[id]
	if vm != nil {
		vm.removed = true
	}
	f.mu.Unlock()
	f.exit(id, 137)
	return nil
}

func (f *fakeVMM) List() ([]agent.VM, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []agent.VM
	for _, vm := range f.vms {
		if vm.removed {
			continue
		}
		running := true
		select {
		case <-vm.exited:
			running = false
		default:
		}
		out = append(out, agent.VM{ID: vm.id, Labels: maps(vm.labels), Running: running})
	}
	return out, nil
}

// add puts a VM that an earlier agent started into the fake.
func (f *fakeVMM) add(id string, labels map[string]string, running bool, code int) {
	vm := &fakeVM{id: id, labels: labels, exited: make(chan struct{}), code: code}
	if !running {
		vm.once.Do(func() { close(vm.exited) })
	}
	f.mu.Lock()
	f.vms[id] = vm
	f.mu.Unlock()
}

func (f *fakeVMM) started() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.starts)
}

func (f *fakeVMM) has(list *[]string, id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(*list, id)
}

func (f *fakeVMM) labels(id string) map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if vm := f.vms[id]; vm != nil {
		return maps(vm.labels)
	}
	return nil
}

func (f *fakeVMM) callLog() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// build is the builder as the agent's real one labels its launches.
func build(ctx context.Context, p *model.Pod, id string) (*spec.Launch, error) {
	if msg := p.Labels["test.build-error"]; msg != "" {
		return nil, errors.New(msg)
	}
	return &spec.Launch{Version: spec.Version, ID: id, Labels: map[string]string{
		agent.LabelPodKey: p.Tenant + "/" + p.Name,
		agent.LabelPodUID: p.UID,
	}, Network: &spec.Network{Interfaces: []spec.Interface{{Address: "10.88.0.9/16"}}}}, nil
}

func newID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// logRecorder keeps the messages an agent logs.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.msgs = append(l.msgs, r.Message)
	l.mu.Unlock()
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

type env struct {
	t *testing.T
	e *testEtcd
	s *store.Store
}

func newEnv(t *testing.T) *env {
	e := startEtcd(t)
	return &env{t: t, e: e, s: store.New(e.Client)}
}

// running is an Agent being run.
type running struct {
	*agent.Agent
	vmm  *fakeVMM
	logs *logRecorder
	stop func()
}

// startAgent runs an agent for node n1 until stop or the end of the test.
func (v *env) startAgent(vmm *fakeVMM, opts ...func(*agent.Agent)) *running {
	v.t.Helper()
	logs := &logRecorder{}
	a := &agent.Agent{
		Node: "n1", Role: model.RoleWorker, Address: "10.0.0.1:7000",
		Labels:   map[string]string{"zone": "east"},
		Capacity: model.Resources{CPUs: 4, MemoryMiB: 4096},
		Accel:    "kvm", LeaseTTL: 2 * time.Second, HoldTimeout: time.Second,
		Store: v.s, VMM: vmm, Build: build, NewID: newID,
		Log: slog.New(logs),
	}
	for _, o := range opts {
		o(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					v.t.Errorf("agent: %v", err)
				}
			case <-time.After(wait):
				v.t.Errorf("agent did not stop")
			}
		})
	}
	v.t.Cleanup(stop)
	return &running{Agent: a, vmm: vmm, logs: logs, stop: stop}
}

func newPod(name, node, policy string) *model.Pod {
	return &model.Pod{
		Meta: model.Meta{Kind: model.KindPod, Tenant: "acme", Name: name},
		Spec: model.PodSpec{
			Containers: []model.Container{{Name: "c0", Image: "busybox"}},
			Resources:  model.Resources{CPUs: 1, MemoryMiB: 128},
			Restart:    model.Restart{Policy: policy},
			Desired:    model.DesiredRunning,
			NodeName:   node,
		},
		Status: model.PodStatus{Phase: model.PhaseScheduled, Node: node},
	}
}

func (v *env) create(p *model.Pod) *model.Pod {
	v.t.Helper()
	if err := v.s.Create(v.t.Context(), p); err != nil {
		v.t.Fatal(err)
	}
	return p
}

func (v *env) modify(name string, fn func(p *model.Pod)) *model.Pod {
	v.t.Helper()
	p, err := store.Modify[model.Pod](v.t.Context(), v.s, model.KindPod, "acme", name, func(p *model.Pod) (bool, error) {
		fn(p)
		return true, nil
	})
	if err != nil {
		v.t.Fatal(err)
	}
	return p
}

func (v *env) pod(name string) *model.Pod {
	v.t.Helper()
	p, err := store.Get[model.Pod](v.t.Context(), v.s, model.KindPod, "acme", name)
	if err != nil {
		v.t.Fatal(err)
	}
	return p
}

// waitPod polls the pod until cond holds, and returns it.
func (v *env) waitPod(name, what string, cond func(p *model.Pod) bool) *model.Pod {
	v.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		p, err := store.Get[model.Pod](v.t.Context(), v.s, model.KindPod, "acme", name)
		if err == nil && cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			if err != nil {
				v.t.Fatalf("pod %s: timed out waiting for %s: %v", name, what, err)
			}
			v.t.Fatalf("pod %s: timed out waiting for %s: status %+v", name, what, p.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStarts waits until the fake has started n VMs, and returns their IDs.
func (v *env) waitStarts(vmm *fakeVMM, n int) []string {
	v.t.Helper()
	eventually(v.t, wait, fmt.Sprintf("%d VM starts", n), func() bool { return len(vmm.started()) >= n })
	return vmm.started()
}

func runningIn(vm string) func(p *model.Pod) bool {
	return func(p *model.Pod) bool {
		return p.Status.Phase == model.PhaseRunning && p.Status.CradleID == vm
	}
}

// barrier deletes the pod and waits for the agent to remove vm: whatever
// the agent decided about the pod before (a restart) is decided by then.
func (v *env) barrier(r *running, name, vm string) {
	v.t.Helper()
	if err := v.s.Delete(v.t.Context(), model.KindPod, "acme", name, 0); err != nil {
		v.t.Fatal(err)
	}
	eventually(v.t, wait, "removal of "+name+"'s VM", func() bool { return r.vmm.has(&r.vmm.removes, vm) })
}

func TestRegister(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	before := time.Now().UTC()
	v.startAgent(newFakeVMM())
	var n *model.Node
	eventually(t, wait, "node n1 registered", func() bool {
		var err error
		n, err = store.Get[model.Node](t.Context(), v.s, model.KindNode, "", "n1")
		return err == nil
	})
	if n.Spec.Capacity != (model.Resources{CPUs: 4, MemoryMiB: 4096}) || n.Spec.Role != model.RoleWorker || n.Spec.Address != "10.0.0.1:7000" || n.Spec.Unschedulable {
		t.Errorf("node spec %+v", n.Spec)
	}
	if n.Labels["zone"] != "east" || n.Status.State != model.NodeReady || n.Status.Accel != "kvm" || n.Status.Heartbeat.Before(before.Add(-time.Second)) {
		t.Errorf("node labels %v status %+v", n.Labels, n.Status)
	}

	// The lease key exists under a lease of the agent's TTL, kept alive.
	var kvLease clientv3.LeaseID
	eventually(t, wait, "lease key", func() bool {
		resp, err := v.e.Client.Get(t.Context(), agent.LeaseKey("n1"))
		if err != nil || len(resp.Kvs) != 1 {
			return false
		}
		kvLease = clientv3.LeaseID(resp.Kvs[0].Lease)
		return string(resp.Kvs[0].Value) == "n1" && kvLease != 0
	})
	if agent.LeaseKey("n1") != store.Prefix+"leases/n1" {
		t.Errorf("lease key %q", agent.LeaseKey("n1"))
	}
	ttl, err := v.e.Client.TimeToLive(t.Context(), kvLease)
	if err != nil || ttl.GrantedTTL != 2 || ttl.TTL <= 0 {
		t.Fatalf("lease TTL: %+v, %v", ttl, err)
	}
	// Kept alive: past twice its TTL, the key is there under the same
	// lease (a lost lease would be replaced by another one).
	end := time.Now().Add(4 * time.Second)
	for time.Now().Before(end) {
		resp, err := v.e.Client.Get(t.Context(), agent.LeaseKey("n1"))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || clientv3.LeaseID(resp.Kvs[0].Lease) != kvLease {
			t.Fatalf("lease key after %v: %v, want it under lease %x", 4*time.Second-time.Until(end), resp.Kvs, kvLease)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestReregisterKeepsDrain(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	old := &model.Node{
		Meta: model.Meta{Kind: model.KindNode, Name: "n1", Labels: map[string]string{"old": "yes"}},
		Spec: model.NodeSpec{Role: model.RoleControl, Capacity: model.Resources{CPUs: 1, MemoryMiB: 512}, Unschedulable: true},
	}
	if err := v.s.Create(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	v.startAgent(newFakeVMM())
	var n *model.Node
	eventually(t, wait, "node n1 re-registered", func() bool {
		var err error
		n, err = store.Get[model.Node](t.Context(), v.s, model.KindNode, "", "n1")
		return err == nil && n.Revision != old.Revision
	})
	if n.Spec.Capacity != (model.Resources{CPUs: 4, MemoryMiB: 4096}) || n.Spec.Role != model.RoleWorker || !n.Spec.Unschedulable {
		t.Errorf("re-registered spec %+v: want the agent's capacity and role, still unschedulable", n.Spec)
	}
	if n.Labels["old"] != "" || n.Labels["zone"] != "east" || n.UID != old.UID || n.Generation != 2 {
		t.Errorf("re-registered node: labels %v uid %s (was %s) generation %d", n.Labels, n.UID, old.UID, n.Generation)
	}
}

func TestStartPod(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	p := v.create(newPod("web", "n1", model.RestartNo))
	vm := v.waitStarts(r.vmm, 1)[0]
	got := v.waitPod("web", "running", runningIn(vm))
	if got.Status.Node != "n1" || got.Status.StartedAt.IsZero() || got.Status.Reason != "" {
		t.Errorf("running pod status %+v", got.Status)
	}
	if l := r.vmm.labels(vm); l[agent.LabelPodKey] != "acme/web" || l[agent.LabelPodUID] != p.UID {
		t.Errorf("VM labels %v", l)
	}
	if got.Generation != p.Generation {
		t.Errorf("status writes changed the generation: %d, was %d", got.Generation, p.Generation)
	}
}

func TestExitNoRestart(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	v.create(newPod("web", "n1", model.RestartNo))
	vm := v.waitStarts(r.vmm, 1)[0]
	v.waitPod("web", "running", runningIn(vm))
	r.vmm.exit(vm, 3)
	p := v.waitPod("web", "exited", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseExited })
	if p.Status.ExitCode != 3 || p.Status.FinishedAt.IsZero() || p.Status.CradleID != vm || p.Status.RestartCount != 0 {
		t.Errorf("exited pod status %+v", p.Status)
	}
	if len(p.Status.Containers) != 1 || p.Status.Containers[0] != (model.ContainerStatus{Name: "c0", State: spec.StatusExited, ExitCode: 3}) {
		t.Errorf("container statuses %+v", p.Status.Containers)
	}
	v.barrier(r, "web", vm)
	if n := len(r.vmm.started()); n != 1 || r.logs.count("restarting pod") != 0 {
		t.Errorf("policy no: %d starts, %d restarts planned", n, r.logs.count("restarting pod"))
	}
}

func TestRestartOnFailure(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	p := newPod("web", "n1", model.RestartOnFailure)
	p.Spec.Restart.MaxRetries = 2
	v.create(p)
	var vm string
	for i := 0; i < 3; i++ {
		vm = v.waitStarts(r.vmm, i+1)[i]
		got := v.waitPod("web", fmt.Sprintf("run %d", i+1), runningIn(vm))
		if got.Status.RestartCount != i {
			t.Errorf("run %d: restart count %d", i+1, got.Status.RestartCount)
		}
		r.vmm.exit(vm, 1)
	}
	p = v.waitPod("web", "exited for good", func(p *model.Pod) bool {
		return p.Status.Phase == model.PhaseExited && p.Status.CradleID == vm
	})
	if p.Status.ExitCode != 1 {
		t.Errorf("exit code %d", p.Status.ExitCode)
	}
	v.barrier(r, "web", vm)
	if n := len(r.vmm.started()); n != 3 || r.logs.count("restarting pod") != 2 {
		t.Errorf("on-failure, 2 retries: %d starts, %d restarts planned", n, r.logs.count("restarting pod"))
	}
	// A restart replaces the VM: the exited ones were removed.
	starts := r.vmm.started()
	for _, id := range starts[:2] {
		if !r.vmm.has(&r.vmm.removes, id) {
			t.Errorf("exited VM %s was not removed on restart", id[:12])
		}
	}
}

func TestRestartOnFailureSuccess(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	v.create(newPod("web", "n1", model.RestartOnFailure))
	vm := v.waitStarts(r.vmm, 1)[0]
	v.waitPod("web", "running", runningIn(vm))
	r.vmm.exit(vm, 0)
	v.waitPod("web", "exited", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseExited })
	v.barrier(r, "web", vm)
	if n := len(r.vmm.started()); n != 1 || r.logs.count("restarting pod") != 0 {
		t.Errorf("on-failure after exit 0: %d starts, %d restarts planned", n, r.logs.count("restarting pod"))
	}
}

func TestRestartAlways(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	v.create(newPod("web", "n1", model.RestartAlways))
	first := v.waitStarts(r.vmm, 1)[0]
	v.waitPod("web", "running", runningIn(first))
	r.vmm.exit(first, 0)
	second := v.waitStarts(r.vmm, 2)[1]
	p := v.waitPod("web", "running again", runningIn(second))
	if p.Status.RestartCount != 1 || p.Status.ExitCode != 0 || !p.Status.FinishedAt.IsZero() {
		t.Errorf("restarted pod status %+v", p.Status)
	}
	if !r.vmm.has(&r.vmm.removes, first) {
		t.Errorf("the exited VM was not removed")
	}
}

func TestDesiredStopped(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	v.create(newPod("web", "n1", model.RestartAlways))
	vm := v.waitStarts(r.vmm, 1)[0]
	v.waitPod("web", "running", runningIn(vm))
	v.modify("web", func(p *model.Pod) { p.Spec.Desired = model.DesiredStopped })
	eventually(t, wait, "stop", func() bool { return r.vmm.has(&r.vmm.stops, vm) })
	p := v.waitPod("web", "exited", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseExited })
	if p.Status.ExitCode != 137 {
		t.Errorf("stopped pod exit code %d", p.Status.ExitCode)
	}
	v.barrier(r, "web", vm)
	if n := len(r.vmm.started()); n != 1 || r.logs.count("restarting pod") != 0 {
		t.Errorf("stopped pod of policy always: %d starts, %d restarts planned", n, r.logs.count("restarting pod"))
	}
}

// A pod stopped through its desired state runs again when it is set back
// to running (docker stop, then docker start).
func TestDesiredRunningAgainAfterStop(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	v.create(newPod("web", "n1", model.RestartNo))
	vm := v.waitStarts(r.vmm, 1)[0]
	v.waitPod("web", "running", runningIn(vm))
	v.modify("web", func(p *model.Pod) { p.Spec.Desired = model.DesiredStopped })
	v.waitPod("web", "exited", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseExited })
	v.modify("web", func(p *model.Pod) { p.Spec.Desired = model.DesiredRunning })
	second := v.waitStarts(r.vmm, 2)[1]
	v.waitPod("web", "running again", runningIn(second))
}

func TestDeletePodStopsAndRemovesVM(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	v.create(newPod("web", "n1", model.RestartAlways))
	vm := v.waitStarts(r.vmm, 1)[0]
	v.waitPod("web", "running", runningIn(vm))
	if err := v.s.Delete(t.Context(), model.KindPod, "acme", "web", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, "VM removed", func() bool { return r.vmm.has(&r.vmm.removes, vm) })
	calls := strings.Join(r.vmm.callLog(), "\n")
	if !strings.Contains(calls, "stop "+vm+"\nremove "+vm) {
		t.Errorf("calls:\n%s\nwant stop then remove of %s", calls, vm)
	}
	if n := len(r.vmm.started()); n != 1 {
		t.Errorf("%d starts", n)
	}
}

// A pod rebound elsewhere (drained, or rescheduled while this node was
// away) must not run on here.
func TestReboundPodStopsHere(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	v.create(newPod("web", "n1", model.RestartAlways))
	vm := v.waitStarts(r.vmm, 1)[0]
	v.waitPod("web", "running", runningIn(vm))
	moved := v.modify("web", func(p *model.Pod) {
		p.Spec.NodeName = "n2"
		p.Status = model.PodStatus{Phase: model.PhaseScheduled, Node: "n2", RestartCount: p.Status.RestartCount}
	})
	eventually(t, wait, "VM removed", func() bool { return r.vmm.has(&r.vmm.stops, vm) && r.vmm.has(&r.vmm.removes, vm) })
	// The agent writes nothing to a pod that is no longer its own.
	if p := v.pod("web"); p.Status.Phase != model.PhaseScheduled || p.Status.Node != "n2" {
		t.Errorf("rebound pod status %+v (written at revision %d, now %d)", p.Status, moved.Revision, p.Revision)
	}
}

func TestPodsOfOtherNodesNotStarted(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	other := v.create(newPod("other", "n2", model.RestartNo))
	pending := newPod("pending", "", model.RestartNo)
	pending.Status = model.PodStatus{Phase: model.PhasePending}
	v.create(pending)
	mine := v.create(newPod("mine", "n1", model.RestartNo))
	vm := v.waitStarts(r.vmm, 1)[0]
	v.waitPod("mine", "running", runningIn(vm))
	if l := r.vmm.labels(vm); l[agent.LabelPodUID] != mine.UID {
		t.Errorf("started VM is of pod %s", l[agent.LabelPodKey])
	}
	if n := len(r.vmm.started()); n != 1 {
		t.Errorf("%d VMs started, want only mine's", n)
	}
	if p := v.pod("other"); p.Revision != other.Revision {
		t.Errorf("pod of n2 was written: %+v", p.Status)
	}
	if p := v.pod("pending"); p.Revision != pending.Revision {
		t.Errorf("pending pod was written: %+v", p.Status)
	}
}

func TestVMLost(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	v.create(newPod("web", "n1", model.RestartNo))
	vm := v.waitStarts(r.vmm, 1)[0]
	v.waitPod("web", "running", runningIn(vm))
	r.vmm.lose(vm)
	p := v.waitPod("web", "failed", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseFailed })
	if p.Status.Reason != "VMLost" || p.Status.ExitCode != 137 || p.Status.Message != "supervisor gone" {
		t.Errorf("lost VM status %+v", p.Status)
	}
}

func TestStartError(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r := v.startAgent(newFakeVMM())
	p := newPod("web", "n1", model.RestartNo)
	p.Labels = map[string]string{"test.build-error": "image busybox not found"}
	v.create(p)
	p = v.waitPod("web", "failed", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseFailed })
	if p.Status.Reason != "StartError" || p.Status.Message != "image busybox not found" || p.Status.CradleID != "" || p.Status.FinishedAt.IsZero() {
		t.Errorf("start error status %+v", p.Status)
	}
	if n := len(r.vmm.started()); n != 0 {
		t.Errorf("%d VMs started", n)
	}
}

func TestAdoptRunningVM(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	r1 := v.startAgent(newFakeVMM())
	p := v.create(newPod("web", "n1", model.RestartNo))
	vm := v.waitStarts(r1.vmm, 1)[0]
	before := v.waitPod("web", "running", runningIn(vm))
	r1.stop()
	if r1.vmm.has(&r1.vmm.stops, vm) || r1.vmm.has(&r1.vmm.removes, vm) {
		t.Fatalf("stopping the agent stopped the pod's VM")
	}

	// The new agent finds the VM in its VMM's list.
	vmm := newFakeVMM()
	vmm.add(vm, map[string]string{agent.LabelPodKey: "acme/web", agent.LabelPodUID: p.UID}, true, 0)
	r2 := v.startAgent(vmm)
	eventually(t, wait, "the adopted VM waited on", func() bool { return vmm.has(&vmm.waits, vm) })
	if n := len(vmm.started()); n != 0 {
		t.Fatalf("the new agent started %d VMs for an adopted pod", n)
	}
	if got := v.pod("web"); got.Status.Phase != model.PhaseRunning || got.Status.CradleID != vm || got.Revision != before.Revision {
		t.Errorf("adopted pod status %+v (revision %d, was %d)", got.Status, got.Revision, before.Revision)
	}
	// The new agent owns it: its exit is recorded.
	vmm.exit(vm, 4)
	got := v.waitPod("web", "exited", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseExited })
	if got.Status.ExitCode != 4 || got.Status.CradleID != vm {
		t.Errorf("adopted pod exit: %+v", got.Status)
	}
	if vmm.has(&vmm.removes, vm) || len(r2.vmm.started()) != 0 {
		t.Errorf("adopted VM removed or replaced: calls %v", vmm.callLog())
	}
}

// A VM that exited while no agent watched has its exit recorded once.
func TestAdoptExitedVM(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	vm := newID()
	p := newPod("web", "n1", model.RestartNo)
	p.Status = model.PodStatus{Phase: model.PhaseRunning, Node: "n1", CradleID: vm}
	v.create(p)
	vmm := newFakeVMM()
	vmm.add(vm, map[string]string{agent.LabelPodKey: "acme/web", agent.LabelPodUID: p.UID}, false, 5)
	r := v.startAgent(vmm)
	got := v.waitPod("web", "exited", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseExited })
	if got.Status.ExitCode != 5 || got.Status.CradleID != vm {
		t.Errorf("exit recorded %+v", got.Status)
	}
	if n := len(r.vmm.started()); n != 0 {
		t.Errorf("%d VMs started", n)
	}
}

// A pod the store says runs here, whose VM is gone when the agent starts
// (the host rebooted), is not running: the agent must say so and apply
// the restart policy.
func TestRunningPodWithoutVM(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	gone := newID()
	p := newPod("web", "n1", model.RestartAlways)
	p.Status = model.PodStatus{Phase: model.PhaseRunning, Node: "n1", CradleID: gone}
	v.create(p)
	r := v.startAgent(newFakeVMM())
	vm := v.waitStarts(r.vmm, 1)[0]
	v.waitPod("web", "running in a new VM", runningIn(vm))
}

func TestReapOrphans(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	kept := v.create(newPod("kept", "n1", model.RestartNo))
	keptVM, gone1, gone2, foreign, reused := newID(), newID(), newID(), newID(), newID()
	vmm := newFakeVMM()
	vmm.add(keptVM, map[string]string{agent.LabelPodKey: "acme/kept", agent.LabelPodUID: kept.UID}, true, 0)
	vmm.add(gone1, map[string]string{agent.LabelPodKey: "acme/gone", agent.LabelPodUID: "0123"}, true, 0)
	vmm.add(gone2, map[string]string{agent.LabelPodKey: "acme/old", agent.LabelPodUID: "4567"}, false, 0)
	vmm.add(foreign, map[string]string{"owner": "someone else"}, true, 0)
	// A pod of the same name as the VM's, but another incarnation.
	v.create(newPod("reused", "n1", model.RestartNo))
	vmm.add(reused, map[string]string{agent.LabelPodKey: "acme/reused", agent.LabelPodUID: "89ab"}, true, 0)

	r := v.startAgent(vmm)
	eventually(t, wait, "orphans removed", func() bool {
		return vmm.has(&vmm.removes, gone1) && vmm.has(&vmm.removes, gone2) && vmm.has(&vmm.removes, reused)
	})
	// Orphans are reaped as the first list ends; a pod created after it is
	// started after that.
	v.create(newPod("later", "n1", model.RestartNo))
	eventually(t, wait, "later started", func() bool {
		for _, id := range r.vmm.started() {
			if vmm.labels(id)[agent.LabelPodKey] == "acme/later" {
				return true
			}
		}
		return false
	})
	if n := len(r.vmm.started()); n != 2 {
		t.Errorf("%d VMs started, want 2 (reused and later)", n)
	}
	if vmm.has(&vmm.removes, keptVM) || vmm.has(&vmm.removes, foreign) {
		t.Errorf("removed a VM that is not an orphan: calls %v", vmm.callLog())
	}
	// The reused name's pod runs in a VM of its own.
	p := v.waitPod("reused", "running", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseRunning })
	if p.Status.CradleID == reused {
		t.Errorf("pod runs in the VM of an earlier incarnation")
	}
}

func TestHoldStart(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	vmm := newFakeVMM()
	r := v.startAgent(vmm)
	p := newPod("held", "n1", model.RestartAlways)
	p.Spec.HoldStart = true
	v.create(p)
	vm := v.waitStarts(vmm, 1)[0]
	v.waitPod("held", "running", runningIn(vm))
	if !vmm.isHeld(vm) {
		t.Fatalf("VM %s was not started held", vm)
	}
	// Nobody starts it: the agent does, after the hold timeout.
	eventually(t, wait, "start of the held pod", func() bool { return !vmm.isHeld(vm) })
	if r.logs.count("starting a held pod nobody started") != 1 {
		t.Errorf("logs: %v", r.logs.msgs)
	}
	// A restart by policy is not held.
	vmm.exit(vm, 1)
	vm2 := v.waitStarts(vmm, 2)[1]
	v.waitPod("held", "running again", runningIn(vm2))
	if vmm.isHeld(vm2) {
		t.Errorf("restart %s was held", vm2)
	}
}

func TestAutoRemove(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	vmm := newFakeVMM()
	v.startAgent(vmm)
	p := newPod("rm", "n1", model.RestartNo)
	p.Spec.AutoRemove = true
	v.create(p)
	uid := p.UID
	vm := v.waitStarts(vmm, 1)[0]
	v.waitPod("rm", "running", runningIn(vm))
	vmm.exit(vm, 3)
	eventually(t, wait, "removal of the pod", func() bool {
		_, err := store.Get[model.Pod](t.Context(), v.s, model.KindPod, "acme", "rm")
		return errdefs.IsNotFound(err)
	})
	eventually(t, wait, "VM removed and logs forgotten", func() bool {
		vmm.mu.Lock()
		defer vmm.mu.Unlock()
		return slices.Contains(vmm.removes, vm) && slices.Contains(vmm.forgot, uid)
	})

	// With a restart policy that restarts, the pod stays.
	q := newPod("rm2", "n1", model.RestartOnFailure)
	q.Spec.AutoRemove = true
	v.create(q)
	vm = v.waitStarts(vmm, 2)[1]
	v.waitPod("rm2", "running", runningIn(vm))
	vmm.exit(vm, 1)
	vm = v.waitStarts(vmm, 3)[2]
	v.waitPod("rm2", "restarted", runningIn(vm))
}

func TestHealthcheck(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	vmm := newFakeVMM()
	var mu sync.Mutex
	pass := false
	vmm.probe = func(id string, args []string) (int, string, error) {
		mu.Lock()
		defer mu.Unlock()
		if strings.Join(args, " ") != "/bin/sh -c test -e /ok" {
			return 2, "wrong command " + strings.Join(args, " "), nil
		}
		if pass {
			return 0, "ok\n", nil
		}
		return 1, "not yet\n", nil
	}
	v.startAgent(vmm)
	p := newPod("hc", "n1", model.RestartNo)
	p.Spec.Containers[0].Healthcheck = &model.Healthcheck{Test: []string{"CMD-SHELL", "test -e /ok"}, Interval: 20 * time.Millisecond, Retries: 2}
	v.create(p)
	vm := v.waitStarts(vmm, 1)[0]
	got := v.waitPod("hc", "unhealthy", func(p *model.Pod) bool {
		return p.Status.Health != nil && p.Status.Health.Status == model.HealthUnhealthy
	})
	if h := got.Status.Health; h.FailingStreak < 2 || len(h.Log) == 0 || h.Log[len(h.Log)-1].Output != "not yet\n" || h.Log[len(h.Log)-1].ExitCode != 1 {
		t.Errorf("unhealthy state %+v", h)
	}
	mu.Lock()
	pass = true
	mu.Unlock()
	got = v.waitPod("hc", "healthy", func(p *model.Pod) bool {
		return p.Status.Health != nil && p.Status.Health.Status == model.HealthHealthy
	})
	if got.Status.Health.FailingStreak != 0 || len(got.Status.Health.Log) > 5 {
		t.Errorf("healthy state %+v", got.Status.Health)
	}
	// The check ends with the VM, and a new run starts over.
	vmm.exit(vm, 0)
	v.waitPod("hc", "exited", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseExited })
}

// TestRestartWhileHeld: a held pod whose command exits before anyone
// started it is restarted by its policy at once, not when the hold ends.
func TestRestartWhileHeld(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	vmm := newFakeVMM()
	v.startAgent(vmm, func(a *agent.Agent) { a.HoldTimeout = time.Hour })
	p := newPod("held", "n1", model.RestartOnFailure)
	p.Spec.HoldStart = true
	v.create(p)
	vm := v.waitStarts(vmm, 1)[0]
	v.waitPod("held", "running", runningIn(vm))
	vmm.StartPod(vm)
	vmm.exit(vm, 1)
	vm2 := v.waitStarts(vmm, 2)[1]
	v.waitPod("held", "restarted", runningIn(vm2))
}

// fakePorts records what the agent publishes; a host port of 0 gets 40000.
type fakePorts struct {
	mu    sync.Mutex
	calls []string
	fail  error
}

func (f *fakePorts) Publish(key, netns, ip string, ports []model.Port) ([]model.Port, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "publish "+key+" "+ip)
	if f.fail != nil {
		return nil, f.fail
	}
	out := append([]model.Port(nil), ports...)
	for i := range out {
		if out[i].HostPort == 0 {
			out[i].HostPort = 40000
		}
	}
	return out, nil
}

func (f *fakePorts) Unpublish(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "unpublish "+key)
}

func (f *fakePorts) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func TestPublishedPorts(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	vmm := newFakeVMM()
	ports := &fakePorts{}
	v.startAgent(vmm, func(a *agent.Agent) { a.Ports = ports })
	p := newPod("web", "n1", model.RestartNo)
	p.Spec.Ports = []model.Port{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {ContainerPort: 53, Protocol: "udp"}}
	v.create(p)
	vm := v.waitStarts(vmm, 1)[0]
	got := v.waitPod("web", "running", runningIn(vm))
	if len(got.Status.Ports) != 2 || got.Status.Ports[0].HostPort != 8080 || got.Status.Ports[1].HostPort != 40000 {
		t.Errorf("status ports %+v", got.Status.Ports)
	}
	if c := ports.log(); len(c) == 0 || c[len(c)-1] != "publish acme/web 10.88.0.9" {
		t.Errorf("publisher calls %v", c)
	}
	vmm.exit(vm, 0)
	got = v.waitPod("web", "exited", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseExited })
	if len(got.Status.Ports) != 0 {
		t.Errorf("an exited pod keeps ports %+v", got.Status.Ports)
	}
	if c := ports.log(); c[len(c)-1] != "unpublish acme/web" {
		t.Errorf("publisher calls after exit %v", c)
	}

	// A port that cannot be bound fails the start, with the reason.
	ports.mu.Lock()
	ports.fail = errdefs.Conflict("Bind for 0.0.0.0:8080 failed: port is already allocated")
	ports.mu.Unlock()
	q := newPod("web2", "n1", model.RestartNo)
	q.Spec.Ports = []model.Port{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}
	v.create(q)
	got = v.waitPod("web2", "failed", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseFailed })
	if !strings.Contains(got.Status.Message, "port is already allocated") {
		t.Errorf("failed pod status %+v", got.Status)
	}
}
