package tenancy

import (
	"context"
	"fmt"
	"time"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Removed counts what a removal deleted, by kind.
type Removed map[string]int

// Remove deletes tenant name and everything it owns. Its credentials stop
// working first; then its services go (so no controller makes new pods),
// its pods (whose nodes stop their VMs), volumes (whose nodes delete the
// data), networks, secrets and configs, and last its record, on whose
// deletion each node forgets the tenant's images and registry logins. A
// removal cut short is finished by the next one.
func (m *Manager) Remove(ctx context.Context, name string) (Removed, error) {
	if name == Admin {
		return nil, errdefs.InvalidArgument("the admin's own tenant cannot be removed")
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	_, err := store.Modify[model.Tenant](ctx, m.Store, model.KindTenant, "", name, func(t *model.Tenant) (bool, error) {
		if t.Spec.Removing {
			return false, store.ErrSkip
		}
		t.Spec.Removing = true
		return true, nil
	})
	recorded := err == nil
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	// Calls that were admitted before the mark may still make things:
	// passes go on until one finds nothing.
	removed := Removed{}
	for pass := 0; pass < 10; pass++ {
		found := 0
		for _, kind := range []string{model.KindService, model.KindPod, model.KindVolume, model.KindNetwork, model.KindSecret, model.KindConfig} {
			n, err := m.removeAll(ctx, kind, name)
			removed[kind] += n
			found += n
			if err != nil {
				return removed, fmt.Errorf("remove tenant %s: %w", name, err)
			}
		}
		if found == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return removed, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if !recorded {
		// No record: what was left of a tenant whose record went
		// first is swept, and nothing at all is not found.
		if removed.total() == 0 {
			return nil, m.notFound(name, errdefs.NotFound("no such tenant"))
		}
		return removed, nil
	}
	if err := m.Store.Delete(ctx, model.KindTenant, "", name, 0); err != nil && !errdefs.IsNotFound(err) {
		return removed, fmt.Errorf("remove tenant %s: %w", name, err)
	}
	return removed, nil
}

func (r Removed) total() int {
	n := 0
	for _, c := range r {
		n += c
	}
	return n
}

// removeAll deletes every object of kind that tenant owns.
func (m *Manager) removeAll(ctx context.Context, kind, tenant string) (int, error) {
	objs, _, err := store.List[model.Meta](ctx, m.Store, kind, tenant)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, o := range objs {
		if err := m.Store.Delete(ctx, kind, tenant, o.Name, 0); err != nil {
			if errdefs.IsNotFound(err) {
				continue
			}
			return n, err
		}
		n++
	}
	return n, nil
}

// FollowRemovals calls gone for each tenant whose record is deleted, and
// at start for each tenant that local reports having data of but that
// has neither a record nor pods (removed while this node was down). The
// admin is never gone. It returns when ctx ends.
func FollowRemovals(ctx context.Context, st *store.Store, local func() ([]string, error), gone func(tenant string)) error {
	// What is here is read before the records, so that a tenant made
	// in between is never taken for a removed one.
	here, _ := local()
	known := map[string]bool{Admin: true}
	listed := false
	err := store.Watch[model.Tenant](ctx, st, model.KindTenant, func(ev store.Event[*model.Tenant], initial bool) {
		switch {
		case !listed && ev.Object == nil:
			listed = true
			for _, t := range here {
				if known[t] {
					continue
				}
				// Without a record, but with pods (the admin may make
				// pods for any tenant name): not removed.
				pods, _, err := store.List[model.Meta](ctx, st, model.KindPod, t)
				if err == nil && len(pods) == 0 {
					gone(t)
				}
			}
		case !listed:
			known[ev.Object.Name] = true
		case ev.Type == store.Deleted && ev.Object != nil:
			gone(ev.Object.Name)
		}
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}
