package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
	"github.com/hearth-cloud/hearth/volume"
)

// Restart backoff, as Docker does it: 100 ms, doubling, at most a minute;
// a run of ten seconds or more starts the count again.
const (
	backoffFirst = 100 * time.Millisecond
	backoffMax   = time.Minute
	backoffReset = 10 * time.Second
)

// worker serialises everything about one pod on this node: its changes,
// its VM's exit, its restart timer.
type worker struct {
	a   *Agent
	key string

	mu     sync.Mutex
	latest *model.Pod
	seen   bool
	wake   chan struct{}

	// Owned by run.
	vm        string // the pod's current VM, if any
	running   bool
	startedAt time.Time
	exits     chan exit
	restartAt time.Time
	failures  int
	// exitGen is the pod's generation when its VM last ended: a change of
	// spec after that (a start after a stop) starts it again.
	exitGen int64
	// grace is the stop timeout the pod last asked for.
	grace time.Duration
	// podUID is the pod this worker serves.
	podUID string
	// heldUntil is when the agent starts the containers of a VM booted
	// held, if its frontend has not.
	heldUntil time.Time
	// stopHealth ends the healthcheck of the current VM.
	stopHealth context.CancelFunc
	// synced is the generation the running VM's networks match.
	synced int64
}

type exit struct {
	vm    string
	state *spec.PodState
	err   error
}

func newWorker(a *Agent, key string) *worker {
	return &worker{a: a, key: key, grace: model.DefaultStopTimeout, wake: make(chan struct{}, 1), exits: make(chan exit, 1)}
}

// update records the pod's latest version (nil: deleted) and wakes run.
func (w *worker) update(p *model.Pod) {
	w.mu.Lock()
	// A watch event older than what this worker wrote itself is stale.
	if p == nil || w.latest == nil || p.UID != w.latest.UID || p.Revision > w.latest.Revision {
		w.latest = p
	}
	w.seen = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) uid() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.latest == nil {
		return ""
	}
	return w.latest.UID
}

func (w *worker) pod() *model.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest
}

// run reconciles until the pod is no longer this node's.
func (w *worker) run(ctx context.Context) {
	var timer *time.Timer
	var timerC <-chan time.Time
	var armed time.Time // the deadline timer is set for
	adopted := false
	for {
		select {
		case <-ctx.Done():
			// The agent is stopping; the pod's VM runs on.
			return
		case <-w.wake:
		case ex := <-w.exits:
			w.exited(ctx, ex)
		case <-timerC:
			timer, timerC, armed = nil, nil, time.Time{}
		}
		p := w.pod()
		if !adopted && p != nil {
			adopted = true
			w.adopt(ctx, p)
		}
		if done := w.reconcile(ctx, p); done {
			if timer != nil {
				timer.Stop()
			}
			return
		}
		// One timer, for the nearest deadline: a new one (a restart after
		// an exit) replaces an old one (the end of a hold).
		if next := w.nextDeadline(); !next.Equal(armed) {
			if timer != nil {
				timer.Stop()
			}
			timer, timerC, armed = nil, nil, next
			if !next.IsZero() {
				timer = time.NewTimer(max(time.Until(next), 0))
				timerC = timer.C
			}
		}
	}
}

// adopt takes over the VM an earlier agent started for this pod.
func (w *worker) adopt(ctx context.Context, p *model.Pod) {
	vm, ok := w.a.claim(p.UID)
	if !ok {
		live := p.Status.Phase == model.PhaseRunning || p.Status.Phase == model.PhaseStarting
		if live && p.Status.Node == w.a.Node && p.Spec.NodeName == w.a.Node {
			// It ran here, and its VM is gone (the host rebooted, say):
			// that is its end, and the restart policy decides.
			w.vm = p.Status.CradleID
			w.exited(ctx, exit{vm: w.vm, err: errVMGone})
		}
		return
	}
	w.vm = vm.ID
	if vm.Running {
		w.a.Log.Info("adopted running pod", "pod", w.key, "vm", short(vm.ID))
		w.running = true
		w.startedAt = p.Status.StartedAt
		go w.wait(ctx, vm.ID)
		w.startHealth(ctx, p, vm.ID)
		if p.Status.CradleID == vm.ID && len(p.Status.Ports) > 0 {
			// The ports it had, on the same host ports.
			if _, err := w.publish(vm.NetNS, strings.Split(p.Status.IP, "/")[0], p.Status.Ports); err != nil {
				w.a.Log.Warn("publish ports of an adopted pod", "pod", w.key, "err", err)
			}
		}
		return
	}
	// It exited while no agent watched: record that once.
	if p.Status.CradleID == vm.ID && model.Terminal(p.Status.Phase) {
		return
	}
	st, err := w.a.VMM.Wait(ctx, vm.ID)
	w.exited(ctx, exit{vm: vm.ID, state: st, err: err})
}

