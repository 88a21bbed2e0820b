package controller_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hearth-cloud/hearth/macro/agent"
	"github.com/hearth-cloud/hearth/macro/controller"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/scheduler"
	"github.com/hearth-cloud/hearth/macro/store"
)

const wait = 15 * time.Second

// manager is a running controller.Manager.
type manager struct {
	*controller.Manager
	binds   atomic.Int64
	leading atomic.Bool
	led     atomic.Bool // it has led at some point
	cancel  context.CancelFunc
	done    chan struct{}
	stopped sync.Once
}

// stop ends the manager and waits for Run to return.
func (m *manager) stop(t *testing.T) {
	t.Helper()
	m.stopped.Do(func() {
		m.cancel()
		select {
		case <-m.done:
		case <-time.After(wait):
			t.Errorf("manager %s did not stop within %v", m.Node, wait)
		}
	})
}

// startManager runs a Manager for node on its own etcd client until the
// test ends.
func startManager(t *testing.T, e *testEtcd, node string) *manager {
	t.Helper()
	return startManagerAt(t, e.URL, node, 2*time.Second)
}

// startManagerAt runs a Manager for node, of lease TTL ttl, on its own
// client of the etcd at url.
func startManagerAt(t *testing.T, url, node string, ttl time.Duration) *manager {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	m := &manager{done: make(chan struct{})}
	m.Manager = &controller.Manager{
		Node: node, Store: store.New(cli), Log: slog.New(slog.DiscardHandler), LeaseTTL: ttl,
		OnBind: func(time.Duration) { m.binds.Add(1) },
		OnLeader: func(b bool) {
			m.leading.Store(b)
			if b {
				m.led.Store(true)
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() {
		defer close(m.done)
		m.Run(ctx)
	}()
	t.Cleanup(func() {
		m.stop(t)
		cli.Close()
	})
	return m
}

type env struct {
	t   *testing.T
	e   *testEtcd
	s   *store.Store
	cli *clientv3.Client
}

func newEnv(t *testing.T) *env {
	e := startEtcd(t)
	return &env{t: t, e: e, s: store.New(e.Client), cli: e.Client}
}

// addNode creates a node object and gives it a live lease, as its agent
// would; it returns the lease.
func (v *env) addNode(name string, cpus, mem int, labels map[string]string) clientv3.LeaseID {
	v.t.Helper()
	ctx := v.t.Context()
	n := &model.Node{
		Meta: model.Meta{Kind: model.KindNode, Name: name, Labels: labels},
		Spec: model.NodeSpec{Role: model.RoleWorker, Capacity: model.Resources{CPUs: cpus, MemoryMiB: mem}},
	}
	if err := v.s.Create(ctx, n); err != nil {
		v.t.Fatal(err)
	}
	return v.lease(name)
}

// lease puts the node's lease key under a new etcd lease.
func (v *env) lease(name string) clientv3.LeaseID {
	v.t.Helper()
	ctx := v.t.Context()
	l, err := v.cli.Grant(ctx, 60)
	if err != nil {
		v.t.Fatal(err)
	}
	if _, err := v.cli.Put(ctx, agent.LeaseKey(name), name, clientv3.WithLease(l.ID)); err != nil {
		v.t.Fatal(err)
	}
	return l.ID
}

func newPod(tenant, name string, cpus, mem int) *model.Pod {
	return &model.Pod{
		Meta: model.Meta{Kind: model.KindPod, Tenant: tenant, Name: name},
		Spec: model.PodSpec{
			Containers: []model.Container{{Name: "c0", Image: "busybox"}},
			Resources:  model.Resources{CPUs: cpus, MemoryMiB: mem},
			Restart:    model.Restart{Policy: model.RestartNo},
			Desired:    model.DesiredRunning,
		},
		Status: model.PodStatus{Phase: model.PhasePending},
	}
}

func (v *env) create(obj model.Object) {
	v.t.Helper()
	if err := v.s.Create(v.t.Context(), obj); err != nil {
		v.t.Fatal(err)
	}
}

func (v *env) pod(tenant, name string) *model.Pod {
	v.t.Helper()
	p, err := store.Get[model.Pod](v.t.Context(), v.s, model.KindPod, tenant, name)
	if err != nil {
		v.t.Fatal(err)
	}
	return p
}

func (v *env) node(name string) *model.Node {
	v.t.Helper()
	n, err := store.Get[model.Node](v.t.Context(), v.s, model.KindNode, "", name)
	if err != nil {
		v.t.Fatal(err)
	}
	return n
}

func (v *env) pods(tenant string) []*model.Pod {
	v.t.Helper()
	pods, _, err := store.List[model.Pod](v.t.Context(), v.s, model.KindPod, tenant)
	if err != nil {
		v.t.Fatal(err)
	}
	return pods
}

// waitPod polls the pod until cond holds, and returns it.
func (v *env) waitPod(tenant, name, what string, cond func(p *model.Pod) bool) *model.Pod {
	v.t.Helper()
	deadline := time.Now().Add(wait)
	for {
		p, err := store.Get[model.Pod](v.t.Context(), v.s, model.KindPod, tenant, name)
		if err == nil && cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			if err != nil {
				v.t.Fatalf("pod %s/%s: timed out waiting for %s: %v", tenant, name, what, err)
			}
			v.t.Fatalf("pod %s/%s: timed out waiting for %s: node %q status %+v", tenant, name, what, p.Spec.NodeName, p.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func bound(node string) func(p *model.Pod) bool {
	return func(p *model.Pod) bool {
		return p.Spec.NodeName == node && p.Status.Phase == model.PhaseScheduled && p.Status.Node == node
	}
}

func TestBindPendingPod(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	m := startManager(t, v.e, "n1")
	v.addNode("small", 1, 256, nil)
	v.addNode("big", 4, 4096, nil)
	// Bigger still, but it has no lease: not ready.
	v.create(&model.Node{Meta: model.Meta{Kind: model.KindNode, Name: "dead"},
		Spec: model.NodeSpec{Capacity: model.Resources{CPUs: 64, MemoryMiB: 65536}}})

	p := newPod("acme", "web", 2, 512)
	v.create(p)
	got := v.waitPod("acme", "web", "bound to big", bound("big"))
	if got.Generation != 2 || got.Status.ScheduledAt.IsZero() || got.UID != p.UID {
		t.Errorf("bound pod: generation %d, scheduledAt %v, uid %s (was %s)", got.Generation, got.Status.ScheduledAt, got.UID, p.UID)
	}
	eventually(t, wait, "OnBind", func() bool { return m.binds.Load() == 1 })
	eventually(t, wait, "node states", func() bool {
		return v.node("big").Status.State == model.NodeReady && v.node("small").Status.State == model.NodeReady
	})

	// Pods that are not pending are left alone.
	stopped := newPod("acme", "stopped", 1, 64)
	stopped.Spec.Desired = model.DesiredStopped
	v.create(stopped)
	exited := newPod("acme", "exited", 1, 64)
	exited.Status.Phase = model.PhaseExited
	v.create(exited)
	// A pod created after them is bound; by then they have been seen.
	v.create(newPod("acme", "later", 1, 64))
	v.waitPod("acme", "later", "bound", func(p *model.Pod) bool { return p.Spec.NodeName != "" })
	for _, before := range []*model.Pod{stopped, exited} {
		if p := v.pod("acme", before.Name); p.Spec.NodeName != "" || p.Revision != before.Revision {
			t.Errorf("pod %s was touched: node %q status %+v", p.Name, p.Spec.NodeName, p.Status)
		}
	}
}

func TestUnschedulableUntilNodeFits(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	startManager(t, v.e, "n1")
	v.addNode("n1", 2, 1024, nil)
	v.create(newPod("acme", "big", 1, 2048))
	const msg = "0/1 nodes are available: 1 insufficient memory"
	p := v.waitPod("acme", "big", "unschedulable", func(p *model.Pod) bool {
		return p.Status.Reason == "Unschedulable" && p.Status.Message == msg
	})
	if p.Spec.NodeName != "" || p.Status.Phase != model.PhasePending {
		t.Fatalf("unschedulable pod: node %q phase %s", p.Spec.NodeName, p.Status.Phase)
	}
	v.addNode("n2", 4, 8192, nil)
	p = v.waitPod("acme", "big", "bound to n2", bound("n2"))
	if p.Status.Reason != "" || p.Status.Message != "" {
		t.Errorf("bound pod keeps reason %q message %q", p.Status.Reason, p.Status.Message)
	}
}

func TestNodeSelectorAndLoad(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	startManager(t, v.e, "n1")
	v.addNode("a", 8, 8192, map[string]string{"zone": "east"})
	v.addNode("b", 8, 8192, map[string]string{"zone": "west"})
	p := newPod("acme", "west", 1, 512)
	p.Spec.NodeSelector = map[string]string{"zone": "west"}
	v.create(p)
	v.waitPod("acme", "west", "bound to b", bound("b"))
	// b now carries a pod: the next one goes to a.
	v.create(newPod("acme", "any", 1, 512))
	v.waitPod("acme", "any", "bound to a", bound("a"))
	p = newPod("acme", "north", 1, 512)
	p.Spec.NodeSelector = map[string]string{"zone": "north"}
	v.create(p)
	v.waitPod("acme", "north", "unschedulable", func(p *model.Pod) bool {
		return p.Status.Message == "0/2 nodes are available: 2 node lacks label zone=north"
	})
}

func svcPodNames(pods []*model.Pod) string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func TestServiceReplicas(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	startManager(t, v.e, "n1")
	v.addNode("n1", 16, 16384, nil)
	svc := &model.Service{
		Meta: model.Meta{Kind: model.KindService, Tenant: "acme", Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: model.ServiceSpec{Replicas: 3, Template: model.PodSpec{
			Containers: []model.Container{{Name: "c0", Image: "nginx:1"}},
			Resources:  model.Resources{CPUs: 1, MemoryMiB: 128},
			Restart:    model.Restart{Policy: model.RestartAlways},
			NodeName:   "ignored",
		}},
	}
	v.create(svc)
	// An unrelated pod of the tenant is not the service's.
	v.create(newPod("acme", "web-9x", 1, 64))

	servicePods := func() []*model.Pod {
		var out []*model.Pod
		for _, p := range v.pods("acme") {
			if p.Labels[scheduler.ServiceLabel] == "web" {
				out = append(out, p)
			}
		}
		return out
	}
	eventually(t, wait, "three replicas", func() bool { return svcPodNames(servicePods()) == "web-1,web-2,web-3" })
	uids := map[string]string{}
	for _, p := range servicePods() {
		i := strings.TrimPrefix(p.Name, "web-")
		want := map[string]string{scheduler.ServiceLabel: "web", controller.LabelServiceIndex: i, controller.LabelServiceGeneration: "1", "app": "web"}
		if fmt.Sprint(p.Labels) != fmt.Sprint(want) {
			t.Errorf("%s labels %v, want %v", p.Name, p.Labels, want)
		}
		if p.Spec.Desired != model.DesiredRunning || p.Spec.Containers[0].Image != "nginx:1" || p.Spec.Restart.Policy != model.RestartAlways {
			t.Errorf("%s spec %+v", p.Name, p.Spec)
		}
		uids[p.Name] = p.UID
	}
	// Every replica gets bound (the template's NodeName is not a binding).
	eventually(t, wait, "replicas bound to n1", func() bool {
		for _, p := range servicePods() {
			if p.Spec.NodeName != "n1" {
				return false
			}
		}
		return true
	})
	eventually(t, wait, "service status", func() bool {
		s, err := store.Get[model.Service](t.Context(), v.s, model.KindService, "acme", "web")
		return err == nil && s.Status.Replicas == 3
	})

	// Scale down: the highest indexes go.
	if _, err := store.Modify[model.Service](t.Context(), v.s, model.KindService, "acme", "web", func(s *model.Service) (bool, error) {
		s.Spec.Replicas = 1
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, "one replica", func() bool { return svcPodNames(servicePods()) == "web-1" })
	if p := v.pod("acme", "web-1"); p.UID != uids["web-1"] {
		t.Errorf("scaling down replaced web-1")
	}

	// A new template replaces the pods.
	if _, err := store.Modify[model.Service](t.Context(), v.s, model.KindService, "acme", "web", func(s *model.Service) (bool, error) {
		s.Spec.Template.Containers[0].Image = "nginx:2"
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	p := v.waitPod("acme", "web-1", "replaced", func(p *model.Pod) bool {
		return p.UID != uids["web-1"] && p.Labels[controller.LabelServiceGeneration] == "2"
	})
	if p.Spec.Containers[0].Image != "nginx:2" {
		t.Errorf("replaced pod runs %s", p.Spec.Containers[0].Image)
	}
	eventually(t, wait, "still one replica", func() bool { return svcPodNames(servicePods()) == "web-1" })

	// Deleting the service deletes its pods, and only those.
	if err := v.s.Delete(t.Context(), model.KindService, "acme", "web", 0); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, "no replicas", func() bool { return len(servicePods()) == 0 })
	v.pod("acme", "web-9x")
}

func TestNodeLost(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	startManager(t, v.e, "n1")
	l1 := v.addNode("n1", 8, 8192, nil)
	v.addNode("n2", 8, 8192, nil)
	v.create(&model.Service{
		Meta: model.Meta{Kind: model.KindService, Tenant: "acme", Name: "svc"},
		Spec: model.ServiceSpec{Replicas: 1, Template: model.PodSpec{
			Containers: []model.Container{{Name: "c0", Image: "nginx"}},
			Resources:  model.Resources{CPUs: 1, MemoryMiB: 128},
			Restart:    model.Restart{Policy: model.RestartNo},
		}},
	})
	// Equal nodes: the name decides.
	v.waitPod("acme", "svc-1", "bound to n1", bound("n1"))

	running := func(name, policy string) *model.Pod {
		p := newPod("acme", name, 1, 256)
		p.Spec.Restart.Policy = policy
		p.Spec.NodeName = "n1"
		p.Status = model.PodStatus{Phase: model.PhaseRunning, Node: "n1", CradleID: "vm-" + name, RestartCount: 2}
		v.create(p)
		return p
	}
	running("always", model.RestartAlways)
	running("unless", model.RestartUnlessStopped)
	running("no", model.RestartNo)
	running("onfail", model.RestartOnFailure)
	local := running("local", model.RestartAlways)
	if _, err := store.Modify[model.Pod](t.Context(), v.s, model.KindPod, "acme", local.Name, func(p *model.Pod) (bool, error) {
		p.Spec.Volumes = []model.Volume{{Name: "data", Type: "volume"}}
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	exited := newPod("acme", "exited", 1, 256)
	exited.Spec.NodeName = "n1"
	exited.Status = model.PodStatus{Phase: model.PhaseExited, Node: "n1", ExitCode: 3}
	v.create(exited)
	// One on the other node, which stays.
	running("other", model.RestartAlways)
	other, err := store.Modify[model.Pod](t.Context(), v.s, model.KindPod, "acme", "other", func(p *model.Pod) (bool, error) {
		p.Spec.NodeName, p.Status.Node = "n2", "n2"
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	gens := map[string]int64{}
	for _, name := range []string{"always", "unless", "svc-1"} {
		gens[name] = v.pod("acme", name).Generation
	}

	if _, err := v.cli.Revoke(t.Context(), l1); err != nil {
		t.Fatal(err)
	}
	eventually(t, wait, "n1 down", func() bool { return v.node("n1").Status.State == model.NodeDown })
	for _, name := range []string{"always", "unless", "svc-1"} {
		p := v.waitPod("acme", name, "rebound to n2", bound("n2"))
		if name != "svc-1" && p.Status.RestartCount != 2 {
			t.Errorf("%s: restart count %d after rescheduling, want 2", name, p.Status.RestartCount)
		}
		// Unbound (back to Pending), then bound again: two spec changes.
		if p.Generation != gens[name]+2 {
			t.Errorf("%s: generation %d, was %d before the node was lost", name, p.Generation, gens[name])
		}
	}
	for _, name := range []string{"no", "onfail"} {
		p := v.waitPod("acme", name, "lost", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseLost })
		if p.Status.Reason != "NodeLost" || p.Status.Message != "node n1 was lost" || p.Spec.NodeName != "n1" {
			t.Errorf("%s: node %q status %+v", name, p.Spec.NodeName, p.Status)
		}
	}
	p := v.waitPod("acme", "local", "lost", func(p *model.Pod) bool { return p.Status.Phase == model.PhaseLost })
	if p.Spec.NodeName != "n1" || p.Status.Message != "node n1 was lost; the pod's local volume lives there" {
		t.Errorf("pod with a local volume: node %q status %+v", p.Spec.NodeName, p.Status)
	}
	if p := v.pod("acme", "exited"); p.Status.Phase != model.PhaseExited || p.Spec.NodeName != "n1" {
		t.Errorf("exited pod of the lost node: node %q status %+v", p.Spec.NodeName, p.Status)
	}
	if p := v.pod("acme", "other"); p.Spec.NodeName != "n2" || p.Status.Phase != model.PhaseRunning || p.Revision != other.Revision {
		t.Errorf("pod of n2 was touched: node %q status %+v", p.Spec.NodeName, p.Status)
	}

	// The node comes back: Ready again, and takes new pods.
	v.lease("n1")
	eventually(t, wait, "n1 ready", func() bool { return v.node("n1").Status.State == model.NodeReady })
	v.create(newPod("acme", "new", 8, 1024)) // only n1 has 8 free CPUs
	v.waitPod("acme", "new", "bound to n1", bound("n1"))
}

// A node that has no lease when the leader starts gets one lease period
// to renew it before it is declared down.
func TestNodeWithoutLeaseGoesDown(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.create(&model.Node{Meta: model.Meta{Kind: model.KindNode, Name: "n1"},
		Spec:   model.NodeSpec{Capacity: model.Resources{CPUs: 4, MemoryMiB: 4096}},
		Status: model.NodeStatus{State: model.NodeReady}})
	start := time.Now()
	startManager(t, v.e, "n1")
	eventually(t, wait, "n1 down", func() bool { return v.node("n1").Status.State == model.NodeDown })
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("node declared down after %v, before its lease period of 2s", d)
	}
	v.create(newPod("acme", "p", 1, 64))
	v.waitPod("acme", "p", "unschedulable", func(p *model.Pod) bool {
		return p.Status.Message == "0/1 nodes are available: 1 node not ready"
	})
}

func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	m1 := startManager(t, v.e, "m1")
	eventually(t, wait, "m1 leads", m1.leading.Load)
	m2 := startManager(t, v.e, "m2")
	// m2 campaigns: two candidates under the election prefix.
	eventually(t, wait, "m2 campaigning", func() bool {
		resp, err := v.cli.Get(t.Context(), controller.LeaderKey+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 2
	})
	v.addNode("n1", 8, 8192, nil)
	v.create(newPod("acme", "a", 1, 64))
	v.waitPod("acme", "a", "bound", bound("n1"))
	eventually(t, wait, "m1's OnBind", func() bool { return m1.binds.Load() == 1 })
	if m2.led.Load() || m2.binds.Load() != 0 {
		t.Fatalf("m2 led (%v) or bound (%d) while m1 led", m2.led.Load(), m2.binds.Load())
	}

	m1.stop(t)
	if m1.leading.Load() {
		t.Errorf("m1 still says it leads after Run returned")
	}
	eventually(t, wait, "m2 leads", m2.leading.Load)
	v.create(newPod("acme", "b", 1, 64))
	v.waitPod("acme", "b", "bound", bound("n1"))
	eventually(t, wait, "m2's OnBind", func() bool { return m2.binds.Load() == 1 })
	if m1.binds.Load() != 1 {
		t.Errorf("m1 bound %d pods, want 1", m1.binds.Load())
	}
}

// The binder must not oversubscribe a node, however the watch events of
// its own binds and of new pods interleave. Each round creates a burst
// of one-CPU pods for a one-CPU node: exactly one may be bound.
func TestNoOversubscription(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	startManager(t, v.e, "n1")
	v.addNode("n1", 1, 1024, nil)
	eventually(t, wait, "n1 ready", func() bool { return v.node("n1").Status.State == model.NodeReady })
	const rounds, burst = 20, 10
	for r := 0; r < rounds; r++ {
		tenant := fmt.Sprintf("round%d", r)
		var wg sync.WaitGroup
		for i := 0; i < burst; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := v.s.Create(t.Context(), newPod(tenant, fmt.Sprintf("p%d", i), 1, 64)); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		// Settled: a pod bound, every other one told why not.
		var boundPods []string
		eventually(t, wait, "every pod of "+tenant+" decided", func() bool {
			boundPods = nil
			for _, p := range v.pods(tenant) {
				switch {
				case p.Spec.NodeName != "":
					boundPods = append(boundPods, p.Name)
				case p.Status.Reason != "Unschedulable":
					return false
				}
			}
			return len(boundPods) > 0
		})
		if len(boundPods) != 1 {
			t.Fatalf("round %d: %d one-CPU pods bound to a one-CPU node: %v", r, len(boundPods), boundPods)
		}
		// Free the node for the next round.
		for _, p := range v.pods(tenant) {
			if err := v.s.Delete(t.Context(), model.KindPod, tenant, p.Name, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestPending(t *testing.T) {
	t.Parallel()
	mk := func(name, node, desired, phase string) *model.Pod {
		p := newPod("acme", name, 1, 64)
		p.Spec.NodeName, p.Spec.Desired, p.Status.Phase = node, desired, phase
		return p
	}
	pods := []*model.Pod{
		mk("new", "", model.DesiredRunning, ""),
		mk("pending", "", model.DesiredRunning, model.PhasePending),
		mk("bound", "n1", model.DesiredRunning, model.PhaseScheduled),
		mk("stopped", "", model.DesiredStopped, model.PhasePending),
		mk("lost", "", model.DesiredRunning, model.PhaseLost),
		mk("exited", "", model.DesiredRunning, model.PhaseExited),
	}
	var got []string
	for _, p := range controller.Pending(pods) {
		got = append(got, p.Name)
	}
	if strings.Join(got, ",") != "new,pending" {
		t.Fatalf("Pending = %v, want new, pending", got)
	}
}

// proxy forwards TCP connections to etcd. cut drops them all and holds
// off new ones until resume.
type proxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
	held  bool
}

func startProxy(t *testing.T, targetURL string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: strings.TrimPrefix(targetURL, "http://"), conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.cut(true)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.held {
			p.mu.Unlock()
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[u] = true, true
		p.wg.Add(2)
		go p.pipe(c, u)
		go p.pipe(u, c)
		p.mu.Unlock()
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
}

func (p *proxy) cut(hold bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = hold
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) resume() {
	p.mu.Lock()
	p.held = false
	p.mu.Unlock()
}

// relistAll cuts the manager's connection to etcd, and while it is away
// runs meanwhile, writes and compacts, so that every watch of the manager
// must list again when it is back.
func (v *env) relistAll(px *proxy, meanwhile func()) {
	v.t.Helper()
	px.cut(true)
	defer px.resume()
	if meanwhile != nil {
		meanwhile()
	}
	var rev int64
	for i := 0; i < 3; i++ {
		resp, err := v.cli.Put(v.t.Context(), store.Prefix+"test/junk", fmt.Sprint(i))
		if err != nil {
			v.t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	if _, err := v.cli.Compact(v.t.Context(), rev); err != nil {
		v.t.Fatal(err)
	}
}

func TestSurvivesCompactedWatches(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	px := startProxy(t, v.e.URL)
	m := startManagerAt(t, px.URL(), "n1", 5*time.Second)
	v.addNode("n1", 4, 4096, nil)
	v.create(newPod("acme", "a", 1, 64))
	v.waitPod("acme", "a", "bound", bound("n1"))
	v.relistAll(px, func() { v.create(newPod("acme", "b", 1, 64)) })
	v.create(newPod("acme", "c", 1, 64))
	v.waitPod("acme", "b", "bound", bound("n1"))
	v.waitPod("acme", "c", "bound", bound("n1"))
	// The binder counts a bind once etcd's answer is back, which may be
	// after the watch above saw it: a stop before then would cancel the
	// answer of a write that was made.
	eventually(t, wait, "three binds", func() bool { return m.binds.Load() >= 3 })
	m.stop(t)
	if m.binds.Load() != 3 {
		t.Errorf("%d binds, want 3", m.binds.Load())
	}
}

// A pod deleted while the leader's watches were away (and had to list
// again) no longer takes room on its node.
func TestRelistForgetsDeletedPods(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	px := startProxy(t, v.e.URL)
	startManagerAt(t, px.URL(), "n1", 5*time.Second)
	v.addNode("n1", 4, 4096, nil)
	v.create(newPod("acme", "a", 2, 64))
	v.waitPod("acme", "a", "bound", bound("n1"))
	v.relistAll(px, func() {
		if err := v.s.Delete(v.t.Context(), model.KindPod, "acme", "a", 0); err != nil {
			t.Fatal(err)
		}
	})
	v.create(newPod("acme", "all", 4, 64))
	v.waitPod("acme", "all", "bound to the emptied node", bound("n1"))
}

// However often its watches list again (after a compaction, or a lost
// etcd leader), the leader goes on, and stops when told.
func TestSurvivesRepeatedRelists(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	px := startProxy(t, v.e.URL)
	m := startManagerAt(t, px.URL(), "n1", 5*time.Second)
	v.addNode("n1", 4, 4096, nil)
	v.create(newPod("acme", "a", 1, 64))
	v.waitPod("acme", "a", "bound", bound("n1"))
	for i := 0; i < 3; i++ {
		v.relistAll(px, nil)
		name := fmt.Sprintf("p%d", i)
		v.create(newPod("acme", name, 1, 64))
		v.waitPod("acme", name, "bound", bound("n1"))
	}
	m.stop(t)
}
