package store_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

func newStore(t *testing.T) (*store.Store, *testEtcd) {
	t.Helper()
	e := startEtcd(t)
	return store.New(e.Client), e
}

func pod(tenant, name string) *model.Pod {
	return &model.Pod{
		Meta: model.Meta{Kind: model.KindPod, Tenant: tenant, Name: name},
		Spec: model.PodSpec{
			Containers: []model.Container{{Name: "c0", Image: "busybox"}},
			Resources:  model.Resources{CPUs: 1, MemoryMiB: 128},
			Restart:    model.Restart{Policy: model.RestartNo},
			Desired:    model.DesiredRunning,
		},
		Status: model.PodStatus{Phase: model.PhasePending},
	}
}

func getPod(t *testing.T, s *store.Store, tenant, name string) *model.Pod {
	t.Helper()
	p, err := store.Get[model.Pod](t.Context(), s, model.KindPod, tenant, name)
	if err != nil {
		t.Fatalf("get pod %s/%s: %v", tenant, name, err)
	}
	return p
}

func TestKeys(t *testing.T) {
	t.Parallel()
	if k := store.Key(model.KindPod, "acme", "web"); k != "/hearth/v1/pods/acme/web" {
		t.Errorf("pod key %q", k)
	}
	if k := store.Key(model.KindNode, "", "n1"); k != "/hearth/v1/nodes/n1" {
		t.Errorf("node key %q", k)
	}
	if k := store.KindPrefix(model.KindPod, "acme"); k != "/hearth/v1/pods/acme/" {
		t.Errorf("tenant prefix %q", k)
	}
	if k := store.KindPrefix(model.KindPod, ""); k != "/hearth/v1/pods/" {
		t.Errorf("kind prefix %q", k)
	}
}

func TestCreate(t *testing.T) {
	t.Parallel()
	s, e := newStore(t)
	ctx := t.Context()

	p := pod("acme", "web")
	p.Generation = 7 // Create starts the count again
	before := time.Now().UTC()
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(p.UID) {
		t.Errorf("UID %q", p.UID)
	}
	if p.CreatedAt.Before(before.Add(-time.Second)) || p.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("CreatedAt %v, created at about %v", p.CreatedAt, before)
	}
	if p.Generation != 1 || p.APIVersion != model.APIVersion || p.Revision <= 0 {
		t.Errorf("after Create: generation %d, apiVersion %q, revision %d", p.Generation, p.APIVersion, p.Revision)
	}
	got := getPod(t, s, "acme", "web")
	if got.UID != p.UID || !got.CreatedAt.Equal(p.CreatedAt) || got.Generation != 1 || got.Revision != p.Revision {
		t.Errorf("stored %+v, created %+v", got.Meta, p.Meta)
	}
	// The revision is etcd's, never part of the stored JSON.
	resp, err := e.Client.Get(ctx, store.Key(model.KindPod, "acme", "web"))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision != p.Revision || strings.Contains(strings.ToLower(string(resp.Kvs[0].Value)), "revision") {
		t.Errorf("stored form: %s (mod revision %d)", resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	}

	// Another pod gets another UID, at a later revision.
	q := pod("acme", "web2")
	if err := s.Create(ctx, q); err != nil {
		t.Fatal(err)
	}
	if q.UID == p.UID || q.Revision <= p.Revision {
		t.Errorf("second pod UID %q revision %d, first %q %d", q.UID, q.Revision, p.UID, p.Revision)
	}

	// The same key again.
	dup := pod("acme", "web")
	err = s.Create(ctx, dup)
	if !errors.Is(err, errdefs.ErrAlreadyExists) || !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second Create: %v, want already exists", err)
	}
	if err.Error() != `pod "acme/web" already exists` {
		t.Errorf("second Create message %q", err)
	}
	if got := getPod(t, s, "acme", "web"); got.UID != p.UID || got.Revision != p.Revision {
		t.Errorf("failed Create changed the stored pod: %+v", got.Meta)
	}
	// The same name in another tenant is another object.
	if err := s.Create(ctx, pod("beta", "web")); err != nil {
		t.Fatal(err)
	}
}

func TestCreateInvalid(t *testing.T) {
	t.Parallel()
	s, e := newStore(t)
	ctx := t.Context()
	for _, p := range []*model.Pod{pod("acme", "Web"), pod("acme", ""), pod("", "web"), pod("ACME", "web")} {
		err := s.Create(ctx, p)
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Create %q/%q: %v, want invalid argument", p.Tenant, p.Name, err)
		}
	}
	n := &model.Node{Meta: model.Meta{Kind: model.KindNode, Tenant: "acme", Name: "n1"}}
	if err := s.Create(ctx, n); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Create node with a tenant: %v, want invalid argument", err)
	}
	resp, err := e.Client.Get(ctx, store.Prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("invalid creates stored %d keys", resp.Count)
	}
}

