// Package agent is the node agent: it keeps the node registered and its
// etcd lease alive (its heartbeat), watches the pods bound to its node,
// runs them through a VMM (cradle), reports their status transitions, and
// applies their restart policies with backoff.
//
// It keeps no state of its own that matters: when the agent restarts it
// finds its pods' VMs again by the labels on their launch specs, and adopts
// them, so restarting hearth never stops a pod.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Labels the agent puts on the VMs it starts.
const (
	LabelPodKey = "hearth.pod"     // tenant/name
	LabelPodUID = "hearth.pod.uid" // the pod object's UID
)

// VM is one pod VM on this node, as the VMM lists it.
type VM struct {
	ID      string
	Labels  map[string]string
	Running bool
	// NetNS is the network namespace of the VM's NICs ("" the host's).
	NetNS string
}

// VMM runs VMs on this node. The agent declares what it needs; cradle
// provides it, and a fake stands in for control-plane tests at scale.
type VMM interface {
	// Start boots a VM; with hold, its containers wait for StartPod.
	Start(ctx context.Context, l *spec.Launch, hold bool) error
	StartPod(id string) error
	Wait(ctx context.Context, id string) (*spec.PodState, error)
	Stop(id string, timeout time.Duration) error
	Remove(id string) error
	List() ([]VM, error)
	// Forget drops what the node keeps of a pod across its VMs (its
	// logs) once the pod has left the node; Sweep does so for every pod
	// but those in keep.
	Forget(podUID string) error
	Sweep(keep map[string]bool) error
	// Probe runs args in the first container of VM id, with its
	// environment, and returns the exit code and up to limit bytes of
	// output (healthchecks).
	Probe(ctx context.Context, id string, args []string, limit int) (int, string, error)
}

// Publisher opens a pod's published ports on the node, forwarding to the
// pod's address, and closes them (network/proxy).
type Publisher interface {
	// Publish replaces what pod key had published; it returns the ports
	// as bound, host ports chosen.
	// ip is the pod's address in network namespace netns ("" the
	// host's).
	Publish(key, netns, ip string, ports []model.Port) ([]model.Port, error)
	Unpublish(key string)
}

// Builder turns a pod into a launch spec with the given VM ID: images,
// layers, network, volumes.
type Builder func(ctx context.Context, p *model.Pod, vmID string) (*spec.Launch, error)

func (a *Agent) holdTimeout() time.Duration {
	if a.HoldTimeout > 0 {
		return a.HoldTimeout
	}
	return 30 * time.Second
}

// LeaseKey is where a node's heartbeat lease lives.
func LeaseKey(node string) string { return store.Prefix + "leases/" + node }

// Agent is one node's agent.
type Agent struct {
	Node     string
	Role     string
	Address  string
	Labels   map[string]string
	Capacity model.Resources
	Accel    string
	LeaseTTL time.Duration
	// HoldTimeout is how long a VM booted for a frontend that holds its
	// start waits before the agent starts it (default 30 s).
	HoldTimeout time.Duration

	Store *store.Store
	VMM   VMM
	Build Builder
	// NewID makes VM IDs.
	NewID func() string
	// SyncNetworks brings a running pod's NICs in line with its
	// attachments; nil leaves them as the pod started.
	SyncNetworks func(ctx context.Context, p *model.Pod, vm string) error
	// OnVMStart observes how long a pod's VM took to start.
	OnVMStart func(time.Duration)
	// Ports publishes pods' ports on this node; nil publishes none.
	Ports Publisher
	Log   *slog.Logger

	mu      sync.Mutex
	workers map[string]*worker // by pod key
	adopt   map[string]VM      // by pod UID: VMs found at start
}

