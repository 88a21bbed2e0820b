// Package scheduler decides where a pod runs. It is a pure function of a
// snapshot of the cluster: no I/O, no clock. The binder in
// macro/controller commits its decisions to etcd; only the elected leader
// binds, and its snapshots include its own writes, so no node is
// oversubscribed.
package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hearth-cloud/hearth/macro/model"
)

// NodeInfo is a node as the scheduler sees it.
type NodeInfo struct {
	Name          string
	Ready         bool
	Unschedulable bool
	Labels        map[string]string
	Capacity      model.Resources
	// Allocated sums the resources of the pods bound to the node that
	// are not terminal.
	Allocated model.Resources
	// Services counts the node's pods per service key (tenant/name), for
	// spreading.
	Services map[string]int
	// Ports are the host ports its pods publish.
	Ports []model.Port
}

// Snapshot is the cluster at one revision.
type Snapshot struct {
	Nodes []*NodeInfo
}

// Request is what placing a pod needs.
type Request struct {
	Resources    model.Resources
	NodeSelector map[string]string
	// Node pins the pod (a local volume lives there).
	Node string
	// Service is tenant/name of the pod's service, empty for none.
	Service string
	// Ports are the host ports the pod publishes.
	Ports []model.Port
}

// RequestOf is a pod's request.
func RequestOf(p *model.Pod) Request {
	svc := ""
	if s := p.Labels[ServiceLabel]; s != "" {
		svc = p.Tenant + "/" + s
	}
	r := Request{Resources: p.Spec.Resources, NodeSelector: p.Spec.NodeSelector, Service: svc, Ports: p.Spec.Ports}
	for _, v := range p.Spec.Volumes {
		if v.Node != "" {
			r.Node = v.Node
		}
	}
	return r
}

// ServiceLabel marks the pods of a service.
const ServiceLabel = "hearth.service"

// Schedule picks the node for a request, or says why none fits. Among the
// nodes that fit it prefers the one with the fewest replicas of the same
// service, then the least allocated, then the name, so the choice is
// deterministic.
func Schedule(snap *Snapshot, r Request) (string, error) {
	var fits []*NodeInfo
	reasons := map[string]int{}
	for _, n := range snap.Nodes {
		if why := misfit(n, r); why != "" {
			reasons[why]++
			continue
		}
		fits = append(fits, n)
	}
	if len(fits) == 0 {
		return "", &Unschedulable{Nodes: len(snap.Nodes), Reasons: reasons}
	}
	sort.Slice(fits, func(i, j int) bool {
		a, b := fits[i], fits[j]
		if sa, sb := a.Services[r.Service], b.Services[r.Service]; r.Service != "" && sa != sb {
			return sa < sb
		}
		if la, lb := load(a), load(b); la != lb {
			return la < lb
		}
		return a.Name < b.Name
	})
	return fits[0].Name, nil
}

// load is the larger of a node's CPU and memory allocation, as a fraction.
func load(n *NodeInfo) float64 {
	var c, m float64
	if n.Capacity.CPUs > 0 {
		c = float64(n.Allocated.CPUs) / float64(n.Capacity.CPUs)
	}
	if n.Capacity.MemoryMiB > 0 {
		m = float64(n.Allocated.MemoryMiB) / float64(n.Capacity.MemoryMiB)
	}
	if c > m {
		return c
	}
	return m
}

// misfit says why a node cannot take a request, or "".
func misfit(n *NodeInfo, r Request) string {
	switch {
	case r.Node != "" && n.Name != r.Node:
		return "not the node the pod's volume is on"
	case !n.Ready:
		return "node not ready"
	case n.Unschedulable:
		return "node is being drained"
	}
	for k, v := range r.NodeSelector {
		if n.Labels[k] != v {
			return fmt.Sprintf("node lacks label %s=%s", k, v)
		}
	}
	if n.Allocated.CPUs+r.Resources.CPUs > n.Capacity.CPUs {
		return "insufficient cpu"
	}
	if n.Allocated.MemoryMiB+r.Resources.MemoryMiB > n.Capacity.MemoryMiB {
		return "insufficient memory"
	}
	for _, p := range r.Ports {
		for _, q := range n.Ports {
			if p.Conflicts(q) {
				return "node has no free ports for the requested pod ports"
			}
		}
	}
	return ""
}

// Unschedulable is why no node fits.
type Unschedulable struct {
	Nodes   int
	Reasons map[string]int
}

func (u *Unschedulable) Error() string {
	if u.Nodes == 0 {
		return "no nodes available"
	}
	var parts []string
	for why, n := range u.Reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, why))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes are available: %s", u.Nodes, strings.Join(parts, ", "))
}

// Account adds a pod bound to the node.
func (n *NodeInfo) Account(r Request) {
	n.Allocated.CPUs += r.Resources.CPUs
	n.Allocated.MemoryMiB += r.Resources.MemoryMiB
	if r.Service != "" {
		if n.Services == nil {
			n.Services = map[string]int{}
		}
		n.Services[r.Service]++
	}
	n.Ports = append(n.Ports, r.Ports...)
}

// Add accounts a pod bound to a node in the snapshot, so that decisions
// made one after another from one snapshot see each other.
func (s *Snapshot) Add(node string, r Request) {
	for _, n := range s.Nodes {
		if n.Name == node {
			n.Account(r)
			return
		}
	}
}
