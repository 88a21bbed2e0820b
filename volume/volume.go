// Package volume keeps named volumes: the macro objects that name them,
// the files that hold them on their node, and the rules for who may use
// one when.
//
// A volume is local: it lives on one node, and the pods that use it are
// placed there. By default it is a sparse file holding ext4, attached to
// the pod's VM as a virtio-blk disk (cradle formats it on first use). The
// guest owns that filesystem, so a container's fsync is a flush of the
// disk, which QEMU turns into an fdatasync of the file, and the size
// limit is the file's size, so a full volume is ENOSPC inside the pod and
// never eats the node's disk. It is also the fast choice: under TCG and
// under KVM alike, block I/O through virtio costs far less than a shared
// filesystem's round trips per operation. Its price is one writer: two
// VMs must not mount one ext4 filesystem read-write.
//
// A volume created with the option shared=true is a host directory shared
// into the VM over 9p instead: slower, but several pods may write it at
// once, and inspect says so.
package volume

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/go-units"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
	"github.com/hearth-cloud/hearth/tenancy"
)

// DefaultSize bounds a volume created without a size. The file is
// sparse: only what is written takes space on the node.
const DefaultSize = 10 << 30

// MinSize is the smallest ext4 filesystem worth making.
const MinSize = 16 << 20

// LabelAnonymous marks a volume made for one container (docker run -v
// /path, or an image's VOLUME), as Docker marks them: `docker rm -v`
// removes it with its container, and `volume prune` takes only these
// unless asked for all.
const LabelAnonymous = "com.docker.volume.anonymous"

// Dir is where a tenant's volume lives on its node.
func Dir(dataDir, tenant, name string) string {
	return filepath.Join(dataDir, "volumes", tenant, name)
}

// Path is what holds a volume's data on its node: the disk image, or the
// shared directory.
func Path(dataDir, tenant, name string, shared bool) string {
	if shared {
		return filepath.Join(Dir(dataDir, tenant, name), "data")
	}
	return filepath.Join(Dir(dataDir, tenant, name), "disk.img")
}

// EnsureDir makes the directories that hold a volume's data on its node.
// The volumes' root is the node admin's alone (0700): what pods keep
// there is theirs, not the node's other users'.
func EnsureDir(dataDir, tenant, name string, shared bool) error {
	root := filepath.Join(dataDir, "volumes")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return err
	}
	dir := Dir(dataDir, tenant, name)
	if shared {
		dir = Path(dataDir, tenant, name, true)
	}
	return os.MkdirAll(dir, 0o700)
}

// NewName is a fresh volume object name (and an anonymous volume's
// alias): 64 hex digits, as Docker's anonymous volume names.
func NewName() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Options reads a volume's driver options (docker volume create --opt):
// size=SIZE bounds it, shared=true makes it a shared directory.
func Options(opts map[string]string) (size int64, shared bool, err error) {
	size = DefaultSize
	if _, sized := opts["size"]; sized && opts["shared"] != "" {
		if b, _ := strconv.ParseBool(opts["shared"]); b {
			return 0, false, errdefs.InvalidArgument("invalid options: a shared volume is a directory, and its size cannot be bounded: drop size or shared")
		}
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := opts[k]
		switch k {
		case "size":
			n, err := units.RAMInBytes(v)
			if err != nil || n <= 0 {
				return 0, false, errdefs.InvalidArgument("invalid size: %q: a size is a number with an optional unit (k, m, g, t)", v)
			}
			if n < MinSize {
				return 0, false, errdefs.InvalidArgument("invalid size: %q: a volume holds at least %s", v, units.BytesSize(MinSize))
			}
			size = n
		case "shared":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return 0, false, errdefs.InvalidArgument("invalid option shared=%q: true or false", v)
			}
			shared = b
		default:
			return 0, false, errdefs.InvalidArgument("invalid option: %q (known: size, shared)", k)
		}
	}
	return size, shared, nil
}

