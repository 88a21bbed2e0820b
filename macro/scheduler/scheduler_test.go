package scheduler

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hearth-cloud/hearth/macro/model"
)

// node is a ready, empty node of cpus CPUs and mem MiB.
func node(name string, cpus, mem int) *NodeInfo {
	return &NodeInfo{Name: name, Ready: true, Capacity: model.Resources{CPUs: cpus, MemoryMiB: mem}}
}

func req(cpus, mem int) Request {
	return Request{Resources: model.Resources{CPUs: cpus, MemoryMiB: mem}}
}

func mustSchedule(t *testing.T, snap *Snapshot, r Request) string {
	t.Helper()
	n, err := Schedule(snap, r)
	if err != nil {
		t.Fatalf("Schedule(%+v) failed: %v", r, err)
	}
	return n
}

func mustFail(t *testing.T, snap *Snapshot, r Request, want string) {
	t.Helper()
	n, err := Schedule(snap, r)
	if err == nil {
		t.Fatalf("Schedule(%+v) = %q, want error %q", r, n, want)
	}
	var u *Unschedulable
	if !errors.As(err, &u) {
		t.Fatalf("Schedule error %T %v is not *Unschedulable", err, err)
	}
	if err.Error() != want {
		t.Fatalf("Schedule error = %q, want %q", err, want)
	}
}

func TestFitCPU(t *testing.T) {
	t.Parallel()
	n := node("a", 4, 4096)
	n.Allocated = model.Resources{CPUs: 2, MemoryMiB: 1024}
	snap := &Snapshot{Nodes: []*NodeInfo{n}}
	if got := mustSchedule(t, snap, req(2, 512)); got != "a" {
		t.Fatalf("exact CPU fit went to %q", got)
	}
	mustFail(t, snap, req(3, 512), "0/1 nodes are available: 1 insufficient cpu")
}

func TestFitMemory(t *testing.T) {
	t.Parallel()
	n := node("a", 4, 4096)
	n.Allocated = model.Resources{CPUs: 1, MemoryMiB: 1024}
	snap := &Snapshot{Nodes: []*NodeInfo{n}}
	if got := mustSchedule(t, snap, req(1, 3072)); got != "a" {
		t.Fatalf("exact memory fit went to %q", got)
	}
	mustFail(t, snap, req(1, 3073), "0/1 nodes are available: 1 insufficient memory")
}

func TestCPUCheckedBeforeMemory(t *testing.T) {
	t.Parallel()
	snap := &Snapshot{Nodes: []*NodeInfo{node("a", 1, 64)}}
	mustFail(t, snap, req(2, 128), "0/1 nodes are available: 1 insufficient cpu")
}

func TestNotReadyAndUnschedulableSkipped(t *testing.T) {
	t.Parallel()
	down := node("a", 64, 65536)
	down.Ready = false
	drained := node("b", 64, 65536)
	drained.Unschedulable = true
	small := node("c", 2, 1024)
	small.Allocated = model.Resources{CPUs: 1, MemoryMiB: 512}
	snap := &Snapshot{Nodes: []*NodeInfo{down, drained, small}}
	if got := mustSchedule(t, snap, req(1, 512)); got != "c" {
		t.Fatalf("pod went to %q, want the only ready, schedulable node c", got)
	}
	// Not ready and being drained at once: not ready is the reason.
	drained.Ready = false
	snap = &Snapshot{Nodes: []*NodeInfo{down, drained}}
	mustFail(t, snap, req(1, 512), "0/2 nodes are available: 2 node not ready")
	drained.Ready = true
	mustFail(t, snap, req(1, 512), "0/2 nodes are available: 1 node is being drained, 1 node not ready")
}

func TestNodeSelector(t *testing.T) {
	t.Parallel()
	a := node("a", 8, 8192)
	a.Labels = map[string]string{"zone": "east"}
	b := node("b", 8, 8192)
	b.Labels = map[string]string{"zone": "west", "disk": "ssd"}
	b.Allocated = model.Resources{CPUs: 6, MemoryMiB: 6000} // fuller: only the selector sends pods here
	snap := &Snapshot{Nodes: []*NodeInfo{a, b}}

	r := req(1, 512)
	if got := mustSchedule(t, snap, r); got != "a" {
		t.Fatalf("without selector pod went to %q, want least allocated a", got)
	}
	r.NodeSelector = map[string]string{"zone": "west"}
	if got := mustSchedule(t, snap, r); got != "b" {
		t.Fatalf("zone=west pod went to %q", got)
	}
	r.NodeSelector = map[string]string{"zone": "west", "disk": "ssd"}
	if got := mustSchedule(t, snap, r); got != "b" {
		t.Fatalf("zone=west,disk=ssd pod went to %q", got)
	}
	r.NodeSelector = map[string]string{"zone": "north"}
	mustFail(t, snap, r, "0/2 nodes are available: 2 node lacks label zone=north")
	// A label present with another value does not match.
	r.NodeSelector = map[string]string{"disk": "hdd"}
	mustFail(t, snap, r, "0/2 nodes are available: 2 node lacks label disk=hdd")
}

