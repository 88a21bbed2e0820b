package docker

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// eventHistory is how many past events `docker events --since` can see,
// per node (Docker keeps a similar window in memory).
const eventHistory = 4096

type event struct {
	tenant string
	msg    events.Message
}

// eventBus keeps recent events and hands new ones to subscribers.
type eventBus struct {
	mu     sync.Mutex
	past   []event
	subs   map[chan event]bool
	closed bool
	// seen is the store revision the pod watch has turned into events;
	// advanced is closed (and replaced) whenever it moves.
	seen     int64
	advanced chan struct{}
}

func newEventBus() *eventBus {
	return &eventBus{subs: map[chan event]bool{}, advanced: make(chan struct{})}
}

// saw records that the events of revision rev are out.
func (b *eventBus) saw(rev int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rev > b.seen {
		b.seen = rev
		close(b.advanced)
		b.advanced = make(chan struct{})
	}
}

// waitSeen waits, at most limit, until the events of revision rev are
// out: a frontend's own event (stop) then follows the die it caused.
func (b *eventBus) waitSeen(ctx context.Context, rev int64, limit time.Duration) {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		b.mu.Lock()
		seen, ch := b.seen, b.advanced
		b.mu.Unlock()
		if seen >= rev {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (b *eventBus) publish(e event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	b.past = append(b.past, e)
	if len(b.past) > eventHistory {
		b.past = append(b.past[:0:0], b.past[len(b.past)-eventHistory:]...)
	}
	for ch := range b.subs {
		select {
		case ch <- e:
		default:
			// A subscriber that does not keep up loses it rather than
			// holding everyone up.
		}
	}
}

// subscribe returns the events kept so far and a channel of the next
// ones; cancel ends the subscription.
func (b *eventBus) subscribe() ([]event, chan event, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan event, 256)
	past := append([]event(nil), b.past...)
	if b.closed {
		close(ch)
		return past, ch, func() {}
	}
	b.subs[ch] = true
	return past, ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.subs[ch] {
			delete(b.subs, ch)
			close(ch)
		}
	}
}

func (b *eventBus) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		close(ch)
	}
	b.subs = map[chan event]bool{}
}

// emit records an event of a tenant.
func (s *Server) emit(tenant string, typ events.Type, action events.Action, id string, attrs map[string]string) {
	if s.events == nil {
		return
	}
	now := time.Now()
	if attrs == nil {
		attrs = map[string]string{}
	}
	s.events.publish(event{tenant: tenant, msg: events.Message{
		Type: typ, Action: action, Actor: events.Actor{ID: id, Attributes: attrs},
		Scope: "local", Time: now.Unix(), TimeNano: now.UnixNano(),
	}})
}

