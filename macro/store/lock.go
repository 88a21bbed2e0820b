package store

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// TenantLock names the lock that serialises changes which must see all of
// a tenant's objects at once: assigning network addresses, and the
// references between pods and volumes.
func TenantLock(tenant string) string { return "tenants/" + tenant }

// ClusterLock names the lock for changes that must see every tenant's
// objects (choosing a network's subnet).
const ClusterLock = "cluster"

// Locked runs fn holding the named cluster-wide lock. The lock lives in a
// lease, so a holder that dies frees it within seconds.
func (s *Store) Locked(ctx context.Context, name string, fn func() error) error {
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(10), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("lock %s: %w", name, etcdError(err))
	}
	defer sess.Close()
	mu := concurrency.NewMutex(sess, Prefix+"locks/"+name)
	if err := mu.Lock(ctx); err != nil {
		return fmt.Errorf("lock %s: %w", name, etcdError(err))
	}
	defer mu.Unlock(context.WithoutCancel(ctx))
	return fn()
}
