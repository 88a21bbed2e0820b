package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

func aliased(tenant, name, alias string) *model.Pod {
	p := pod(tenant, name)
	p.Alias = alias
	return p
}

func TestAliasUnique(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	if err := s.Create(ctx, aliased("acme", "id1", "web")); err != nil {
		t.Fatal(err)
	}
	err := s.Create(ctx, aliased("acme", "id2", "web"))
	var inUse *store.AliasInUseError
	if !errors.As(err, &inUse) || inUse.Holder != "id1" || !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second claim: %v", err)
	}
	// Nothing half-made: id2 does not exist.
	if _, err := store.Get[model.Pod](ctx, s, model.KindPod, "acme", "id2"); !errdefs.IsNotFound(err) {
		t.Fatalf("id2 after failed create: %v", err)
	}
	// Another tenant may use the same alias.
	if err := s.Create(ctx, aliased("other", "id2", "web")); err != nil {
		t.Fatal(err)
	}
	p, err := store.GetByAlias[model.Pod](ctx, s, model.KindPod, "acme", "web")
	if err != nil || p.Name != "id1" {
		t.Fatalf("by alias: %v %v", p, err)
	}
	if _, err := store.GetByAlias[model.Pod](ctx, s, model.KindPod, "acme", "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown alias: %v", err)
	}
	if err := s.Create(ctx, aliased("acme", "id3", "a/b")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad alias: %v", err)
	}
}

func TestAliasFreedByDelete(t *testing.T) {
	t.Parallel()
	s, e := newStore(t)
	ctx := t.Context()
	if err := s.Create(ctx, aliased("acme", "id1", "web")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, model.KindPod, "acme", "id1", 0); err != nil {
		t.Fatal(err)
	}
	resp, err := e.Client.Get(ctx, store.AliasKey(model.KindPod, "acme", "web"))
	if err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("alias key after delete: %v %v", resp.Kvs, err)
	}
	if err := s.Create(ctx, aliased("acme", "id2", "web")); err != nil {
		t.Fatal(err)
	}
}

func TestAliasStaleTakenOver(t *testing.T) {
	t.Parallel()
	s, e := newStore(t)
	ctx := t.Context()
	// A crash between a delete and its alias cleanup leaves a key behind.
	if _, err := e.Client.Put(ctx, store.AliasKey(model.KindPod, "acme", "web"), "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetByAlias[model.Pod](ctx, s, model.KindPod, "acme", "web"); !errdefs.IsNotFound(err) {
		t.Fatalf("stale alias resolves: %v", err)
	}
	if err := s.Create(ctx, aliased("acme", "id1", "web")); err != nil {
		t.Fatalf("claim over a stale alias: %v", err)
	}
	if p, err := store.GetByAlias[model.Pod](ctx, s, model.KindPod, "acme", "web"); err != nil || p.Name != "id1" {
		t.Fatalf("by alias: %v %v", p, err)
	}
}

func TestRename(t *testing.T) {
	t.Parallel()
	s, e := newStore(t)
	ctx := t.Context()
	for _, p := range []*model.Pod{aliased("acme", "id1", "web"), aliased("acme", "id2", "db")} {
		if err := s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	before := getPod(t, s, "acme", "id1")
	if err := s.Rename(ctx, model.KindPod, "acme", "id1", "db"); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("rename onto a held name: %v", err)
	}
	if err := s.Rename(ctx, model.KindPod, "acme", "id1", "front"); err != nil {
		t.Fatal(err)
	}
	after := getPod(t, s, "acme", "id1")
	if after.Alias != "front" || after.Generation != before.Generation || after.UID != before.UID {
		t.Fatalf("after rename: %+v", after.Meta)
	}
	if resp, _ := e.Client.Get(ctx, store.AliasKey(model.KindPod, "acme", "web")); len(resp.Kvs) != 0 {
		t.Fatal("old alias kept")
	}
	// The old name is free again.
	if err := s.Create(ctx, aliased("acme", "id3", "web")); err != nil {
		t.Fatal(err)
	}
	if err := s.Rename(ctx, model.KindPod, "acme", "nope", "x"); !errdefs.IsNotFound(err) {
		t.Fatalf("rename unknown: %v", err)
	}
	if err := s.Rename(ctx, model.KindPod, "acme", "id1", "front"); err != nil {
		t.Fatalf("rename to its own name: %v", err)
	}
}

func TestAliasRace(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Create(ctx, aliased("acme", "id"+string(rune('a'+i)), "web"))
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else if !errdefs.IsAlreadyExists(err) {
			t.Errorf("create: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d creates claimed one alias", won)
	}
}

func TestWaitFor(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t)
	ctx := t.Context()
	done := make(chan *model.Pod, 1)
	go func() {
		p, err := store.WaitFor[model.Pod](ctx, s, model.KindPod, "acme", "w", func(p *model.Pod) bool {
			return p != nil && p.Status.Phase == model.PhaseRunning
		})
		if err != nil {
			t.Error(err)
		}
		done <- p
	}()
	if err := s.Create(ctx, pod("acme", "w")); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Modify[model.Pod](ctx, s, model.KindPod, "acme", "w", func(p *model.Pod) (bool, error) {
		p.Status.Phase = model.PhaseRunning
		return false, nil
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-done:
		if p.Status.Phase != model.PhaseRunning {
			t.Fatalf("phase %s", p.Status.Phase)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitFor did not return")
	}
	// A wait for a deletion.
	gone := make(chan error, 1)
	go func() {
		_, err := store.WaitFor[model.Pod](ctx, s, model.KindPod, "acme", "w", func(p *model.Pod) bool { return p == nil })
		gone <- err
	}()
	time.Sleep(50 * time.Millisecond)
	if err := s.Delete(ctx, model.KindPod, "acme", "w", 0); err != nil {
		t.Fatal(err)
	}
	if err := <-gone; err != nil {
		t.Fatal(err)
	}
	// Cancellation ends a wait.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := store.WaitFor[model.Pod](cctx, s, model.KindPod, "acme", "never", func(p *model.Pod) bool { return p != nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled wait: %v", err)
	}
}
