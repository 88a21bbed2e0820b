package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
)

// An alias is a second, changeable name of an object, unique among the
// tenant's objects of its kind: a Docker container's name, where the
// object's own name is its ID. Its key holds the object's name. The key
// is written in one transaction with the object; one whose object has
// gone (a delete that could not take the alias along) is stale, and the
// next claim of the alias takes it over.

// AliasKey is where alias of a tenant's object of kind lives.
func AliasKey(kind, tenant, alias string) string {
	return Prefix + "aliases/" + kind + "/" + tenant + "/" + alias
}

// ValidAlias reports whether s can be an alias.
func ValidAlias(s string) bool {
	if s == "" || len(s) > 253 || strings.Contains(s, "/") {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f {
			return false
		}
	}
	return true
}

// AliasInUseError is a claim of an alias another object holds. It is of
// class errdefs.ErrAlreadyExists.
type AliasInUseError struct {
	Kind   string
	Alias  string
	Holder string // the holder's name
}

func (e *AliasInUseError) Error() string {
	return fmt.Sprintf("%s name %q is already in use by %s", singular(e.Kind), e.Alias, e.Holder)
}

func (e *AliasInUseError) Is(target error) bool { return target == errdefs.ErrAlreadyExists }

// aliasOf reads the alias an object's JSON carries.
func aliasOf(b []byte) string {
	var m struct {
		Alias string `json:"alias"`
	}
	json.Unmarshal(b, &m)
	return m.Alias
}

// takeStale removes alias key kv when the object it names no longer holds
// the alias; it reports whether the alias may be claimed again.
func (s *Store) takeStale(ctx context.Context, kind, tenant, alias string, kv *clientv3.GetResponse) (bool, error) {
	if len(kv.Kvs) == 0 {
		return true, nil // gone in between
	}
	holder := string(kv.Kvs[0].Value)
	resp, err := s.cli.Get(ctx, Key(kind, tenant, holder))
	if err != nil {
		return false, etcdError(err)
	}
	if len(resp.Kvs) > 0 && aliasOf(resp.Kvs[0].Value) == alias {
		return false, &AliasInUseError{Kind: kind, Alias: alias, Holder: holder}
	}
	key := AliasKey(kind, tenant, alias)
	_, err = s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.Kvs[0].ModRevision)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		return false, etcdError(err)
	}
	return true, nil
}

// createWithAlias stores a new object and claims its alias, together.
func (s *Store) createWithAlias(ctx context.Context, m *model.Meta, b []byte) error {
	key := Key(m.Kind, m.Tenant, m.Name)
	akey := AliasKey(m.Kind, m.Tenant, m.Alias)
	for attempt := 0; attempt < 5; attempt++ {
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0), clientv3.Compare(clientv3.CreateRevision(akey), "=", 0)).
			Then(clientv3.OpPut(key, string(b)), clientv3.OpPut(akey, m.Name)).
			Else(clientv3.OpGet(key, clientv3.WithCountOnly()), clientv3.OpGet(akey)).
			Commit()
		if err != nil {
			return etcdError(err)
		}
		if resp.Succeeded {
			m.Revision = resp.Header.Revision
			return nil
		}
		if resp.Responses[0].GetResponseRange().Count > 0 {
			return errdefs.AlreadyExists("%s %q already exists", singular(m.Kind), name(m))
		}
		free, err := s.takeStale(ctx, m.Kind, m.Tenant, m.Alias, (*clientv3.GetResponse)(resp.Responses[1].GetResponseRange()))
		if err != nil {
			return err
		}
		if !free {
			break
		}
	}
	return errdefs.Unavailable("claim name %q: too much contention", m.Alias)
}

// dropAlias removes the alias key of a deleted object, if it still names
// the object.
func (s *Store) dropAlias(ctx context.Context, kind, tenant, nm string, prev []byte) {
	alias := aliasOf(prev)
	if alias == "" {
		return
	}
	akey := AliasKey(kind, tenant, alias)
	// Best effort: a key left behind is stale, and taken over later.
	s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(akey), "=", nm)).
		Then(clientv3.OpDelete(akey)).
		Commit()
}

// Rename gives object nm of a tenant a new alias (empty drops it), and
// frees the old one, in one transaction.
func (s *Store) Rename(ctx context.Context, kind, tenant, nm, alias string) error {
	if alias != "" && !ValidAlias(alias) {
		return errdefs.InvalidArgument("invalid name %q", alias)
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	key := Key(kind, tenant, nm)
	for attempt := 0; attempt < 10; attempt++ {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return etcdError(err)
		}
		if len(resp.Kvs) == 0 {
			return errdefs.NotFound("%s %q not found", singular(kind), joinName(tenant, nm))
		}
		kv := resp.Kvs[0]
		old := aliasOf(kv.Value)
		if old == alias {
			return nil
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(kv.Value, &obj); err != nil {
			return fmt.Errorf("corrupt object at %s: %w", key, err)
		}
		if alias == "" {
			delete(obj, "alias")
		} else {
			obj["alias"], _ = json.Marshal(alias)
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)}
		ops := []clientv3.Op{clientv3.OpPut(key, string(b))}
		var akey string
		if alias != "" {
			akey = AliasKey(kind, tenant, alias)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(akey), "=", 0))
			ops = append(ops, clientv3.OpPut(akey, nm))
		}
		if old != "" {
			ops = append(ops, clientv3.OpDelete(AliasKey(kind, tenant, old)))
		}
		els := []clientv3.Op{clientv3.OpGet(key, clientv3.WithCountOnly())}
		if akey != "" {
			els = append(els, clientv3.OpGet(akey))
		}
		tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(els...).Commit()
		if err != nil {
			return etcdError(err)
		}
		if tr.Succeeded {
			return nil
		}
		if akey == "" {
			continue // the object changed: read it again
		}
		held := (*clientv3.GetResponse)(tr.Responses[1].GetResponseRange())
		if _, err := s.takeStale(ctx, kind, tenant, alias, held); err != nil {
			return err
		}
	}
	return errdefs.Unavailable("rename %s %q: too much contention", singular(kind), joinName(tenant, nm))
}

// GetByAlias reads the tenant's object of kind that holds alias.
func GetByAlias[T any, P PtrObject[T]](ctx context.Context, s *Store, kind, tenant, alias string) (P, error) {
	notFound := errdefs.NotFound("%s %q not found", singular(kind), joinName(tenant, alias))
	if !ValidAlias(alias) {
		return nil, notFound
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, AliasKey(kind, tenant, alias))
	if err != nil {
		return nil, etcdError(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, notFound
	}
	p, err := Get[T, P](ctx, s, kind, tenant, string(resp.Kvs[0].Value))
	if errdefs.IsNotFound(err) || (err == nil && p.GetMeta().Alias != alias) {
		return nil, notFound
	}
	return p, err
}