func TestPinnedNode(t *testing.T) {
	t.Parallel()
	a := node("a", 8, 8192)
	b := node("b", 8, 8192)
	b.Allocated = model.Resources{CPUs: 7, MemoryMiB: 1024}
	snap := &Snapshot{Nodes: []*NodeInfo{a, b}}
	r := req(1, 512)
	r.Node = "b"
	if got := mustSchedule(t, snap, r); got != "b" {
		t.Fatalf("pod pinned to b went to %q", got)
	}
	r.Resources.CPUs = 2
	mustFail(t, snap, r, "0/2 nodes are available: 1 insufficient cpu, 1 not the node the pod's volume is on")
	b.Ready = false
	r.Resources.CPUs = 1
	mustFail(t, snap, r, "0/2 nodes are available: 1 node not ready, 1 not the node the pod's volume is on")
	r.Node = "nowhere"
	mustFail(t, snap, r, "0/2 nodes are available: 2 not the node the pod's volume is on")
}

func TestSpreadByService(t *testing.T) {
	t.Parallel()
	// a is emptier, but already runs a replica of the service: the next
	// replica goes to b.
	a := node("a", 8, 8192)
	a.Allocated = model.Resources{CPUs: 1, MemoryMiB: 512}
	a.Services = map[string]int{"acme/web": 1}
	b := node("b", 8, 8192)
	b.Allocated = model.Resources{CPUs: 4, MemoryMiB: 4096}
	b.Services = map[string]int{"acme/db": 3}
	snap := &Snapshot{Nodes: []*NodeInfo{a, b}}

	r := req(1, 512)
	r.Service = "acme/web"
	if got := mustSchedule(t, snap, r); got != "b" {
		t.Fatalf("replica went to %q, want b (fewest acme/web)", got)
	}
	// Another tenant's service of the same name is not the same service.
	r.Service = "other/web"
	if got := mustSchedule(t, snap, r); got != "a" {
		t.Fatalf("other/web went to %q, want least allocated a", got)
	}
	// A pod of no service ignores spreading.
	r.Service = ""
	if got := mustSchedule(t, snap, r); got != "a" {
		t.Fatalf("plain pod went to %q, want least allocated a", got)
	}
}

func TestSpreadReplicasWithAdd(t *testing.T) {
	t.Parallel()
	snap := &Snapshot{Nodes: []*NodeInfo{node("a", 16, 16384), node("b", 16, 16384), node("c", 16, 16384)}}
	r := req(1, 256)
	r.Service = "acme/web"
	count := map[string]int{}
	var order []string
	for i := 0; i < 6; i++ {
		n := mustSchedule(t, snap, r)
		snap.Add(n, r)
		count[n]++
		order = append(order, n)
	}
	if got := strings.Join(order, ","); got != "a,b,c,a,b,c" {
		t.Fatalf("six replicas placed %s, want a,b,c,a,b,c", got)
	}
	for _, n := range snap.Nodes {
		if n.Services["acme/web"] != 2 || n.Allocated.CPUs != 2 || n.Allocated.MemoryMiB != 512 {
			t.Fatalf("node %s after Add: services %v allocated %+v", n.Name, n.Services, n.Allocated)
		}
	}
}

