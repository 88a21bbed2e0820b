package controller

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/scheduler"
)

// pending reports whether a pod waits for a node.
func pending(p *model.Pod) bool {
	return p.Spec.NodeName == "" && p.Spec.Desired == model.DesiredRunning &&
		(p.Status.Phase == "" || p.Status.Phase == model.PhasePending)
}

// snapshot is the scheduler's view: ready nodes and what is bound to
// them.
func (c *cache) snapshot(now time.Time) *scheduler.Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	byName := map[string]*scheduler.NodeInfo{}
	snap := &scheduler.Snapshot{}
	for _, n := range c.nodes {
		ni := &scheduler.NodeInfo{
			Name:          n.Name,
			Ready:         n.Status.State == model.NodeReady && c.leases[n.Name],
			Unschedulable: n.Spec.Unschedulable,
			Labels:        n.Labels,
			Capacity:      n.Spec.Capacity,
			Services:      map[string]int{},
		}
		byName[n.Name] = ni
		snap.Nodes = append(snap.Nodes, ni)
	}
	for _, p := range c.pods {
		n := byName[p.Spec.NodeName]
		if n == nil || model.Terminal(p.Status.Phase) || p.Spec.Desired != model.DesiredRunning {
			continue
		}
		n.Account(scheduler.RequestOf(p))
	}
	sort.Slice(snap.Nodes, func(i, j int) bool { return snap.Nodes[i].Name < snap.Nodes[j].Name })
	return snap
}

// bind places every pending pod, oldest first. A bind is a write
// conditioned on the pod's revision; one that loses a race is retried on
// the next pass, which the winning write's watch event triggers.
func (m *Manager) bind(ctx context.Context, c *cache) {
	var todo []*model.Pod
	for _, p := range c.podsSnapshot() {
		if pending(p) {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return
	}
	sort.Slice(todo, func(i, j int) bool {
		if !todo[i].CreatedAt.Equal(todo[j].CreatedAt) {
			return todo[i].CreatedAt.Before(todo[j].CreatedAt)
		}
		return todo[i].Name < todo[j].Name
	})
	now := time.Now()
	snap := c.snapshot(now)
	// Decisions are made one after another on one snapshot (each sees
	// the ones before); the writes go out in parallel, since each waits
	// for a quorum's fsync. Only the leader binds, and it puts its own
	// writes into its cache as they succeed, so the next pass counts them
	// even before their watch events return: no node is oversubscribed. A
	// write that loses a race only leaves the snapshot conservative until
	// the next pass.
	writes := make(chan *model.Pod)
	var wg sync.WaitGroup
	for i := 0; i < bindWriters; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for cp := range writes {
				bound := cp.Spec.NodeName != ""
				if err := m.Store.Update(ctx, cp, bound); err != nil {
					m.Log.Debug("write scheduling decision", "pod", cp.Tenant+"/"+cp.Name, "err", err)
					continue
				}
				c.wrote(cp)
				if bound && m.OnBind != nil {
					m.OnBind(time.Since(cp.CreatedAt))
				}
			}
		}()
	}
	defer func() {
		close(writes)
		wg.Wait()
	}()
	for _, p := range todo {
		if ctx.Err() != nil {
			return
		}
		req := scheduler.RequestOf(p)
		node, err := scheduler.Schedule(snap, req)
		cp := *p
		if err != nil {
			// Say why once; the pod waits for a change of nodes or pods,
			// which wakes the binder again.
			if p.Status.Reason == "Unschedulable" && p.Status.Message == err.Error() {
				continue
			}
			cp.Status.Phase, cp.Status.Reason, cp.Status.Message = model.PhasePending, "Unschedulable", err.Error()
			writes <- &cp
			continue
		}
		cp.Spec.NodeName = node
		cp.Status = model.PodStatus{Phase: model.PhaseScheduled, Node: node, ScheduledAt: now.UTC(), RestartCount: p.Status.RestartCount}
		snap.Add(node, req)
		writes <- &cp
	}
}

// bindWriters is how many scheduling decisions are written at once.
const bindWriters = 32

// Pending lists pods waiting for a node (for tests and the admin API).
func Pending(pods []*model.Pod) []*model.Pod {
	var out []*model.Pod
	for _, p := range pods {
		if pending(p) {
			out = append(out, p)
		}
	}
	return out
}
