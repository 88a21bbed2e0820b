// Package controller holds macro's reconcile loops, which run on the
// elected leader only: the binder (which commits the scheduler's
// decisions), node lifecycle (leases, lost nodes, rescheduling) and
// services (replica counts). They are driven by etcd watches, never by
// polling.
package controller

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Manager runs the controllers while this node leads.
type Manager struct {
	Node  string
	Store *store.Store
	Log   *slog.Logger
	// LeaseTTL is the nodes' heartbeat lease: a node missing at the start
	// of a leadership term is given this long to renew it.
	LeaseTTL time.Duration
	// ElectionTTL is how long the leader's election session outlives its
	// last keepalive, hence most of a failover's time (etcd renews every
	// lease by this much when its own leader changes). Default 2 s.
	ElectionTTL time.Duration
	// OnBind observes scheduling latency (creation to binding).
	OnBind func(d time.Duration)
	// OnLeader is told when this node becomes or stops being leader.
	OnLeader func(bool)
}

// LeaderKey is the election's prefix.
const LeaderKey = store.Prefix + "leader"

// Run campaigns for leadership and, while leading, runs the controllers.
// It returns when ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		ttl := int(m.ElectionTTL / time.Second)
		if ttl < 1 {
			ttl = 2
		}
		sess, err := concurrency.NewSession(m.Store.Client(), concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
		if err != nil {
			sleep(ctx, time.Second)
			continue
		}
		el := concurrency.NewElection(sess, LeaderKey)
		if err := el.Campaign(ctx, m.Node); err != nil {
			sess.Close()
			sleep(ctx, time.Second)
			continue
		}
		m.Log.Info("leading the cluster", "node", m.Node)
		if m.OnLeader != nil {
			m.OnLeader(true)
		}
		lctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-sess.Done():
			case <-lctx.Done():
			}
			cancel()
		}()
		m.lead(lctx)
		cancel()
		if m.OnLeader != nil {
			m.OnLeader(false)
		}
		resignCtx, rc := context.WithTimeout(context.Background(), 2*time.Second)
		el.Resign(resignCtx)
		rc()
		sess.Close()
		if ctx.Err() == nil {
			m.Log.Warn("lost leadership", "node", m.Node)
		}
	}
	return nil
}

// lead runs every controller until ctx ends.
func (m *Manager) lead(ctx context.Context) {
	c := &cache{pods: map[string]*model.Pod{}, nodes: map[string]*model.Node{}, services: map[string]*model.Service{}, leases: map[string]bool{}, kick: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	run := func(fn func()) {
		wg.Add(1)
		go func() { defer wg.Done(); fn() }()
	}
	ready := make(chan struct{}, 4)
	run(func() {
		store.Watch[model.Pod](ctx, m.Store, model.KindPod, func(ev store.Event[*model.Pod], initial bool) {
			if ev.Object == nil {
				ready <- struct{}{}
				return
			}
			c.setPod(ev)
		})
	})
	run(func() {
		store.Watch[model.Node](ctx, m.Store, model.KindNode, func(ev store.Event[*model.Node], initial bool) {
			if ev.Object == nil {
				ready <- struct{}{}
				return
			}
			c.setNode(ev)
		})
	})
	run(func() {
		store.Watch[model.Service](ctx, m.Store, model.KindService, func(ev store.Event[*model.Service], initial bool) {
			if ev.Object == nil {
				ready <- struct{}{}
				return
			}
			c.setService(ev)
		})
	})
	run(func() { m.watchLeases(ctx, c, ready) })
	// Decide only once every cache holds the whole picture.
	for i := 0; i < 4; i++ {
		select {
		case <-ready:
		case <-ctx.Done():
			wg.Wait()
			return
		}
	}
	c.markReady()
	// A node whose lease is missing when this leader starts may simply not
	// have renewed it yet: it is given one lease period before it is
	// declared down. One timer, not a poll.
	grace := time.AfterFunc(m.LeaseTTL, c.poke)
	defer grace.Stop()
	for {
		m.reconcile(ctx, c)
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-c.kick:
		}
	}
}

// reconcile makes one pass over everything that may need a decision.
func (m *Manager) reconcile(ctx context.Context, c *cache) {
	m.reconcileNodes(ctx, c)
	m.reconcileServices(ctx, c)
	m.bind(ctx, c)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// cache is the leader's view of the cluster, fed by watches.
type cache struct {
	mu       sync.Mutex
	pods     map[string]*model.Pod
	nodes    map[string]*model.Node
	services map[string]*model.Service
	leases   map[string]bool
	ready    bool
	since    time.Time // when this leader's view became whole
	kick     chan struct{}
}

func (c *cache) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *cache) markReady() {
	c.mu.Lock()
	c.ready, c.since = true, time.Now()
	c.mu.Unlock()
}

func (c *cache) setPod(ev store.Event[*model.Pod]) {
	c.mu.Lock()
	if ev.Type == store.Deleted {
		delete(c.pods, ev.Key)
	} else if old, ok := c.pods[ev.Key]; !ok || old.Revision < ev.Object.Revision {
		c.pods[ev.Key] = ev.Object
	}
	c.mu.Unlock()
	c.poke()
}

// wrote records an object the leader itself has written, before its
// watch event comes back: the next pass must count what this one bound.
func (c *cache) wrote(p *model.Pod) {
	key := store.Key(model.KindPod, p.Tenant, p.Name)
	c.mu.Lock()
	if old, ok := c.pods[key]; ok && old.Revision < p.Revision {
		c.pods[key] = p
	}
	c.mu.Unlock()
}

func (c *cache) setNode(ev store.Event[*model.Node]) {
	c.mu.Lock()
	if ev.Type == store.Deleted {
		delete(c.nodes, ev.Key)
	} else {
		c.nodes[ev.Key] = ev.Object
	}
	c.mu.Unlock()
	c.poke()
}

func (c *cache) setService(ev store.Event[*model.Service]) {
	c.mu.Lock()
	if ev.Type == store.Deleted {
		delete(c.services, ev.Key)
	} else {
		c.services[ev.Key] = ev.Object
	}
	c.mu.Unlock()
	c.poke()
}

func (c *cache) setLease(node string, alive bool) {
	c.mu.Lock()
	if alive {
		c.leases[node] = true
	} else {
		delete(c.leases, node)
	}
	c.mu.Unlock()
	c.poke()
}

// podsSnapshot copies the cached pods.
func (c *cache) podsSnapshot() []*model.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*model.Pod, 0, len(c.pods))
	for _, p := range c.pods {
		out = append(out, p)
	}
	return out
}