// Run turns the pods' changes into container events until ctx ends: what
// the agents do to a container (it starts, dies, turns healthy) is seen
// here, on every node, as Docker's daemon sees its own containers.
func (s *Server) Run(ctx context.Context) error {
	if s.events == nil {
		s.events = newEventBus()
	}
	last := map[string]*model.Pod{}
	err := store.Watch[model.Pod](ctx, s.Store, model.KindPod, func(ev store.Event[*model.Pod], initial bool) {
		p := ev.Object
		if p == nil {
			return
		}
		defer s.events.saw(p.Revision)
		old := last[ev.Key]
		if ev.Type == store.Deleted {
			delete(last, ev.Key)
		} else {
			last[ev.Key] = p
		}
		if initial {
			return
		}
		c, ok := asContainer(p)
		if !ok {
			return
		}
		attrs := func(extra ...string) map[string]string {
			a := maps.Clone(c.pod.Labels)
			if a == nil {
				a = map[string]string{}
			}
			a["name"], a["image"] = c.pod.Alias, c.cfg.Image
			for i := 0; i+1 < len(extra); i += 2 {
				a[extra[i]] = extra[i+1]
			}
			return a
		}
		if ev.Type == store.Deleted {
			s.emit(p.Tenant, events.ContainerEventType, events.ActionDestroy, p.Name, attrs())
			return
		}
		if old == nil {
			s.emit(p.Tenant, events.ContainerEventType, events.ActionCreate, p.Name, attrs())
			return
		}
		was, now := old.Status.Phase, p.Status.Phase
		if now == model.PhaseRunning && (was != model.PhaseRunning || old.Status.CradleID != p.Status.CradleID) {
			s.emit(p.Tenant, events.ContainerEventType, events.ActionStart, p.Name, attrs())
		}
		if model.Terminal(now) && (!model.Terminal(was) || !old.Status.FinishedAt.Equal(p.Status.FinishedAt)) {
			s.emit(p.Tenant, events.ContainerEventType, events.ActionDie, p.Name, attrs("exitCode", strconv.Itoa(p.Status.ExitCode)))
			for _, cs := range p.Status.Containers {
				if cs.OOMKilled {
					s.emit(p.Tenant, events.ContainerEventType, events.ActionOOM, p.Name, attrs())
				}
			}
		}
		// A run starts as "starting" without an event, as with Docker.
		wasHealth := model.HealthStarting
		if old.Status.Health != nil {
			wasHealth = old.Status.Health.Status
		}
		if h := p.Status.Health; h != nil && h.Status != wasHealth {
			s.emit(p.Tenant, events.ContainerEventType, events.Action("health_status: "+h.Status), p.Name, attrs("healthStatus", h.Status))
		}
		if (old.Status.Reason == reasonPaused) != (p.Status.Reason == reasonPaused) && now == model.PhaseRunning {
			action := events.ActionUnPause
			if p.Status.Reason == reasonPaused {
				action = events.ActionPause
			}
			s.emit(p.Tenant, events.ContainerEventType, action, p.Name, attrs())
		}
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// getEvents is GET /events: past events from since, then new ones until
// until (or the client leaves).
func (s *Server) getEvents(w http.ResponseWriter, r *http.Request, tenant string) {
	f, err := parseFilters(r, "type", "event", "container", "image", "label", "network", "volume", "daemon", "scope", "plugin", "node", "service", "secret", "config")
	if err != nil {
		writeError(w, err)
		return
	}
	now := time.Now()
	var since, until time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		if since, err = parseTime(v, now); err != nil {
			writeError(w, err)
			return
		}
	}
	if v := r.URL.Query().Get("until"); v != "" {
		if until, err = parseTime(v, now); err != nil {
			writeError(w, err)
			return
		}
	}
	past, ch, cancel := s.events.subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flush(w)
	enc := json.NewEncoder(w)
	send := func(e event) bool {
		if e.tenant != tenant || !f.matchEvent(e.msg) {
			return true
		}
		t := time.Unix(0, e.msg.TimeNano)
		if !until.IsZero() && t.After(until) {
			return true
		}
		if err := enc.Encode(e.msg); err != nil {
			return false
		}
		flush(w)
		return true
	}
	if !since.IsZero() {
		for _, e := range past {
			if !time.Unix(0, e.msg.TimeNano).Before(since) && !send(e) {
				return
			}
		}
	}
	if !until.IsZero() && !until.After(now) {
		return
	}
	var deadline <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		deadline = t.C
	}
	for {
		select {
		case e, ok := <-ch:
			if !ok || !send(e) {
				return
			}
		case <-deadline:
			return
		case <-r.Context().Done():
			return
		}
	}
}

// matchEvent applies docker events --filter.
func (f filters) matchEvent(m events.Message) bool {
	match := func(key string, fn func(v string) bool) bool {
		vs := f[key]
		return len(vs) == 0 || anyOf(vs, fn)
	}
	return match("type", func(v string) bool { return v == string(m.Type) }) &&
		match("event", func(v string) bool {
			return v == string(m.Action) || strings.HasPrefix(string(m.Action), v+":")
		}) &&
		match("container", func(v string) bool {
			return m.Type == events.ContainerEventType && (strings.HasPrefix(m.Actor.ID, v) || m.Actor.Attributes["name"] == strings.TrimPrefix(v, "/"))
		}) &&
		match("image", func(v string) bool {
			return m.Actor.Attributes["image"] == v || (m.Type == events.ImageEventType && (m.Actor.ID == v || m.Actor.Attributes["name"] == v))
		}) &&
		match("scope", func(v string) bool { return v == "local" }) &&
		f.matchLabels(m.Actor.Attributes) &&
		f.matchObject("network", events.NetworkEventType, m) && f.matchObject("volume", events.VolumeEventType, m) &&
		f.matchObject("plugin", events.PluginEventType, m) && f.matchObject("node", events.NodeEventType, m) &&
		f.matchObject("service", events.ServiceEventType, m) && f.matchObject("secret", events.SecretEventType, m) &&
		f.matchObject("config", events.ConfigEventType, m) && f.matchObject("daemon", events.DaemonEventType, m)
}

// matchObject applies a filter on the objects of one event type: only
// events of that type and object pass it.
func (f filters) matchObject(key string, typ events.Type, m events.Message) bool {
	vs := f[key]
	return len(vs) == 0 || (m.Type == typ && anyOf(vs, func(v string) bool {
		return m.Actor.ID == v || m.Actor.Attributes["name"] == v
	}))
}
