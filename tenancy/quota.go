package tenancy

import (
	"context"
	"fmt"
	"strings"

	"github.com/docker/go-units"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Usage is what a tenant holds, in the units of its quotas.
type Usage struct {
	// Pods counts every pod (a Docker container, created, running or
	// exited) until it is removed.
	Pods int `json:"pods"`
	// CPUs and MemoryMiB add up the pods that are meant to run.
	CPUs      int `json:"cpus"`
	MemoryMiB int `json:"memoryMiB"`
	// VolumeBytes adds up the sizes of the tenant's disk volumes.
	VolumeBytes int64 `json:"volumeBytes"`
}

// Of adds up what pods and volumes hold.
func Of(pods []*model.Pod, vols []*model.VolumeObject) Usage {
	var u Usage
	for _, p := range pods {
		u.Pods++
		if p.Spec.Desired == model.DesiredRunning {
			u.CPUs += p.Spec.Resources.CPUs
			u.MemoryMiB += p.Spec.Resources.MemoryMiB
		}
	}
	for _, v := range vols {
		u.VolumeBytes += v.Spec.SizeBytes
	}
	return u
}

// PodUsage is what pod p holds once it exists (and runs, when running).
func PodUsage(p *model.Pod, running bool) Usage {
	u := Usage{Pods: 1}
	if running {
		u.CPUs, u.MemoryMiB = p.Spec.Resources.CPUs, p.Spec.Resources.MemoryMiB
	}
	return u
}

// Exceeds says which quota of q a tenant that holds used would exceed by
// taking add too; nil when none.
func Exceeds(q model.TenantSpec, used, add Usage) error {
	var over []string
	check := func(what string, limit, used, add int64, format func(int64) string) {
		if limit > 0 && add > 0 && used+add > limit {
			over = append(over, fmt.Sprintf("%s %s of %s in use, %s more asked", what, format(used), format(limit), format(add)))
		}
	}
	count := func(n int64) string { return fmt.Sprint(n) }
	mib := func(n int64) string { return units.BytesSize(float64(n << 20)) }
	bytes := func(n int64) string { return units.BytesSize(float64(n)) }
	check("pods", int64(q.Pods), int64(used.Pods), int64(add.Pods), count)
	check("cpus", int64(q.CPUs), int64(used.CPUs), int64(add.CPUs), count)
	check("memory", int64(q.MemoryMiB), int64(used.MemoryMiB), int64(add.MemoryMiB), mib)
	check("volumes", q.VolumeBytes, used.VolumeBytes, add.VolumeBytes, bytes)
	if len(over) == 0 {
		return nil
	}
	return errdefs.PermissionDenied("quota exceeded: %s", strings.Join(over, "; "))
}

// Limited reports whether tenant has any quota, and returns its record.
// The admin, and a tenant without a record, have none. A tenant being
// removed may make nothing more.
func Limited(ctx context.Context, st *store.Store, tenant string) (*model.Tenant, bool, error) {
	if tenant == Admin {
		return nil, false, nil
	}
	t, err := store.Get[model.Tenant](ctx, st, model.KindTenant, "", tenant)
	if errdefs.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if t.Spec.Removing {
		return nil, false, errdefs.Unauthenticated("tenant %s is being removed", tenant)
	}
	q := t.Spec
	return t, q.CPUs > 0 || q.MemoryMiB > 0 || q.Pods > 0 || q.VolumeBytes > 0, nil
}

// Admit checks that tenant t (its record, from Limited; nil has no
// quota) may take add on top of what it holds. The caller holds
// store.TenantLock(t.Name) until the object that takes it is written,
// so that two creations cannot both pass on the last share. skip names
// a pod whose current holding is not counted (one being started, whose
// running share add is).
func Admit(ctx context.Context, st *store.Store, t *model.Tenant, add Usage, skip string) error {
	if t == nil {
		return nil
	}
	used, err := UsageOf(ctx, st, t.Name, skip)
	if err != nil {
		return err
	}
	return Exceeds(t.Spec, used, add)
}

// Admitted runs write, which makes what takes add, within tenant's
// quota: for a tenant with quotas, checked and written under its lock.
func Admitted(ctx context.Context, st *store.Store, tenant string, add Usage, write func() error) error {
	t, limited, err := Limited(ctx, st, tenant)
	if err != nil {
		return err
	}
	if !limited {
		return write()
	}
	return st.Locked(ctx, store.TenantLock(tenant), func() error {
		if err := Admit(ctx, st, t, add, ""); err != nil {
			return err
		}
		return write()
	})
}

// UsageOf adds up what tenant holds, leaving pod skip out.
func UsageOf(ctx context.Context, st *store.Store, tenant, skip string) (Usage, error) {
	pods, _, err := store.List[model.Pod](ctx, st, model.KindPod, tenant)
	if err != nil {
		return Usage{}, err
	}
	vols, _, err := store.List[model.VolumeObject](ctx, st, model.KindVolume, tenant)
	if err != nil {
		return Usage{}, err
	}
	kept := pods[:0]
	for _, p := range pods {
		if p.Name != skip {
			kept = append(kept, p)
		}
	}
	return Of(kept, vols), nil
}
