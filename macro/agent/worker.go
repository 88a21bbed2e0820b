package agent

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
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
}

type exit struct {
	vm    string
	state *spec.PodState
	err   error
}

func newWorker(a *Agent, key string) *worker {
	return &worker{a: a, key: key, wake: make(chan struct{}, 1), exits: make(chan exit, 1)}
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
			timerC = nil
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
		if !w.restartAt.IsZero() && timerC == nil && !w.running {
			d := time.Until(w.restartAt)
			if d < 0 {
				d = 0
			}
			timer = time.NewTimer(d)
			timerC = timer.C
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
		return
	}
	// It exited while no agent watched: record that once.
	if p.Status.CradleID == vm.ID && model.Terminal(p.Status.Phase) {
		return
	}
	st, err := w.a.VMM.Wait(ctx, vm.ID)
	w.exited(ctx, exit{vm: vm.ID, state: st, err: err})
}

// reconcile moves the pod towards its spec; it reports true when the pod
// has left this node (its VM removed).
func (w *worker) reconcile(ctx context.Context, p *model.Pod) bool {
	if p == nil || p.Spec.NodeName != w.a.Node {
		// Deleted, or rescheduled elsewhere while this node was away: a
		// duplicate must not run on.
		if w.vm != "" {
			timeout := 10 * time.Second
			if p != nil && p.Spec.StopTimeout > 0 {
				timeout = time.Duration(p.Spec.StopTimeout) * time.Second
			}
			if w.running {
				w.a.VMM.Stop(w.vm, timeout)
			}
			if err := w.a.VMM.Remove(w.vm); err != nil {
				w.a.Log.Warn("remove VM", "pod", w.key, "err", err)
			}
		}
		return true
	}
	if p.Spec.Desired == model.DesiredStopped {
		w.restartAt = time.Time{}
		if w.running {
			timeout := 10 * time.Second
			if p.Spec.StopTimeout > 0 {
				timeout = time.Duration(p.Spec.StopTimeout) * time.Second
			}
			// The exit arrives through wait.
			go w.a.VMM.Stop(w.vm, timeout)
		}
		return false
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
		w.start(ctx, p)
	case p.Status.Phase == model.PhaseStarting && w.vm == "":
		// Started by an agent that died before it got the VM going.
		w.start(ctx, p)
	case !w.restartAt.IsZero() && !time.Now().Before(w.restartAt):
		w.restartAt = time.Time{}
		w.start(ctx, p)
	case model.Terminal(p.Status.Phase) && p.Generation > w.exitGen && w.exitGen > 0:
		// Its spec changed since it ended (a start after a stop).
		w.restartAt = time.Time{}
		w.failures = 0
		w.start(ctx, p)
	}
	return false
}

// start launches a new VM for the pod, replacing an exited one.
func (w *worker) start(ctx context.Context, p *model.Pod) {
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
	}) {
		return
	}
	l, err := w.a.Build(ctx, p, id)
	if err == nil {
		err = w.a.VMM.Start(ctx, l)
	}
	if err != nil {
		w.a.Log.Warn("pod failed to start", "pod", w.key, "err", err)
		w.a.VMM.Remove(id)
		failed := model.PodStatus{Phase: model.PhaseFailed, Reason: "StartError", Message: err.Error()}
		w.setStatus(ctx, p, func(s *model.PodStatus) {
			s.Phase, s.Reason, s.Message = failed.Phase, failed.Reason, failed.Message
			s.FinishedAt = time.Now().UTC()
			s.CradleID = ""
		})
		w.planRestart(p, 1, false)
		return
	}
	w.vm, w.running, w.startedAt = id, true, time.Now()
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
		s.StartedAt = time.Now().UTC()
		s.FinishedAt = time.Time{}
		s.ExitCode = 0
		s.Containers = nil
	})
	go w.wait(ctx, id)
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
	w.setStatus(ctx, p, func(s *model.PodStatus) {
		s.Phase, s.Reason, s.Message = phase, reason, msg
		s.ExitCode, s.Containers = code, statuses
		s.FinishedAt = time.Now().UTC()
	})
	if time.Since(w.startedAt) >= backoffReset {
		w.failures = 0
	}
	w.planRestart(p, code, true)
}

// planRestart applies the restart policy to an exit with code.
func (w *worker) planRestart(p *model.Pod, code int, ran bool) {
	if p.Spec.Desired != model.DesiredRunning {
		return
	}
	r := p.Spec.Restart
	restart := false
	switch r.Policy {
	case model.RestartAlways, model.RestartUnlessStopped:
		restart = true
	case model.RestartOnFailure:
		restart = code != 0 && (r.MaxRetries == 0 || p.Status.RestartCount < r.MaxRetries)
	}
	if !restart {
		return
	}
	d := backoffFirst << w.failures
	if d > backoffMax || d <= 0 {
		d = backoffMax
	}
	w.failures++
	w.restartAt = time.Now().Add(d)
	w.a.Log.Info("restarting pod", "pod", w.key, "in", d, "exit", code)
	w.setStatus(context.Background(), p, func(s *model.PodStatus) { s.RestartCount++ })
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