// nextDeadline is when run must look at the pod again by itself: a
// restart, or a held VM nobody started.
func (w *worker) nextDeadline() time.Time {
	switch {
	case !w.restartAt.IsZero() && !w.running:
		return w.restartAt
	case !w.heldUntil.IsZero() && w.running:
		return w.heldUntil
	}
	return time.Time{}
}

// reconcile moves the pod towards its spec; it reports true when the pod
// has left this node (its VM removed).
func (w *worker) reconcile(ctx context.Context, p *model.Pod) bool {
	if p != nil {
		// A deleted pod's VM stops with the grace it last asked for.
		w.grace = p.Spec.StopGrace()
		w.podUID = p.UID
	}
	if p == nil || p.Spec.NodeName != w.a.Node {
		// Deleted, or rescheduled elsewhere while this node was away: a
		// duplicate must not run on.
		w.endHealth()
		w.unpublish()
		if w.vm != "" {
			timeout := w.grace
			if p != nil {
				timeout = p.Spec.StopGrace()
			}
			if w.running {
				w.a.VMM.Stop(w.vm, timeout)
			}
			if err := w.a.VMM.Remove(w.vm); err != nil {
				w.a.Log.Warn("remove VM", "pod", w.key, "err", err)
			}
		}
		if w.podUID != "" {
			if err := w.a.VMM.Forget(w.podUID); err != nil {
				w.a.Log.Warn("drop pod logs", "pod", w.key, "err", err)
			}
		}
		return true
	}
	if p.Spec.Desired == model.DesiredStopped {
		if !w.restartAt.IsZero() {
			w.restartAt = time.Time{}
			w.setStatus(ctx, p, func(s *model.PodStatus) { s.Restarting = false })
		}
		if w.running {
			// The exit arrives through wait.
			go w.a.VMM.Stop(w.vm, p.Spec.StopGrace())
		}
		return false
	}
	if w.running && !w.heldUntil.IsZero() && !time.Now().Before(w.heldUntil) {
		// The frontend that held the start went away: start it anyway.
		w.heldUntil = time.Time{}
		w.a.Log.Info("starting a held pod nobody started", "pod", w.key)
		if err := w.a.VMM.StartPod(w.vm); err != nil {
			w.a.Log.Warn("start held pod", "pod", w.key, "err", err)
		}
	}
	if w.running && w.synced < p.Generation && w.a.SyncNetworks != nil {
		err := w.a.SyncNetworks(ctx, p, w.vm)
		if err != nil {
			w.a.Log.Warn("bring the pod's networks in line", "pod", w.key, "err", err)
		}
		w.synced = p.Generation
		w.setStatus(ctx, p, func(s *model.PodStatus) {
			s.NetworksSynced, s.NetworksError = p.Generation, ""
			if err != nil {
				s.NetworksError = err.Error()
			}
		})
	}
	if w.running {
		if p.Status.Phase != model.PhaseRunning || p.Status.CradleID != w.vm {
			// Rebound to this node while its VM ran on (a leader that
			// thought it lost): the VM is the truth.
			w.setStatus(ctx, p, func(s *model.PodStatus) {
				s.Phase, s.Reason, s.Message = model.PhaseRunning, "", ""
				s.Node, s.CradleID = w.a.Node, w.vm
			})
		}
		return false
	}
	switch {
	case p.Status.Phase == model.PhaseScheduled || p.Status.Phase == model.PhasePending:
		w.start(ctx, p, p.Spec.HoldStart)
	case p.Status.Phase == model.PhaseStarting && w.vm == "":
		// Started by an agent that died before it got the VM going.
		w.start(ctx, p, p.Spec.HoldStart)
	case !w.restartAt.IsZero() && !time.Now().Before(w.restartAt):
		w.restartAt = time.Time{}
		w.start(ctx, p, false)
	case model.Terminal(p.Status.Phase) && p.Generation > w.exitGen && w.exitGen > 0:
		// Its spec changed since it ended (a start after a stop).
		w.restartAt = time.Time{}
		w.failures = 0
		w.start(ctx, p, p.Spec.HoldStart)
	}
	return false
}

