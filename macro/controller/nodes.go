package controller

import (
	"context"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/scheduler"
	"github.com/hearth-cloud/hearth/macro/store"
)

// leasePrefix is where node agents keep their heartbeat leases.
const leasePrefix = store.Prefix + "leases/"

// watchLeases follows the nodes' heartbeat leases. etcd deletes a lease's
// key when the lease expires, so a node's death arrives as an event.
func (m *Manager) watchLeases(ctx context.Context, c *cache, ready chan<- struct{}) {
	cli := m.Store.Client()
	first := true
	for ctx.Err() == nil {
		resp, err := cli.Get(ctx, leasePrefix, clientv3.WithPrefix())
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		alive := map[string]bool{}
		for _, kv := range resp.Kvs {
			alive[strings.TrimPrefix(string(kv.Key), leasePrefix)] = true
		}
		c.mu.Lock()
		c.leases = alive
		c.mu.Unlock()
		c.poke()
		if first {
			first = false
			ready <- struct{}{}
		}
		wch := cli.Watch(clientv3.WithRequireLeader(ctx), leasePrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, e := range wr.Events {
				c.setLease(strings.TrimPrefix(string(e.Kv.Key), leasePrefix), e.Type == clientv3.EventTypePut)
			}
		}
	}
}

// reconcileNodes keeps each node's state in line with its lease, and
// handles the pods of nodes that died.
func (m *Manager) reconcileNodes(ctx context.Context, c *cache) {
	c.mu.Lock()
	var nodes []*model.Node
	for _, n := range c.nodes {
		nodes = append(nodes, n)
	}
	leases := map[string]bool{}
	for k, v := range c.leases {
		leases[k] = v
	}
	inGrace := time.Since(c.since) < m.LeaseTTL
	c.mu.Unlock()
	for _, n := range nodes {
		want := model.NodeDown
		if leases[n.Name] {
			want = model.NodeReady
		} else if inGrace {
			continue
		}
		if n.Status.State != want {
			cp := *n
			cp.Status.State = want
			if err := m.Store.Update(ctx, &cp, false); err != nil {
				m.Log.Debug("node state", "node", n.Name, "err", err)
				continue
			}
			m.Log.Info("node state changed", "node", n.Name, "state", want)
		}
		if want == model.NodeDown {
			m.evacuate(ctx, c, n.Name)
		}
	}
}

// evacuate handles the pods of a dead node: those that should run on
// elsewhere go back to Pending for the scheduler; the rest are Lost. The
// node, should it return, stops its copies of pods now bound elsewhere.
func (m *Manager) evacuate(ctx context.Context, c *cache, node string) {
	for _, p := range c.podsSnapshot() {
		if p.Spec.NodeName != node || p.Status.Phase == model.PhaseLost {
			continue
		}
		if model.Terminal(p.Status.Phase) && !reschedulable(p) {
			continue
		}
		cp := *p
		if reschedulable(p) && p.Spec.Desired == model.DesiredRunning {
			cp.Unbind("Rescheduled", "node "+node+" was lost")
			if err := m.Store.Update(ctx, &cp, true); err != nil {
				m.Log.Debug("reschedule pod", "pod", p.Tenant+"/"+p.Name, "err", err)
				continue
			}
			m.Log.Info("rescheduling pod of a lost node", "pod", p.Tenant+"/"+p.Name, "node", node)
			continue
		}
		cp.Status.Phase, cp.Status.Reason = model.PhaseLost, "NodeLost"
		cp.Status.Message = "node " + node + " was lost"
		if hasLocalVolume(p) {
			cp.Status.Message += "; the pod's local volume lives there"
		}
		if err := m.Store.Update(ctx, &cp, false); err != nil {
			m.Log.Debug("mark pod lost", "pod", p.Tenant+"/"+p.Name, "err", err)
		}
	}
}

// reschedulable: pods that should run somewhere, and can run anywhere.
func reschedulable(p *model.Pod) bool {
	if hasLocalVolume(p) {
		return false
	}
	if p.Labels[scheduler.ServiceLabel] != "" {
		return true
	}
	r := p.Spec.Restart.Policy
	return r == model.RestartAlways || r == model.RestartUnlessStopped
}

func hasLocalVolume(p *model.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if v.Type == "volume" || v.Type == "bind" {
			return true
		}
	}
	return false
}