// Users are the pods that refer to the volume named name.
func Users(pods []*model.Pod, name string) []*model.Pod {
	var out []*model.Pod
	for _, p := range pods {
		for _, v := range p.Spec.Volumes {
			if v.Type == "volume" && v.Source == name {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// writes reports whether the pod mounts its volume entry vol read-write
// in any container.
func writes(p *model.Pod, vol string) bool {
	for _, c := range p.Spec.Containers {
		for _, m := range c.Mounts {
			if m.Volume == vol && !m.ReadOnly {
				return true
			}
		}
	}
	return false
}

// ReadOnly reports whether every mount of the pod's volume entry vol is
// read-only, so that the volume can be attached read-only to the VM.
func ReadOnly(p *model.Pod, vol string) bool { return !writes(p, vol) }

// active reports whether a pod holds its volumes now or is about to.
func active(p *model.Pod) bool {
	switch p.Status.Phase {
	case model.PhaseScheduled, model.PhaseStarting, model.PhaseRunning:
		return true
	case "", model.PhasePending:
		return p.Spec.Desired == model.DesiredRunning
	}
	// Exited, but about to start again by its restart policy.
	return p.Status.Restarting && p.Spec.Desired == model.DesiredRunning
}

// Conflict says why p may not start while the other pods run: a disk
// volume (not shared) has one writer, and no reader beside it, since two
// VMs that mount one ext4 filesystem, one of them writing, corrupt it or
// read garbage. nil means p may start.
func Conflict(p *model.Pod, others []*model.Pod) error {
	for _, v := range p.Spec.Volumes {
		if v.Type != "volume" || v.Shared {
			continue
		}
		w := writes(p, v.Name)
		for _, o := range others {
			if o.Name == p.Name || !active(o) {
				continue
			}
			for _, ov := range o.Spec.Volumes {
				if ov.Type != "volume" || ov.Source != v.Source {
					continue
				}
				if w || writes(o, ov.Name) {
					return errdefs.Conflict("volume %s is in use by container %s, which runs on it, and a disk volume has one writer and no other user beside a writer: stop it first, or use a volume created with --opt shared=true", v.Alias, o.Alias)
				}
			}
		}
	}
	return nil
}

// Manager keeps the tenant's volume objects for a frontend.
type Manager struct {
	Store *store.Store
	// Node is where the volumes this frontend creates live.
	Node string
}

// New makes the volume object named alias (Docker's volume name) for
// tenant, on the manager's node.
func (m *Manager) New(tenant, alias string, labels, opts map[string]string) (*model.VolumeObject, error) {
	size, shared, err := Options(opts)
	if err != nil {
		return nil, err
	}
	v := &model.VolumeObject{
		Meta: model.Meta{APIVersion: model.APIVersion, Kind: model.KindVolume, Tenant: tenant, Name: NewName(), Alias: alias, Labels: labels},
		Spec: model.VolumeSpec{SizeBytes: size, Node: m.Node, Shared: shared, Driver: "local", Options: opts},
	}
	return v, nil
}

// Create stores a new volume, within its tenant's quota.
func (m *Manager) Create(ctx context.Context, v *model.VolumeObject) error {
	t, limited, err := tenancy.Limited(ctx, m.Store, v.Tenant)
	if err != nil {
		return err
	}
	if !limited {
		return m.Store.Create(ctx, v)
	}
	return m.Store.Locked(ctx, store.TenantLock(v.Tenant), func() error {
		if err := admitVolume(ctx, m.Store, t, v); err != nil {
			return err
		}
		return m.Store.Create(ctx, v)
	})
}

// admit checks a new volume against its tenant's quota; the caller holds
// the tenant's lock.
func (m *Manager) admit(ctx context.Context, v *model.VolumeObject) error {
	t, limited, err := tenancy.Limited(ctx, m.Store, v.Tenant)
	if err != nil || !limited {
		return err
	}
	return admitVolume(ctx, m.Store, t, v)
}

// admitVolume checks v against the quota of t, its tenant, which has
// one.
func admitVolume(ctx context.Context, st *store.Store, t *model.Tenant, v *model.VolumeObject) error {
	if v.Spec.Shared && t.Spec.VolumeBytes > 0 {
		return errdefs.PermissionDenied("shared volumes have no size limit, and tenant %s has a quota on volumes: use a disk volume", v.Tenant)
	}
	return tenancy.Admit(ctx, st, t, tenancy.Usage{VolumeBytes: v.Spec.SizeBytes}, "")
}

// Get finds a tenant's volume by its name (the alias).
func (m *Manager) Get(ctx context.Context, tenant, alias string) (*model.VolumeObject, error) {
	v, err := store.GetByAlias[model.VolumeObject](ctx, m.Store, model.KindVolume, tenant, alias)
	if errdefs.IsNotFound(err) {
		return nil, errdefs.NotFound("get %s: no such volume", alias)
	}
	return v, err
}

// Attach resolves the pod's volumes: each named one is looked up, or
// made when missing (as docker run does); an anonymous one (no alias) is
// made. The pod is bound to their node. The caller holds
// store.TenantLock until the pod is created, so that no volume it refers
// to goes meanwhile, and calls undo should it not be created after all,
// which removes the anonymous volumes made for it.
func (m *Manager) Attach(ctx context.Context, p *model.Pod, labels map[string]string) (undo func(), err error) {
	var made []*model.VolumeObject
	var anons []int
	undo = func() {
		for _, v := range made {
			if _, anon := v.Labels[LabelAnonymous]; anon {
				m.Store.Delete(context.WithoutCancel(ctx), model.KindVolume, v.Tenant, v.Name, 0)
			}
		}
		for _, i := range anons {
			p.Spec.Volumes[i].Source, p.Spec.Volumes[i].Alias = "", ""
		}
	}
	cleanup := undo // a failed return sets undo to nil
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	node := ""
	for i := range p.Spec.Volumes {
		pv := &p.Spec.Volumes[i]
		if pv.Type != "volume" {
			continue
		}
		var v *model.VolumeObject
		var err error
		if pv.Alias != "" {
			v, err = m.Get(ctx, p.Tenant, pv.Alias)
		} else {
			anons = append(anons, i)
			err = errdefs.NotFound("anonymous")
		}
		if errdefs.IsNotFound(err) {
			if v, err = m.create(ctx, p.Tenant, pv.Alias, labels); err != nil {
				return nil, err
			}
			made = append(made, v)
		}
		if err != nil {
			return nil, err
		}
		if node != "" && v.Spec.Node != node {
			return nil, errdefs.InvalidArgument("the volumes of one container must live on one node: %s is on %s, another on %s", v.Alias, v.Spec.Node, node)
		}
		node = v.Spec.Node
		pv.Source, pv.Alias, pv.Node, pv.SizeBytes, pv.Shared = v.Name, v.Alias, v.Spec.Node, v.Spec.SizeBytes, v.Spec.Shared
	}
	return undo, nil
}

func (m *Manager) create(ctx context.Context, tenant, alias string, labels map[string]string) (*model.VolumeObject, error) {
	var l map[string]string
	if alias == "" {
		l = map[string]string{LabelAnonymous: ""}
	}
	for k, v := range labels {
		if l == nil {
			l = map[string]string{}
		}
		l[k] = v
	}
	v, err := m.New(tenant, alias, l, nil)
	if err != nil {
		return nil, err
	}
	if alias == "" {
		v.Alias = v.Name
	}
	if err := m.admit(ctx, v); err != nil {
		return nil, err
	}
	if err := m.Store.Create(ctx, v); err != nil {
		if errdefs.IsAlreadyExists(err) && alias != "" {
			// Made meanwhile by a docker volume create, which takes no
			// lock: that is the one.
			return m.Get(ctx, tenant, alias)
		}
		return nil, fmt.Errorf("create volume %s: %v", v.Alias, err)
	}
	return v, nil
}

// Delete removes a volume no pod refers to; its node removes its data.
func (m *Manager) Delete(ctx context.Context, v *model.VolumeObject) error {
	return m.Store.Locked(ctx, store.TenantLock(v.Tenant), func() error {
		pods, _, err := store.List[model.Pod](ctx, m.Store, model.KindPod, v.Tenant)
		if err != nil {
			return err
		}
		if users := Users(pods, v.Name); len(users) > 0 {
			ids := make([]string, len(users))
			for i, p := range users {
				ids[i] = p.Name
			}
			return errdefs.Conflict("remove %s: volume is in use - [%s]", v.Alias, strings.Join(ids, ", "))
		}
		err = m.Store.Delete(ctx, model.KindVolume, v.Tenant, v.Name, 0)
		if errdefs.IsNotFound(err) {
			return errdefs.NotFound("get %s: no such volume", v.Alias)
		}
		return err
	})
}

// Usage is the space a volume's data takes on this node, or -1 when it
// is not here to measure.
func Usage(dataDir string, v *model.VolumeObject) int64 {
	var total int64
	found := false
	filepath.Walk(Dir(dataDir, v.Tenant, v.Name), func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		found = true
		total += allocated(fi)
		return nil
	})
	if !found {
		return -1
	}
	return total
}

// RemoveAnonymous deletes the anonymous volumes of a pod that has been
// deleted, unless another pod uses them: `docker rm -v`, and the end of
// a `docker run --rm` container. It returns the names of those removed.
func RemoveAnonymous(ctx context.Context, st *store.Store, p *model.Pod) ([]string, error) {
	var names []string
	for _, v := range p.Spec.Volumes {
		if v.Type == "volume" {
			names = append(names, v.Source)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	var removed []string
	err := st.Locked(ctx, store.TenantLock(p.Tenant), func() error {
		pods, _, err := store.List[model.Pod](ctx, st, model.KindPod, p.Tenant)
		if err != nil {
			return err
		}
		for _, name := range names {
			v, err := store.Get[model.VolumeObject](ctx, st, model.KindVolume, p.Tenant, name)
			if errdefs.IsNotFound(err) {
				continue
			}
			if err != nil {
				return err
			}
			if _, anon := v.Labels[LabelAnonymous]; !anon || len(Users(pods, name)) > 0 {
				continue
			}
			if err := st.Delete(ctx, model.KindVolume, p.Tenant, name, 0); err != nil && !errdefs.IsNotFound(err) {
				return err
			}
			removed = append(removed, v.Alias)
		}
		return nil
	})
	return removed, err
}
