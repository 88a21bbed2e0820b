// Package store is macro's typed access to etcd: keys, revisions,
// optimistic concurrency, watches and leases. Frontends and controllers
// use it and never touch etcd keys themselves.
//
// Objects live at /hearth/v1/<kind>/<tenant>/<name> (cluster-scoped kinds
// without the tenant). A write is acknowledged only after etcd has
// committed it, which is after a quorum has it on disk.
package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
)

// Prefix is the root of Hearth's keys.
const Prefix = "/hearth/v1/"

// opTimeout bounds one etcd operation: without a quorum, etcd would wait
// forever; callers get a clear "no quorum" error instead.
const opTimeout = 5 * time.Second

// Store is the object store.
type Store struct {
	cli *clientv3.Client
}

// New wraps an etcd client.
func New(cli *clientv3.Client) *Store { return &Store{cli: cli} }

// Client is the etcd client, for leases and elections.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Key is where an object lives.
func Key(kind, tenant, name string) string {
	if tenant == "" {
		return Prefix + kind + "/" + name
	}
	return Prefix + kind + "/" + tenant + "/" + name
}

// KindPrefix covers every object of a kind, or of a kind and tenant.
func KindPrefix(kind, tenant string) string {
	if tenant == "" {
		return Prefix + kind + "/"
	}
	return Prefix + kind + "/" + tenant + "/"
}

// PtrObject is a pointer to a stored kind.
type PtrObject[T any] interface {
	*T
	model.Object
}

func newUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Create stores a new object. It fills in the UID, creation time and
// generation, and the revision once stored.
func (s *Store) Create(ctx context.Context, obj model.Object) error {
	m := obj.GetMeta()
	if err := m.Validate(m.Kind); err != nil {
		return errdefs.InvalidArgument("%v", err)
	}
	m.APIVersion = model.APIVersion
	if m.UID == "" {
		m.UID = newUID()
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	if m.Alias != "" && (!ValidAlias(m.Alias) || m.Tenant == "") {
		return errdefs.InvalidArgument("invalid name %q", m.Alias)
	}
	m.Generation = 1
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	key := Key(m.Kind, m.Tenant, m.Name)
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if m.Alias != "" {
		return s.createWithAlias(ctx, m, b)
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		return etcdError(err)
	}
	if !resp.Succeeded {
		return errdefs.AlreadyExists("%s %q already exists", singular(m.Kind), name(m))
	}
	m.Revision = resp.Header.Revision
	return nil
}

// Update replaces an object that is still at the revision it was read at.
// specChanged bumps the generation.
func (s *Store) Update(ctx context.Context, obj model.Object, specChanged bool) error {
	m := obj.GetMeta()
	if specChanged {
		m.Generation++
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	key := Key(m.Kind, m.Tenant, m.Name)
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", m.Revision)).
		Then(clientv3.OpPut(key, string(b))).
		Commit()
	if err != nil {
		if specChanged {
			m.Generation--
		}
		return etcdError(err)
	}
	if !resp.Succeeded {
		if specChanged {
			m.Generation--
		}
		return errdefs.Conflict("%s %q was changed by someone else (revision %d is stale)", singular(m.Kind), name(m), m.Revision)
	}
	m.Revision = resp.Header.Revision
	return nil
}

// Delete removes an object; rev > 0 makes it conditional on the revision.
func (s *Store) Delete(ctx context.Context, kind, tenant, nm string, rev int64) error {
	key := Key(kind, tenant, nm)
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	cmp := clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
	if rev > 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(key), "=", rev)
	}
	resp, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpDelete(key, clientv3.WithPrevKV())).Else(clientv3.OpGet(key, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return etcdError(err)
	}
	if !resp.Succeeded {
		if rev > 0 && resp.Responses[0].GetResponseRange().Count > 0 {
			return errdefs.Conflict("%s %q was changed by someone else", singular(kind), joinName(tenant, nm))
		}
		return errdefs.NotFound("%s %q not found", singular(kind), joinName(tenant, nm))
	}
	if prev := resp.Responses[0].GetResponseDeleteRange().PrevKvs; len(prev) > 0 {
		s.dropAlias(ctx, kind, tenant, nm, prev[0].Value)
	}
	return nil
}

// WaitFor follows one object until cond holds for it, and returns it
// then. cond sees nil while the object does not exist, so a wait for a
// deletion is a cond that holds for nil. It returns ctx's error when ctx
// ends first.
func WaitFor[T any, P PtrObject[T]](ctx context.Context, s *Store, kind, tenant, nm string, cond func(P) bool) (P, error) {
	key := Key(kind, tenant, nm)
	for {
		gctx, cancel := context.WithTimeout(ctx, opTimeout)
		resp, err := s.cli.Get(gctx, key)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if !sleep(ctx, 200*time.Millisecond) {
				return nil, ctx.Err()
			}
			continue
		}
		var cur P
		if len(resp.Kvs) > 0 {
			if cur, err = decode[T, P](resp.Kvs[0]); err != nil {
				return nil, err
			}
		}
		if cond(cur) {
			return cur, nil
		}
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			for _, e := range wr.Events {
				var p P
				if e.Type == clientv3.EventTypePut {
					if p, err = decode[T, P](e.Kv); err != nil {
						wcancel()
						return nil, err
					}
				}
				if cond(p) {
					wcancel()
					return p, nil
				}
			}
		}
		wcancel()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The watch broke (a compaction, a lost leader): read again.
		if !sleep(ctx, 100*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
}