func TestGetList(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	for _, tn := range [][2]string{{"acme", "a"}, {"acme", "b"}, {"beta", "a"}, {"acme2", "c"}} {
		if err := s.Create(ctx, pod(tn[0], tn[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Create(ctx, &model.Node{Meta: model.Meta{Kind: model.KindNode, Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	_, err := store.Get[model.Pod](ctx, s, model.KindPod, "acme", "zzz")
	if !errdefs.IsNotFound(err) || err.Error() != `pod "acme/zzz" not found` {
		t.Errorf("Get missing: %v", err)
	}
	_, err = store.Get[model.Node](ctx, s, model.KindNode, "", "n2")
	if !errdefs.IsNotFound(err) || err.Error() != `node "n2" not found` {
		t.Errorf("Get missing node: %v", err)
	}
	n, err := store.Get[model.Node](ctx, s, model.KindNode, "", "n1")
	if err != nil || n.Name != "n1" || n.Kind != model.KindNode {
		t.Fatalf("Get node: %+v, %v", n, err)
	}

	names := func(pods []*model.Pod) string {
		var out []string
		for _, p := range pods {
			out = append(out, p.Tenant+"/"+p.Name)
		}
		return strings.Join(out, ",")
	}
	pods, rev, err := store.List[model.Pod](ctx, s, model.KindPod, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(pods); got != "acme/a,acme/b" {
		t.Errorf("List acme = %s (acme2 shares the prefix but is another tenant)", got)
	}
	all, rev2, err := store.List[model.Pod](ctx, s, model.KindPod, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(all); got != "acme/a,acme/b,acme2/c,beta/a" {
		t.Errorf("List all = %s", got)
	}
	for _, p := range all {
		if p.Revision <= 0 || p.Revision > rev2 {
			t.Errorf("%s/%s revision %d, list at %d", p.Tenant, p.Name, p.Revision, rev2)
		}
	}
	if rev != rev2 {
		t.Errorf("list revisions %d and %d without writes in between", rev, rev2)
	}
	none, _, err := store.List[model.Pod](ctx, s, model.KindPod, "nobody")
	if err != nil || len(none) != 0 {
		t.Errorf("List of a tenant without pods: %v, %v", none, err)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	p := pod("acme", "web")
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	stale := *p

	// A status write keeps the generation.
	p.Status.Phase = model.PhaseScheduled
	if err := s.Update(ctx, p, false); err != nil {
		t.Fatal(err)
	}
	if got := getPod(t, s, "acme", "web"); got.Generation != 1 || got.Status.Phase != model.PhaseScheduled || got.Revision != p.Revision {
		t.Fatalf("after status update: generation %d phase %s revision %d (want %d)", got.Generation, got.Status.Phase, got.Revision, p.Revision)
	}
	// A spec write bumps it.
	p.Spec.NodeName = "n1"
	if err := s.Update(ctx, p, true); err != nil {
		t.Fatal(err)
	}
	if got := getPod(t, s, "acme", "web"); got.Generation != 2 || got.Spec.NodeName != "n1" {
		t.Fatalf("after spec update: generation %d node %q", got.Generation, got.Spec.NodeName)
	}
	stored := getPod(t, s, "acme", "web")

	// A write from the stale read fails and changes nothing, neither the
	// stored object nor the caller's generation.
	stale.Spec.NodeName = "n9"
	err := s.Update(ctx, &stale, true)
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("stale Update: %v, want conflict", err)
	}
	if !strings.Contains(err.Error(), "stale") {
		t.Errorf("stale Update message %q", err)
	}
	if stale.Generation != 1 {
		t.Errorf("failed Update left the caller's generation at %d", stale.Generation)
	}
	got := getPod(t, s, "acme", "web")
	if got.Spec.NodeName != "n1" || got.Generation != 2 || got.Revision != stored.Revision {
		t.Errorf("stale Update changed the pod: node %q generation %d revision %d", got.Spec.NodeName, got.Generation, got.Revision)
	}

	// Update never creates.
	ghost := pod("acme", "ghost")
	ghost.Revision = p.Revision
	if err := s.Update(ctx, ghost, false); !errdefs.IsConflict(err) {
		t.Errorf("Update of a missing pod at a revision: %v, want conflict", err)
	}
	if _, err := store.Get[model.Pod](ctx, s, model.KindPod, "acme", "ghost"); !errdefs.IsNotFound(err) {
		t.Errorf("Update created a pod: %v", err)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	a, b := pod("acme", "a"), pod("acme", "b")
	for _, p := range []*model.Pod{a, b} {
		if err := s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// Unconditional.
	if err := s.Delete(ctx, model.KindPod, "acme", "a", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get[model.Pod](ctx, s, model.KindPod, "acme", "a"); !errdefs.IsNotFound(err) {
		t.Fatalf("deleted pod: %v", err)
	}
	err := s.Delete(ctx, model.KindPod, "acme", "a", 0)
	if !errdefs.IsNotFound(err) || err.Error() != `pod "acme/a" not found` {
		t.Errorf("delete of a missing pod: %v", err)
	}

	// Conditional on a stale revision.
	stale := b.Revision
	b.Status.Phase = model.PhaseRunning
	if err := s.Update(ctx, b, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, model.KindPod, "acme", "b", stale); !errdefs.IsConflict(err) {
		t.Fatalf("delete at a stale revision: %v, want conflict", err)
	}
	if got := getPod(t, s, "acme", "b"); got.Status.Phase != model.PhaseRunning {
		t.Fatalf("pod after failed delete: %+v", got.Status)
	}
	// Conditional on the current one.
	if err := s.Delete(ctx, model.KindPod, "acme", "b", b.Revision); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Get[model.Pod](ctx, s, model.KindPod, "acme", "b"); !errdefs.IsNotFound(err) {
		t.Fatalf("deleted pod: %v", err)
	}
}

// A conditional delete of an object that is already gone should say so:
// callers (the service controller's deletePod) treat not found as done.
func TestDeleteConditionalMissing(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	p := pod("acme", "a")
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, model.KindPod, "acme", "a", 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, model.KindPod, "acme", "a", p.Revision); !errdefs.IsNotFound(err) {
		t.Fatalf("conditional delete of a deleted pod: %v, want not found", err)
	}
}

func TestModifyConcurrent(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	p := pod("acme", "counter")
	p.Labels = map[string]string{"n": "0"}
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 10
	var wg sync.WaitGroup
	errc := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				_, err := store.Modify[model.Pod](ctx, s, model.KindPod, "acme", "counter", func(p *model.Pod) (bool, error) {
					n, err := strconv.Atoi(p.Labels["n"])
					if err != nil {
						return false, err
					}
					p.Labels["n"] = strconv.Itoa(n + 1)
					return false, nil
				})
				if err != nil {
					errc <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	got := getPod(t, s, "acme", "counter")
	if got.Labels["n"] != strconv.Itoa(workers*each) {
		t.Fatalf("counter %s after %d increments", got.Labels["n"], workers*each)
	}
	if got.Generation != 1 {
		t.Errorf("label-only Modify bumped the generation to %d", got.Generation)
	}
}

func TestModifyRetriesPastConcurrentWriter(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	p := pod("acme", "web")
	p.Labels = map[string]string{"n": "0"}
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	calls := 0
	got, err := store.Modify[model.Pod](ctx, s, model.KindPod, "acme", "web", func(p *model.Pod) (bool, error) {
		calls++
		if calls == 1 {
			// Someone else writes between our read and our write.
			other := getPod(t, s, "acme", "web")
			other.Labels["other"] = "yes"
			if err := s.Update(ctx, other, false); err != nil {
				return false, err
			}
		}
		p.Labels["n"] = "1"
		p.Spec.Hostname = "h"
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("fn called %d times, want 2 (one retry)", calls)
	}
	stored := getPod(t, s, "acme", "web")
	if stored.Labels["n"] != "1" || stored.Labels["other"] != "yes" || stored.Spec.Hostname != "h" {
		t.Errorf("stored labels %v hostname %q: a write was lost", stored.Labels, stored.Spec.Hostname)
	}
	if stored.Generation != 2 || got.Generation != 2 || got.Revision != stored.Revision {
		t.Errorf("generation stored %d returned %d, revision stored %d returned %d", stored.Generation, got.Generation, stored.Revision, got.Revision)
	}
}

func TestModifySkipAndErrors(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	p := pod("acme", "web")
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := store.Modify[model.Pod](ctx, s, model.KindPod, "acme", "web", func(p *model.Pod) (bool, error) {
		p.Spec.Hostname = "changed"
		return true, store.ErrSkip
	})
	if err != nil || got == nil || got.Name != "web" {
		t.Fatalf("Modify with ErrSkip: %v, %v", got, err)
	}
	if stored := getPod(t, s, "acme", "web"); stored.Revision != p.Revision || stored.Spec.Hostname != "" || stored.Generation != 1 {
		t.Fatalf("ErrSkip wrote: revision %d (was %d), hostname %q", stored.Revision, p.Revision, stored.Spec.Hostname)
	}
	// Wrapped ErrSkip is skipped too.
	if _, err := store.Modify[model.Pod](ctx, s, model.KindPod, "acme", "web", func(p *model.Pod) (bool, error) {
		p.Spec.Hostname = "changed"
		return false, fmt.Errorf("nothing to do: %w", store.ErrSkip)
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if _, err := store.Modify[model.Pod](ctx, s, model.KindPod, "acme", "web", func(p *model.Pod) (bool, error) {
		p.Spec.Hostname = "changed"
		return false, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Modify with an error: %v", err)
	}
	if stored := getPod(t, s, "acme", "web"); stored.Revision != p.Revision {
		t.Fatalf("failed Modify wrote")
	}
	called := false
	if _, err := store.Modify[model.Pod](ctx, s, model.KindPod, "acme", "nope", func(p *model.Pod) (bool, error) {
		called = true
		return false, nil
	}); !errdefs.IsNotFound(err) || called {
		t.Fatalf("Modify of a missing pod: %v (fn called: %v)", err, called)
	}
}

// event is a Watch event as a test sees it.
type event struct {
	typ     store.EventType
	key     string
	name    string
	labels  string
	rev     int64
	initial bool
	marker  bool // the end of a list
}

func (e event) String() string {
	switch {
	case e.marker:
		return "end-of-list"
	case e.typ == store.Deleted:
		return "deleted " + e.name
	case e.initial:
		return "initial " + e.name
	}
	return "put " + e.name
}

// watcher runs store.Watch over pods and records what it delivers.
type watcher struct {
	mu     sync.Mutex
	events []event
	hook   func(ev store.Event[*model.Pod], initial bool)
}

func (w *watcher) fn(ev store.Event[*model.Pod], initial bool) {
	if w.hook != nil {
		w.hook(ev, initial)
	}
	e := event{initial: initial, key: ev.Key, typ: ev.Type}
	if ev.Object == nil {
		e.marker = true
	} else {
		e.name = ev.Object.Tenant + "/" + ev.Object.Name
		e.labels = fmt.Sprint(ev.Object.Labels)
		e.rev = ev.Object.Revision
	}
	w.mu.Lock()
	w.events = append(w.events, e)
	w.mu.Unlock()
}

func (w *watcher) snapshot() []event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]event(nil), w.events...)
}

func (w *watcher) strings(from int) string {
	var out []string
	for _, e := range w.snapshot()[from:] {
		out = append(out, e.String())
	}
	return strings.Join(out, "; ")
}

// start runs the watch until the test ends.
func (w *watcher) start(t *testing.T, s *store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- store.Watch[model.Pod](ctx, s, model.KindPod, w.fn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Watch returned %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Watch did not return after its context ended")
		}
	})
}

func (w *watcher) waitFor(t *testing.T, from int, want string) {
	t.Helper()
	eventually(t, 10*time.Second, "watch events "+want, func() bool { return w.strings(from) == want })
}

func TestWatch(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	for _, n := range []string{"b", "a"} {
		if err := s.Create(ctx, pod("acme", n)); err != nil {
			t.Fatal(err)
		}
	}
	w := &watcher{}
	w.start(t, s)
	w.waitFor(t, 0, "initial acme/a; initial acme/b; end-of-list")
	ev := w.snapshot()
	if ev[0].key != store.Key(model.KindPod, "acme", "a") || ev[0].typ != store.Put || ev[0].rev <= 0 {
		t.Errorf("first event %+v", ev[0])
	}
	if ev[2].initial {
		t.Errorf("end-of-list marker has initial set")
	}

	// Changes arrive in order: create, update, delete; other kinds are
	// not seen.
	if err := s.Create(ctx, pod("beta", "c")); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, &model.Service{Meta: model.Meta{Kind: model.KindService, Tenant: "acme", Name: "svc"}}); err != nil {
		t.Fatal(err)
	}
	a, err := store.Modify[model.Pod](ctx, s, model.KindPod, "acme", "a", func(p *model.Pod) (bool, error) {
		p.Labels = map[string]string{"x": "1"}
		return false, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b := getPod(t, s, "acme", "b")
	if err := s.Delete(ctx, model.KindPod, "acme", "b", 0); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, 3, "put beta/c; put acme/a; deleted acme/b")
	ev = w.snapshot()[3:]
	if ev[1].labels != "map[x:1]" || ev[1].rev != a.Revision || ev[1].initial {
		t.Errorf("update event %+v, want labels x=1 at revision %d", ev[1], a.Revision)
	}
	if ev[2].key != store.Key(model.KindPod, "acme", "b") || ev[2].rev != b.Revision {
		t.Errorf("delete event %+v: want key of acme/b and its last revision %d", ev[2], b.Revision)
	}
}

func TestWatchSurvivesCompaction(t *testing.T) {
	t.Parallel()
	s, e := newStore(t)
	ctx := t.Context()
	w := &watcher{}
	w.start(t, s)
	w.waitFor(t, 0, "end-of-list")
	for i := 1; i <= 3; i++ {
		if err := s.Create(ctx, pod("acme", fmt.Sprintf("p%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	w.waitFor(t, 1, "put acme/p1; put acme/p2; put acme/p3")
	p3 := getPod(t, s, "acme", "p3")
	if _, err := e.Client.Compact(ctx, p3.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 6; i++ {
		if err := s.Create(ctx, pod("acme", fmt.Sprintf("p%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(ctx, model.KindPod, "acme", "p1", 0); err != nil {
		t.Fatal(err)
	}
	// What arrives after the compaction, past any list again.
	want := []string{"put acme/p4", "put acme/p5", "put acme/p6", "deleted acme/p1"}
	eventually(t, 10*time.Second, "events after the compaction", func() bool {
		var got []string
		for _, e := range w.snapshot()[4:] {
			if !e.initial && !e.marker {
				got = append(got, e.String())
			}
		}
		return strings.Join(got, "; ") == strings.Join(want, "; ")
	})
}

// When the history a watch needs is compacted away, Watch lists again.
// Objects deleted in the gap are in the consumer's view from the first
// list and must be reported gone: the controller's cache and the agent's
// workers only learn of deletions from Deleted events.
func TestWatchRelistReportsDeletionsInTheGap(t *testing.T) {
	t.Parallel()
	s, e := newStore(t)
	ctx := t.Context()
	for _, n := range []string{"a", "b"} {
		if err := s.Create(ctx, pod("acme", n)); err != nil {
			t.Fatal(err)
		}
	}
	w := &watcher{}
	var once sync.Once
	w.hook = func(ev store.Event[*model.Pod], initial bool) {
		if !initial || ev.Object.Name != "a" {
			return
		}
		once.Do(func() {
			// Between Watch's list and its watch: b goes, c comes, and
			// etcd compacts the history the watch would start from.
			if err := s.Delete(ctx, model.KindPod, "acme", "b", 0); err != nil {
				t.Error(err)
			}
			c := pod("acme", "c")
			if err := s.Create(ctx, c); err != nil {
				t.Error(err)
			}
			if _, err := e.Client.Compact(ctx, c.Revision); err != nil {
				t.Error(err)
			}
		})
	}
	w.start(t, s)
	// The watch lists again, and so sees c.
	eventually(t, 10*time.Second, "c", func() bool { return strings.Contains(w.strings(0), "acme/c") })
	if err := s.Create(ctx, pod("acme", "d")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "d", func() bool { return strings.Contains(w.strings(0), "put acme/d") })
	if got := w.strings(0); !strings.Contains(got, "deleted acme/b") {
		t.Fatalf("events %s: b was delivered by the first list and never reported deleted", got)
	}
}

func TestNoQuorumIsUnavailable(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.URL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	s := store.New(cli)
	ctx := t.Context()
	p := pod("acme", "web")
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	e.Stop()

	ops := map[string]func() error{
		"get": func() error {
			_, err := store.Get[model.Pod](ctx, s, model.KindPod, "acme", "web")
			return err
		},
		"list": func() error {
			_, _, err := store.List[model.Pod](ctx, s, model.KindPod, "")
			return err
		},
		"create": func() error { return s.Create(ctx, pod("acme", "other")) },
		"update": func() error { return s.Update(ctx, p, false) },
		"delete": func() error { return s.Delete(ctx, model.KindPod, "acme", "web", 0) },
	}
	var wg sync.WaitGroup
	for name, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			errc := make(chan error, 1)
			go func() { errc <- op() }()
			select {
			case err := <-errc:
				if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "no quorum") {
					t.Errorf("%s without etcd: %v, want unavailable: no quorum", name, err)
				}
				if d := time.Since(start); d > 10*time.Second {
					t.Errorf("%s took %v", name, d)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("%s without etcd hangs", name)
			}
		}()
	}
	wg.Wait()
}

// A caller's cancellation is not an outage.
func TestCanceledIsNotUnavailable(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := store.Get[model.Pod](ctx, s, model.KindPod, "acme", "web")
	if !errors.Is(err, context.Canceled) || errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Get with a canceled context: %v", err)
	}
}