// Run registers the node and serves its pods until ctx ends. It stops no
// pod when it returns.
func (a *Agent) Run(ctx context.Context) error {
	a.workers = map[string]*worker{}
	if err := a.register(ctx); err != nil {
		return err
	}
	vms, err := a.VMM.List()
	if err != nil {
		return fmt.Errorf("list VMs: %w", err)
	}
	a.adopt = map[string]VM{}
	for _, vm := range vms {
		if uid := vm.Labels[LabelPodUID]; uid != "" {
			a.adopt[uid] = vm
		}
	}
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() { defer wg.Done(); errc <- a.heartbeat(ctx) }()
	go func() {
		defer wg.Done()
		a.watch(ctx)
	}()
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// watch follows the pods and hands each change to its worker.
func (a *Agent) watch(ctx context.Context) {
	store.Watch[model.Pod](ctx, a.Store, model.KindPod, func(ev store.Event[*model.Pod], initial bool) {
		if ev.Object == nil {
			if !initial {
				// The first list is complete: VMs no pod claims are
				// leftovers of pods deleted while we were away.
				a.reapOrphans()
			}
			return
		}
		a.dispatch(ctx, ev)
	})
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// register creates or refreshes the node object.
func (a *Agent) register(ctx context.Context) error {
	n := &model.Node{
		Meta: model.Meta{Kind: model.KindNode, Name: a.Node, Labels: a.Labels},
		Spec: model.NodeSpec{Role: a.Role, Address: a.Address, Capacity: a.Capacity},
		Status: model.NodeStatus{
			State: model.NodeReady, Accel: a.Accel, Heartbeat: time.Now().UTC(),
		},
	}
	err := a.Store.Create(ctx, n)
	if errdefs.IsAlreadyExists(err) {
		_, err = store.Modify[model.Node](ctx, a.Store, model.KindNode, "", a.Node, func(old *model.Node) (bool, error) {
			old.Labels = a.Labels
			unschedulable := old.Spec.Unschedulable
			old.Spec = n.Spec
			old.Spec.Unschedulable = unschedulable
			old.Status.Accel = a.Accel
			old.Status.Heartbeat = time.Now().UTC()
			return true, nil
		})
	}
	if err != nil {
		return fmt.Errorf("register node %s: %w", a.Node, err)
	}
	return nil
}

// heartbeat keeps the node's lease alive. etcd streams the keepalives, so
// an idle node costs no polling; when the lease is lost (a partition
// longer than its TTL), a new one is taken.
func (a *Agent) heartbeat(ctx context.Context) error {
	cli := a.Store.Client()
	ttl := int64(a.LeaseTTL / time.Second)
	if ttl < 1 {
		ttl = 1
	}
	for ctx.Err() == nil {
		lease, err := cli.Grant(ctx, ttl)
		if err != nil {
			a.Log.Warn("grant lease", "node", a.Node, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		if _, err := cli.Put(ctx, LeaseKey(a.Node), a.Node, clientv3.WithLease(lease.ID)); err != nil {
			a.Log.Warn("put lease", "node", a.Node, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		ka, err := cli.KeepAlive(ctx, lease.ID)
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		for range ka {
		}
		if ctx.Err() == nil {
			a.Log.Warn("lease lost; taking a new one", "node", a.Node)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// dispatch hands a pod change to the pod's worker, starting one for a pod
// bound to this node.
func (a *Agent) dispatch(ctx context.Context, ev store.Event[*model.Pod]) {
	p := ev.Object
	a.mu.Lock()
	w := a.workers[ev.Key]
	mine := ev.Type == store.Put && p.Spec.NodeName == a.Node
	if w == nil && mine {
		w = newWorker(a, p.Tenant+"/"+p.Name)
		a.workers[ev.Key] = w
		go func() {
			w.run(ctx)
			a.mu.Lock()
			if a.workers[ev.Key] == w {
				delete(a.workers, ev.Key)
			}
			a.mu.Unlock()
		}()
	}
	a.mu.Unlock()
	if w == nil {
		return
	}
	if ev.Type == store.Deleted {
		w.update(nil)
		return
	}
	w.update(p)
}

// claim hands a worker the VM found at start for its pod, once.
func (a *Agent) claim(uid string) (VM, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	vm, ok := a.adopt[uid]
	if ok {
		delete(a.adopt, uid)
	}
	return vm, ok
}

// reapOrphans removes VMs, and logs, of pods that no longer exist here.
func (a *Agent) reapOrphans() {
	a.mu.Lock()
	keep := map[string]bool{}
	for _, w := range a.workers {
		keep[w.uid()] = true
	}
	var orphans []VM
	for uid, vm := range a.adopt {
		claimed := false
		for _, w := range a.workers {
			if w.uid() == uid {
				claimed = true
			}
		}
		if !claimed {
			orphans = append(orphans, vm)
			delete(a.adopt, uid)
		}
	}
	a.mu.Unlock()
	for _, vm := range orphans {
		a.Log.Info("removing the VM of a pod that is gone", "vm", short(vm.ID), "pod", vm.Labels[LabelPodKey])
		if err := a.VMM.Remove(vm.ID); err != nil {
			a.Log.Warn("remove orphan VM", "vm", short(vm.ID), "err", err)
		}
	}
	if err := a.VMM.Sweep(keep); err != nil {
		a.Log.Warn("sweep logs of gone pods", "err", err)
	}
}