func TestLeastAllocatedThenName(t *testing.T) {
	t.Parallel()
	mk := func() []*NodeInfo {
		a := node("a", 4, 4096)
		a.Allocated = model.Resources{CPUs: 3} // load 0.75 by CPU
		b := node("b", 4, 4096)
		b.Allocated = model.Resources{CPUs: 1, MemoryMiB: 3072} // load 0.75 by memory
		c := node("c", 4, 4096)
		c.Allocated = model.Resources{CPUs: 2, MemoryMiB: 2048} // load 0.5
		d := node("d", 4, 4096)
		d.Allocated = model.Resources{CPUs: 2, MemoryMiB: 2048} // load 0.5
		return []*NodeInfo{a, b, c, d}
	}
	// Every order of the nodes in the snapshot gives the same answer.
	nodes := mk()
	perms := [][]int{{0, 1, 2, 3}, {3, 2, 1, 0}, {1, 3, 0, 2}, {2, 0, 3, 1}}
	for _, perm := range perms {
		snap := &Snapshot{}
		for _, i := range perm {
			snap.Nodes = append(snap.Nodes, nodes[i])
		}
		if got := mustSchedule(t, snap, req(1, 512)); got != "c" {
			t.Fatalf("order %v: pod went to %q, want c (least allocated, then name)", perm, got)
		}
	}
	// Without c and d, a and b tie at 0.75 (CPU for a, memory for b): the
	// larger share counts, and the name decides.
	snap := &Snapshot{Nodes: []*NodeInfo{nodes[1], nodes[0]}}
	if got := mustSchedule(t, snap, req(1, 512)); got != "a" {
		t.Fatalf("tie went to %q, want a", got)
	}
	// The larger share counts: b (0.25 CPU, 0.75 memory) loses to e (0.5, 0.5).
	e := node("e", 4, 4096)
	e.Allocated = model.Resources{CPUs: 2, MemoryMiB: 2048}
	snap = &Snapshot{Nodes: []*NodeInfo{nodes[1], e}}
	if got := mustSchedule(t, snap, req(1, 512)); got != "e" {
		t.Fatalf("pod went to %q, want e (max(cpu, memory) share 0.5 < 0.75)", got)
	}
}

func TestZeroCapacityNodeDoesNotPanic(t *testing.T) {
	t.Parallel()
	snap := &Snapshot{Nodes: []*NodeInfo{node("a", 0, 0), node("b", 2, 1024)}}
	if got := mustSchedule(t, snap, req(1, 512)); got != "b" {
		t.Fatalf("pod went to %q", got)
	}
	if got := mustSchedule(t, snap, req(0, 0)); got != "a" {
		t.Fatalf("empty request went to %q, want a (load 0, name first)", got)
	}
}

func TestSuccessiveDecisionsSeeEachOther(t *testing.T) {
	t.Parallel()
	snap := &Snapshot{Nodes: []*NodeInfo{node("n1", 2, 8192), node("n2", 2, 8192)}}
	r := req(1, 512)
	count := map[string]int{}
	for i := 0; i < 4; i++ {
		n := mustSchedule(t, snap, r)
		snap.Add(n, r)
		count[n]++
	}
	if count["n1"] != 2 || count["n2"] != 2 {
		t.Fatalf("four 1-CPU pods placed %v, want 2+2", count)
	}
	mustFail(t, snap, r, "0/2 nodes are available: 2 insufficient cpu")
}

func TestAddUnknownNode(t *testing.T) {
	t.Parallel()
	snap := &Snapshot{Nodes: []*NodeInfo{node("a", 2, 1024)}}
	r := req(1, 512)
	r.Service = "t/s"
	snap.Add("ghost", r)
	if a := snap.Nodes[0]; a.Allocated != (model.Resources{}) || a.Services != nil {
		t.Fatalf("Add of an unknown node changed a: %+v", a)
	}
	snap.Add("a", r)
	if a := snap.Nodes[0]; a.Allocated != (model.Resources{CPUs: 1, MemoryMiB: 512}) || a.Services["t/s"] != 1 {
		t.Fatalf("Add of a: %+v", a)
	}
}

func TestUnschedulableMessage(t *testing.T) {
	t.Parallel()
	down := node("d", 8, 8192)
	down.Ready = false
	drained := node("e", 8, 8192)
	drained.Unschedulable = true
	full := func(name string) *NodeInfo {
		n := node(name, 1, 8192)
		n.Allocated.CPUs = 1
		return n
	}
	small := node("s", 8, 256)
	snap := &Snapshot{Nodes: []*NodeInfo{full("a"), down, full("b"), small, drained, full("c")}}
	mustFail(t, snap, req(1, 512),
		"0/6 nodes are available: 1 insufficient memory, 1 node is being drained, 1 node not ready, 3 insufficient cpu")

	_, err := Schedule(snap, req(1, 512))
	var u *Unschedulable
	if !errors.As(err, &u) {
		t.Fatal(err)
	}
	want := map[string]int{"insufficient cpu": 3, "insufficient memory": 1, "node not ready": 1, "node is being drained": 1}
	if u.Nodes != 6 || fmt.Sprint(u.Reasons) != fmt.Sprint(want) {
		t.Fatalf("Unschedulable = %+v, want 6 nodes and %v", u, want)
	}
}

func TestNoNodes(t *testing.T) {
	t.Parallel()
	for _, snap := range []*Snapshot{{}, {Nodes: []*NodeInfo{}}} {
		mustFail(t, snap, req(1, 64), "no nodes available")
	}
}