// start launches a new VM for the pod, replacing an exited one; with hold,
// its containers wait for the frontend (or holdTimeout).
func (w *worker) start(ctx context.Context, p *model.Pod, hold bool) {
	w.endHealth()
	if w.vm != "" {
		if err := w.a.VMM.Remove(w.vm); err != nil {
			w.a.Log.Warn("remove old VM", "pod", w.key, "err", err)
		}
		w.vm = ""
	}
	id := w.a.NewID()
	began := time.Now()
	if !w.setStatus(ctx, p, func(s *model.PodStatus) {
		s.Phase, s.Reason, s.Message = model.PhaseStarting, "", ""
		s.Node, s.CradleID = w.a.Node, id
		s.Restarting = false
	}) {
		return
	}
	l, err := w.a.Build(ctx, p, id)
	var ports []model.Port
	if err == nil {
		// Published before the VM boots: a connection made as soon as
		// the start returns waits in the proxy for the pod to listen.
		ports, err = w.publish(podNetNS(l), podAddress(l), p.Spec.Ports)
	}
	if err == nil {
		err = w.a.VMM.Start(ctx, l, hold)
	}
	if err != nil {
		w.a.Log.Warn("pod failed to start", "pod", w.key, "err", err)
		w.unpublish()
		w.a.VMM.Remove(id)
		failed := model.PodStatus{Phase: model.PhaseFailed, Reason: "StartError", Message: err.Error()}
		restart := w.planRestart(p, 1)
		w.setStatus(ctx, p, func(s *model.PodStatus) {
			s.Phase, s.Reason, s.Message = failed.Phase, failed.Reason, failed.Message
			s.FinishedAt = time.Now().UTC()
			s.ExitCode = 128 // Docker's code for a start that failed outside the command
			s.CradleID = ""
			s.Restarting = restart
			if restart {
				s.RestartCount++
			}
		})
		w.autoRemove(ctx)
		return
	}
	w.vm, w.running, w.startedAt = id, true, time.Now()
	w.synced = p.Generation
	w.heldUntil = time.Time{}
	if hold {
		w.heldUntil = time.Now().Add(w.a.holdTimeout())
	}
	if w.a.OnVMStart != nil {
		w.a.OnVMStart(time.Since(began))
	}
	ip := ""
	if l.Network != nil && len(l.Network.Interfaces) > 0 {
		ip = l.Network.Interfaces[0].Address
	}
	w.setStatus(ctx, p, func(s *model.PodStatus) {
		s.Phase = model.PhaseRunning
		s.IP = ip
		s.Ports = ports
		s.StartedAt = time.Now().UTC()
		s.FinishedAt = time.Time{}
		s.ExitCode = 0
		s.Containers = nil
		s.Health = nil
		s.NetworksSynced, s.NetworksError = p.Generation, ""
	})
	go w.wait(ctx, id)
	w.startHealth(ctx, p, id)
}

// publish opens the pod's ports for ip; none without a publisher.
func (w *worker) publish(netns, ip string, ports []model.Port) ([]model.Port, error) {
	if len(ports) == 0 || w.a.Ports == nil {
		return nil, nil
	}
	return w.a.Ports.Publish(w.key, netns, ip, ports)
}

func (w *worker) unpublish() {
	if w.a.Ports != nil {
		w.a.Ports.Unpublish(w.key)
	}
}

// podNetNS is the network namespace of the pod's NICs.
func podNetNS(l *spec.Launch) string {
	if l.Network == nil {
		return ""
	}
	return l.Network.NetNS
}

// podAddress is the pod's first address, without its prefix length.
func podAddress(l *spec.Launch) string {
	if l.Network == nil || len(l.Network.Interfaces) == 0 {
		return ""
	}
	return strings.Split(l.Network.Interfaces[0].Address, "/")[0]
}

// startHealth runs the pod's healthcheck, if it has one, against VM vm.
func (w *worker) startHealth(ctx context.Context, p *model.Pod, vm string) {
	w.endHealth()
	hc := p.Spec.Containers[0].Healthcheck
	if hc == nil || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
		return
	}
	var seed *model.Health
	if p.Status.CradleID == vm && p.Status.Health != nil {
		seed = p.Status.Health // adopted: go on from where it was
	}
	hctx, cancel := context.WithCancel(ctx)
	w.stopHealth = cancel
	go w.checkHealth(hctx, p, vm, hc, seed)
}

func (w *worker) endHealth() {
	if w.stopHealth != nil {
		w.stopHealth()
		w.stopHealth = nil
	}
}

func (w *worker) wait(ctx context.Context, vm string) {
	st, err := w.a.VMM.Wait(ctx, vm)
	if ctx.Err() != nil {
		return
	}
	w.exits <- exit{vm: vm, state: st, err: err}
}