// Get reads one object.
func Get[T any, P PtrObject[T]](ctx context.Context, s *Store, kind, tenant, nm string) (P, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, Key(kind, tenant, nm))
	if err != nil {
		return nil, etcdError(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errdefs.NotFound("%s %q not found", singular(kind), joinName(tenant, nm))
	}
	return decode[T, P](resp.Kvs[0])
}

func decode[T any, P PtrObject[T]](kv *mvccpb.KeyValue) (P, error) {
	var v T
	p := P(&v)
	if err := json.Unmarshal(kv.Value, p); err != nil {
		return nil, fmt.Errorf("corrupt object at %s: %w", kv.Key, err)
	}
	p.GetMeta().Revision = kv.ModRevision
	return p, nil
}

// List reads every object of a kind (of one tenant, or of all when tenant
// is empty) and the revision the list is consistent at.
func List[T any, P PtrObject[T]](ctx context.Context, s *Store, kind, tenant string) ([]P, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, KindPrefix(kind, tenant), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, etcdError(err)
	}
	out := make([]P, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		p, err := decode[T, P](kv)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, p)
	}
	return out, resp.Header.Revision, nil
}

// Modify reads an object, applies fn and writes it back, retrying when
// someone else wrote in between. fn returns whether the spec changed;
// errSkip from fn leaves the object as it is.
func Modify[T any, P PtrObject[T]](ctx context.Context, s *Store, kind, tenant, nm string, fn func(P) (specChanged bool, err error)) (P, error) {
	for {
		p, err := Get[T, P](ctx, s, kind, tenant, nm)
		if err != nil {
			return nil, err
		}
		changed, err := fn(p)
		if errors.Is(err, ErrSkip) {
			return p, nil
		}
		if err != nil {
			return nil, err
		}
		err = s.Update(ctx, p, changed)
		if errdefs.IsConflict(err) {
			continue
		}
		return p, err
	}
}

// ErrSkip, returned by a Modify function, writes nothing.
var ErrSkip = errors.New("no change")

// EventType says what happened to an object.
type EventType int

const (
	Put EventType = iota
	Deleted
)

// Event is a change of one object.
type Event[P any] struct {
	Type EventType
	// Object is the new object, or for Deleted the last one known.
	Object P
	// Key is the object's key.
	Key string
}

// Watch lists a kind, then follows its changes. fn sees every object of
// the first list as a Put with initial set, then one event with a nil
// Object marking the end of that list, then every change in order. When
// the watch breaks (etcd compacted the history it needs, or lost its
// leader), Watch lists again and reports the difference as ordinary
// events, deletions in the gap included: fn's view never misses a change.
// It returns when ctx ends.
func Watch[T any, P PtrObject[T]](ctx context.Context, s *Store, kind string, fn func(ev Event[P], initial bool)) error {
	last := map[string]P{}
	first := true
	for {
		items, rev, err := List[T, P](ctx, s, kind, "")
		if err != nil {
			if !sleep(ctx, time.Second) {
				return ctx.Err()
			}
			continue
		}
		seen := map[string]bool{}
		for _, it := range items {
			k := Key(kind, it.GetMeta().Tenant, it.GetMeta().Name)
			seen[k] = true
			if old, ok := last[k]; ok && old.GetMeta().Revision == it.GetMeta().Revision {
				continue
			}
			last[k] = it
			fn(Event[P]{Type: Put, Object: it, Key: k}, first)
		}
		for k, old := range last {
			if !seen[k] {
				delete(last, k)
				fn(Event[P]{Type: Deleted, Object: old, Key: k}, false)
			}
		}
		if first {
			first = false
			fn(Event[P]{}, false) // the initial list is complete
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, KindPrefix(kind, ""), clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithPrevKV())
		for wr := range wch {
			if err := wr.Err(); err != nil {
				break
			}
			for _, e := range wr.Events {
				k := string(e.Kv.Key)
				switch e.Type {
				case clientv3.EventTypePut:
					p, err := decode[T, P](e.Kv)
					if err != nil {
						continue
					}
					last[k] = p
					fn(Event[P]{Type: Put, Object: p, Key: k}, false)
				case clientv3.EventTypeDelete:
					p := last[k]
					if p == nil && e.PrevKv != nil {
						p, _ = decode[T, P](e.PrevKv)
					}
					delete(last, k)
					fn(Event[P]{Type: Deleted, Object: p, Key: k}, false)
				}
			}
		}
		cancel()
		if !sleep(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// sleep waits d, or less if ctx ends; it reports whether ctx is alive.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// etcdError turns etcd's failures into the error classes.
func etcdError(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrTimeout),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost):
		return errdefs.Unavailable("no quorum: the cluster state cannot be reached right now (%v)", err)
	case errors.Is(err, context.Canceled):
		return err
	}
	return errdefs.Unavailable("cluster state: %v", err)
}

func singular(kind string) string { return strings.TrimSuffix(kind, "s") }

func name(m *model.Meta) string { return joinName(m.Tenant, m.Name) }

func joinName(tenant, nm string) string {
	if tenant == "" {
		return nm
	}
	return tenant + "/" + nm
}