func TestRequestOf(t *testing.T) {
	t.Parallel()
	p := &model.Pod{
		Meta: model.Meta{Tenant: "acme", Name: "web-1", Labels: map[string]string{ServiceLabel: "web"}},
		Spec: model.PodSpec{Resources: model.Resources{CPUs: 2, MemoryMiB: 256}, NodeSelector: map[string]string{"zone": "a"}},
	}
	r := RequestOf(p)
	if r.Service != "acme/web" || r.Resources != p.Spec.Resources || r.NodeSelector["zone"] != "a" || r.Node != "" {
		t.Fatalf("RequestOf = %+v", r)
	}
	p.Labels = nil
	if r := RequestOf(p); r.Service != "" {
		t.Fatalf("RequestOf a pod of no service: Service %q", r.Service)
	}
	// A pod with a local volume goes where the volume lives.
	p.Spec.Volumes = []model.Volume{{Name: "m0", Type: "tmpfs"}, {Name: "m1", Type: "volume", Source: "v", Node: "n2"}}
	r = RequestOf(p)
	r.NodeSelector = nil
	if r.Node != "n2" {
		t.Fatalf("RequestOf a pod with a volume on n2: Node %q", r.Node)
	}
	snap := &Snapshot{Nodes: []*NodeInfo{
		{Name: "n1", Ready: true, Capacity: model.Resources{CPUs: 8, MemoryMiB: 8192}},
		{Name: "n2", Ready: true, Capacity: model.Resources{CPUs: 8, MemoryMiB: 8192}, Allocated: model.Resources{CPUs: 4}},
	}}
	if n, err := Schedule(snap, r); err != nil || n != "n2" {
		t.Fatalf("Schedule a pod with a volume on n2: %q %v", n, err)
	}
	snap.Nodes[1].Ready = false
	if _, err := Schedule(snap, r); err == nil || !strings.Contains(err.Error(), "not the node the pod's volume is on") {
		t.Fatalf("Schedule with the volume's node down: %v", err)
	}
}

// BenchmarkSchedule places 10,000 pods onto 1,000 nodes from one snapshot,
// as the binder does after a burst of creations.
func BenchmarkSchedule(b *testing.B) {
	const nodes, pods = 1000, 10000
	mk := func() *Snapshot {
		snap := &Snapshot{Nodes: make([]*NodeInfo, nodes)}
		for i := range snap.Nodes {
			snap.Nodes[i] = &NodeInfo{
				Name: fmt.Sprintf("node-%04d", i), Ready: true,
				Labels:   map[string]string{"zone": fmt.Sprintf("z%d", i%3)},
				Capacity: model.Resources{CPUs: 64, MemoryMiB: 256 << 10},
				Services: map[string]int{},
			}
		}
		return snap
	}
	reqs := make([]Request, pods)
	for i := range reqs {
		reqs[i] = Request{Resources: model.Resources{CPUs: 1 + i%4, MemoryMiB: 512 * (1 + i%8)}}
		if i%2 == 0 {
			reqs[i].Service = fmt.Sprintf("t/svc-%d", i%50)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		snap := mk()
		b.StartTimer()
		for _, r := range reqs {
			n, err := Schedule(snap, r)
			if err != nil {
				b.Fatal(err)
			}
			snap.Add(n, r)
		}
	}
	b.ReportMetric(float64(b.N)*pods/b.Elapsed().Seconds(), "pods/s")
}

func TestHostPorts(t *testing.T) {
	t.Parallel()
	web := func(ip string, port int, proto string) Request {
		r := req(1, 64)
		r.Ports = []model.Port{{HostIP: ip, HostPort: port, ContainerPort: 80, Protocol: proto}}
		return r
	}
	snap := &Snapshot{Nodes: []*NodeInfo{node("a", 8, 8192), node("b", 8, 8192)}}
	first := mustSchedule(t, snap, web("", 8080, "tcp"))
	snap.Add(first, web("", 8080, "tcp"))
	// The same port goes to the other node, however idle the first is.
	second := mustSchedule(t, snap, web("127.0.0.1", 8080, "tcp"))
	if second == first {
		t.Fatalf("two pods publishing 8080 on %s", first)
	}
	snap.Add(second, web("127.0.0.1", 8080, "tcp"))
	mustFail(t, snap, web("", 8080, "tcp"), "0/2 nodes are available: 2 node has no free ports for the requested pod ports")
	// Another protocol, another address on the node that bound one, or a
	// port the node picks (0) all fit.
	mustSchedule(t, snap, web("", 8080, "udp"))
	if got := mustSchedule(t, snap, web("10.0.0.1", 8080, "tcp")); got != second {
		t.Errorf("10.0.0.1:8080 went to %s, which binds all addresses", got)
	}
	mustSchedule(t, snap, web("", 0, "tcp"))
}