// exited records a VM's end and decides on a restart.
func (w *worker) exited(ctx context.Context, ex exit) {
	if ex.vm != w.vm {
		return
	}
	w.running = false
	w.endHealth()
	w.unpublish()
	p := w.pod()
	if p == nil {
		return
	}
	w.exitGen = p.Generation
	code, statuses := 0, []model.ContainerStatus(nil)
	phase, reason, msg := model.PhaseExited, "", ""
	if ex.err != nil || ex.state == nil {
		phase, reason = model.PhaseFailed, "VMLost"
		if ex.err != nil {
			msg = ex.err.Error()
		}
		code = 137
	} else {
		if ex.state.Status == spec.StatusDead {
			phase, reason, msg, code = model.PhaseFailed, "VMLost", "the pod's supervisor died", 137
		}
		if ex.state.Error != "" && phase == model.PhaseExited {
			phase, reason, msg = model.PhaseFailed, "StartError", ex.state.Error
		}
		for i, c := range ex.state.Containers {
			cs := model.ContainerStatus{Name: c.Name, State: c.Status}
			if c.Exit != nil {
				cs.ExitCode, cs.OOMKilled, cs.Error = c.Exit.Code, c.Exit.OOMKilled, c.Exit.Error
				if i == 0 {
					code = c.Exit.Code
				}
			}
			statuses = append(statuses, cs)
		}
	}
	if time.Since(w.startedAt) >= backoffReset {
		w.failures = 0
	}
	w.heldUntil = time.Time{}
	restart := w.planRestart(p, code)
	w.setStatus(ctx, p, func(s *model.PodStatus) {
		s.Phase, s.Reason, s.Message = phase, reason, msg
		s.ExitCode, s.Containers = code, statuses
		s.FinishedAt = time.Now().UTC()
		s.Restarting = restart
		if restart {
			s.RestartCount++
		}
		s.Ports = nil
	})
	w.autoRemove(ctx)
}

// autoRemove deletes a pod that asked for it once it has ended for good.
func (w *worker) autoRemove(ctx context.Context) {
	p := w.pod()
	if p == nil || !p.Spec.AutoRemove || !w.restartAt.IsZero() || !model.Terminal(p.Status.Phase) {
		return
	}
	// Conditional on the revision: a start that raced the exit wins.
	if err := w.a.Store.Delete(ctx, model.KindPod, p.Tenant, p.Name, p.Revision); err != nil {
		if !errdefs.IsNotFound(err) {
			w.a.Log.Warn("remove pod after exit", "pod", w.key, "err", err)
		}
		return
	}
	// As Docker's --rm, the pod's anonymous volumes go with it.
	if _, err := volume.RemoveAnonymous(ctx, w.a.Store, p); err != nil {
		w.a.Log.Warn("remove the anonymous volumes of a removed pod", "pod", w.key, "err", err)
	}
}

// planRestart applies the restart policy to an exit with code; it reports
// whether the pod restarts.
func (w *worker) planRestart(p *model.Pod, code int) bool {
	if !p.ShouldRestart(code) {
		return false
	}
	d := backoffFirst << w.failures
	if d > backoffMax || d <= 0 {
		d = backoffMax
	}
	w.failures++
	w.restartAt = time.Now().Add(d)
	w.a.Log.Info("restarting pod", "pod", w.key, "in", d, "exit", code)
	return true
}

// setStatus writes the pod's status; it reports false when the pod is no
// longer there (or no longer this incarnation).
func (w *worker) setStatus(ctx context.Context, p *model.Pod, fn func(*model.PodStatus)) bool {
	updated, err := store.Modify[model.Pod](ctx, w.a.Store, model.KindPod, p.Tenant, p.Name, func(cur *model.Pod) (bool, error) {
		if cur.UID != p.UID || cur.Spec.NodeName != w.a.Node {
			return false, errNotOurs
		}
		fn(&cur.Status)
		return false, nil
	})
	if err != nil {
		if !errors.Is(err, errNotOurs) && !errdefs.IsNotFound(err) {
			w.a.Log.Warn("write pod status", "pod", w.key, "err", err)
		}
		return false
	}
	w.mu.Lock()
	if w.latest != nil && w.latest.UID == updated.UID && updated.Revision > w.latest.Revision {
		w.latest = updated
	}
	w.mu.Unlock()
	return true
}

var (
	errNotOurs = errors.New("pod is no longer this node's")
	errVMGone  = errors.New("the pod's VM is gone")
)
