package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearth-cloud/hearth/cradle"
	"github.com/hearth-cloud/hearth/cradle/host"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
	"github.com/hearth-cloud/hearth/network/dns"
)

// userBridgePrefix starts the names of user networks' bridges.
const userBridgePrefix = "hn"

// spareNICs is how many networks beyond those it starts on a pod on user
// networks can join while it runs (docker network connect): a microVM's
// NICs are fixed at boot.
const spareNICs = 2

// networks readies user networks on this node: each tenant's network
// namespace, in it each network's bridge and resolver, and each pod's
// NICs; and it removes them when their networks go.
type networks struct {
	st  *store.Store
	res *dns.Resolvers
	// hostBridge is the node's default bridge on the host (for `cradle
	// run`), which no tenant namespace may reach; each tenant's own
	// default network has its subnet and gateway.
	hostBridge host.Bridge
	// owner marks what this node makes on the host (bridgeOwner).
	owner string
	// uplinkPool holds the namespaces' uplinks' /30s.
	uplinkPool netip.Prefix
	// dataDir keeps the tenants' default networks' address leases;
	// alive says whether a pod (by VM ID) still exists here.
	dataDir string
	alive   func(id string) bool
	log     *slog.Logger
	// fresh are the VMs given a default-network address whose VM may
	// not exist yet; under mu.
	fresh map[string]time.Time

	// mu keeps a namespace from being removed, as its last network
	// goes, while a pod readies another network in it.
	mu sync.Mutex
}

// bridgeOwner marks this node's network namespaces and bridges: several
// nodes may share a host.
func bridgeOwner(dataDir string) string { return "hearth:" + dataDir }

// ownerAlive reports whether the node that owns a namespace or bridge
// still has its data dir.
func ownerAlive(owner string) bool {
	dir, ok := strings.CutPrefix(owner, "hearth:")
	if !ok {
		return true // not ours to judge
	}
	_, err := os.Stat(dir)
	return err == nil
}

// tenantNet is the namespace of tenant's networks on this node.
func (w *networks) tenantNet(tenant string) host.TenantNet {
	tn := host.TenantNetFor(w.owner, tenant, []string{userBridgePrefix + "*", host.TapPrefix + "*", w.hostBridge.Name})
	tn.Pool = w.uplinkPool
	return tn
}

// bridge is this node's bridge of a user network: one per network, in
// its tenant's namespace, named by a hash of tenant and ID (an interface
// name has 15 bytes at most), with NAT unless the network is internal,
// and isolated from the tenant's other networks and from the node.
func (w *networks) bridge(n *model.Network) (host.Bridge, error) {
	subnet, err := netip.ParsePrefix(n.Spec.Subnet)
	if err != nil {
		return host.Bridge{}, fmt.Errorf("network %s: subnet %q: %w", n.Alias, n.Spec.Subnet, err)
	}
	gw, err := netip.ParseAddr(n.Spec.Gateway)
	if err != nil {
		return host.Bridge{}, fmt.Errorf("network %s: gateway %q: %w", n.Alias, n.Spec.Gateway, err)
	}
	sum := sha256.Sum256([]byte(n.Tenant + "/" + n.Name))
	return host.Bridge{
		Name: userBridgePrefix + hex.EncodeToString(sum[:])[:12], Subnet: subnet, Gateway: gw,
		NAT: !n.Spec.Internal, Isolate: true, IsolateFrom: []string{userBridgePrefix + "*"}, Owner: w.owner,
		NS: w.tenantNet(n.Tenant).Name,
	}, nil
}

// defaultName names every tenant's default network's bridge, in its
// namespace.
const defaultName = "hdefault"

// defaultNet is tenant's default network here, Docker's "bridge": the
// pods that name no network are on it, with NAT to the outside, and
// apart from the tenant's user networks and from everything else.
func (w *networks) defaultNet(tenant string) host.Bridge {
	return host.Bridge{Name: defaultName, Subnet: w.hostBridge.Subnet, Gateway: w.hostBridge.Gateway,
		NAT: true, Isolate: true, IsolateFrom: []string{userBridgePrefix + "*"}, Owner: w.owner, NS: w.tenantNet(tenant).Name}
}

// leases are the addresses of a namespace's default network.
func (w *networks) leases(tn host.TenantNet) *host.IPAM {
	return &host.IPAM{Path: filepath.Join(w.dataDir, "macro", "ipam", tn.Name+".json"),
		Bridge: host.Bridge{Subnet: w.hostBridge.Subnet, Gateway: w.hostBridge.Gateway}, Alive: w.leaseAlive}
}

// leaseAlive reports whether VM id holds its address still: it exists,
// or was given the address a moment ago and is being made. The caller
// holds mu.
func (w *networks) leaseAlive(id string) bool {
	if t, ok := w.fresh[id]; ok {
		if time.Since(t) < 5*time.Minute {
			return true
		}
		delete(w.fresh, id)
	}
	return w.alive(id)
}

// attachDefault puts pod p (as VM id) on its tenant's default network.
func (w *networks) attachDefault(p *model.Pod, id string) (*spec.Network, error) {
	tn := w.tenantNet(p.Tenant)
	br := w.defaultNet(p.Tenant)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := tn.Ensure(); err != nil {
		return nil, err
	}
	if err := br.Ensure(); err != nil {
		return nil, err
	}
	ip, err := w.leases(tn).Allocate(id)
	if err != nil {
		return nil, err
	}
	if w.fresh == nil {
		w.fresh = map[string]time.Time{}
	}
	w.fresh[id] = time.Now()
	return &spec.Network{
		Interfaces: []spec.Interface{{Name: "eth0", MAC: host.MACFor(ip), Address: netip.PrefixFrom(ip, br.Subnet.Bits()).String(),
			Gateway: br.Gateway.String(), Bridge: br.Name}},
		DNS:   host.HostDNS(),
		NetNS: tn.Name,
	}, nil
}

// released frees the default-network address of VM id, which is gone,
// in namespace ns, and the network (and namespace) it leaves unused.
func (w *networks) released(ns, id string) {
	w.mu.Lock()
	delete(w.fresh, id)
	w.mu.Unlock()
	if ns == "" {
		return
	}
	tn := host.NetNamed(ns, w.owner)
	if err := w.leases(tn).Release(id); err != nil {
		w.log.Warn("release a default-network address", "vm", id, "err", err)
	}
	w.removeIfEmpty(tn)
}

// removeTenant removes a removed tenant's namespace here, with all in it.
func (w *networks) removeTenant(tenant string) {
	tn := w.tenantNet(tenant)
	w.mu.Lock()
	defer w.mu.Unlock()
	if !tn.Exists() {
		return
	}
	// Its resolvers' sockets would keep the namespace alive.
	if bridges, err := tn.Bridges(); err == nil {
		for _, b := range bridges {
			w.res.Stop(b)
		}
	}
	if err := tn.Remove(); err != nil {
		w.log.Warn("remove a removed tenant's network namespace", "netns", tn.Name, "err", err)
	}
	os.Remove(w.leases(tn).Path)
}

// attach gives the pod a NIC on each of its networks, on their bridges
// here; the first network that is not internal carries the default route
// (the guest's rule: the first NIC with a gateway).
func (w *networks) attach(ctx context.Context, p *model.Pod) (*spec.Network, error) {
	out := &spec.Network{Spare: min(spareNICs, spec.MaxInterfaces-len(p.Spec.Attachments)), NetNS: w.tenantNet(p.Tenant).Name}
	for i, at := range p.Spec.Attachments {
		ifc, n, err := w.attachment(ctx, p, at)
		if err != nil {
			return nil, err
		}
		if len(out.DNS) == 0 {
			// The first network's resolver answers for all of the pod's.
			out.DNS = []string{ifc.Gateway}
		}
		ifc.Name = fmt.Sprintf("eth%d", i)
		if n.Spec.Internal {
			// No way out: no default route through it, ever.
			ifc.Gateway = ""
		}
		out.Interfaces = append(out.Interfaces, ifc)
	}
	return out, nil
}

// attachment readies the pod's network at on this node (its tenant's
// namespace, its bridge and resolver) and describes the pod's NIC on it,
// unnamed, its Gateway the network's gateway.
func (w *networks) attachment(ctx context.Context, p *model.Pod, at model.Attachment) (spec.Interface, *model.Network, error) {
	var ifc spec.Interface
	n, err := store.Get[model.Network](ctx, w.st, model.KindNetwork, p.Tenant, at.Network)
	if err != nil {
		return ifc, nil, fmt.Errorf("network %s: %w", at.Network, err)
	}
	br, err := w.bridge(n)
	if err != nil {
		return ifc, nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.tenantNet(p.Tenant).Ensure(); err != nil {
		return ifc, nil, err
	}
	// The tenant's networks never overlap (network/ipam); a bridge that
	// does is one of a network deleted while the node was down, which
	// prune removes at start.
	other, err := host.OverlappingBridge(br.NS, br.Name, userBridgePrefix, br.Subnet)
	if err != nil {
		return ifc, nil, err
	}
	if other != "" {
		return ifc, nil, errdefs.FailedPrecondition("network %s (%s) overlaps the subnet of bridge %s here, of a network that is gone: restart the node to remove it", n.Alias, br.Subnet, other)
	}
	if err := br.Ensure(); err != nil {
		return ifc, nil, err
	}
	if err := w.res.Ensure(br.Name, p.Tenant, n.Name, br.Gateway, w.within(br.NS)); err != nil {
		return ifc, nil, err
	}
	ip, err := netip.ParseAddr(at.IP)
	if err != nil {
		return ifc, nil, fmt.Errorf("network %s: the pod has no address", n.Alias)
	}
	ifc = spec.Interface{MAC: host.MACFor(ip), Address: netip.PrefixFrom(ip, br.Subnet.Bits()).String(),
		Bridge: br.Name, Gateway: br.Gateway.String()}
	return ifc, n, nil
}

// within runs fn in namespace ns (resolvers' sockets are made there).
func (w *networks) within(ns string) func(func() error) error {
	return func(fn func() error) error { return host.InNS(ns, fn) }
}

// sync brings a running pod's NICs in line with its attachments: a
// network joined since it started takes a free NIC, one left frees its
// NIC (docker network connect and disconnect).
func (w *networks) sync(ctx context.Context, rt *cradle.Runtime, p *model.Pod, vm string) error {
	if len(p.Spec.Attachments) == 0 {
		return nil // on the default network, which it cannot leave
	}
	cl, err := rt.Client(vm)
	if err != nil {
		return err
	}
	state, err := cl.State()
	if err != nil {
		return err
	}
	have := map[string]spec.Interface{}
	names := map[string]bool{}
	for _, ifc := range state.Interfaces {
		have[ifc.Bridge] = ifc
		names[ifc.Name] = true
	}
	// As at boot, the first network's resolver answers for all.
	var dns []string
	type join struct {
		ifc spec.Interface
		n   *model.Network
	}
	var joins []join
	want := map[string]bool{}
	for _, at := range p.Spec.Attachments {
		ifc, n, err := w.attachment(ctx, p, at)
		if err != nil {
			return err
		}
		if dns == nil {
			dns = []string{ifc.Gateway}
		}
		if n.Spec.Internal {
			ifc.Gateway = ""
		}
		if cur, ok := have[ifc.Bridge]; ok && cur.Address == ifc.Address {
			want[ifc.Bridge] = true
			continue
		}
		joins = append(joins, join{ifc, n})
	}
	// Leave first, so that the NICs freed can join the new networks
	// (and a network rejoined with another address is left first).
	for br, ifc := range have {
		if !want[br] {
			if _, err := cl.Unplug(ifc.Name, dns); err != nil {
				return fmt.Errorf("leave the network of bridge %s: %w", br, err)
			}
			delete(names, ifc.Name)
		}
	}
	for _, j := range joins {
		for i := 0; ; i++ {
			if !names[fmt.Sprintf("eth%d", i)] {
				j.ifc.Name = fmt.Sprintf("eth%d", i)
				break
			}
		}
		if _, err := cl.Plug(j.ifc, dns); err != nil {
			return fmt.Errorf("join network %s: %w", j.n.Alias, err)
		}
		names[j.ifc.Name] = true
	}
	return nil
}

// prune removes this node's bridges of user networks that are gone, and
// a tenant's namespace with its last one: at start those whose network
// was deleted while the node was down (and the namespaces of nodes whose
// data dir is gone), then each as its network is deleted. A network is
// deleted only when no pod uses it, so no pod loses its bridge.
func (w *networks) prune(ctx context.Context) error {
	listed := false
	err := store.Watch[model.Network](ctx, w.st, model.KindNetwork, func(ev store.Event[*model.Network], initial bool) {
		switch {
		case !listed && ev.Object == nil:
			// From here on, every deletion comes as an event: what
			// went before is not in reconcile's list.
			listed = true
			if err := w.reconcile(ctx); err != nil {
				w.log.Warn("remove the bridges of deleted networks", "err", err)
			}
		case !listed || ev.Type != store.Deleted || ev.Object == nil:
		default:
			br, err := w.bridge(ev.Object)
			if err != nil {
				return
			}
			w.res.Stop(br.Name)
			w.mu.Lock()
			defer w.mu.Unlock()
			if err := br.Remove(); err != nil {
				w.log.Warn("remove the bridge of a deleted network", "bridge", br.Name, "err", err)
			}
			w.removeIfEmptyLocked(w.tenantNet(ev.Object.Tenant))
		}
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// reconcile brings the namespaces and bridges here in line with the
// networks that exist: under mu, so that no pod readies a network's
// bridge meanwhile.
func (w *networks) reconcile(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	nets, _, err := store.List[model.Network](ctx, w.st, model.KindNetwork, "")
	if err != nil {
		return err
	}
	known := map[string]*model.Network{}
	for _, n := range nets {
		if br, err := w.bridge(n); err == nil {
			known[br.Name] = n
		}
	}
	all, err := host.OwnedNets("")
	if err != nil {
		return err
	}
	for uplink, owner := range all {
		tn := host.NetOfUplink(uplink, owner)
		if owner != w.owner {
			if !ownerAlive(owner) {
				if err := tn.Remove(); err != nil {
					w.log.Warn("remove the network namespace of a node that is gone", "netns", tn.Name, "err", err)
				}
			}
			continue
		}
		bridges, err := tn.Bridges()
		if err != nil {
			w.log.Warn("list the bridges of a network namespace", "netns", tn.Name, "err", err)
			continue
		}
		for _, name := range bridges {
			if name == defaultName {
				continue // it goes with its last pod (removeIfEmpty)
			}
			if n := known[name]; n != nil {
				// Pods adopted on it keep their names answered.
				br, _ := w.bridge(n)
				if err := w.res.Ensure(br.Name, n.Tenant, n.Name, br.Gateway, w.within(br.NS)); err != nil {
					w.log.Warn("serve names on a network", "network", n.Alias, "err", err)
				}
				continue
			}
			if err := (host.Bridge{Name: name, NS: tn.Name}).Remove(); err != nil {
				w.log.Warn("remove the bridge of a deleted network", "bridge", name, "err", err)
			}
		}
		w.removeIfEmptyLocked(tn)
	}
	// Bridges of user networks on the host itself, made before tenants
	// had namespaces: once their last pod has gone.
	mine, err := host.OwnedBridges(w.owner)
	if err != nil {
		return err
	}
	for _, name := range mine {
		if ports, err := host.BridgePorts(name); err != nil || ports > 0 {
			continue
		}
		if err := (host.Bridge{Name: name}).Remove(); err != nil {
			w.log.Warn("remove the bridge of a deleted network", "bridge", name, "err", err)
		}
	}
	return nil
}

func (w *networks) removeIfEmpty(tn host.TenantNet) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeIfEmptyLocked(tn)
}

// removeIfEmptyLocked removes a tenant's default network once no pod
// holds an address on it, and the namespace once it holds no network;
// the caller holds mu.
func (w *networks) removeIfEmptyLocked(tn host.TenantNet) {
	if !tn.Exists() {
		return
	}
	bridges, err := tn.Bridges()
	if err != nil {
		return
	}
	if slices.Contains(bridges, defaultName) {
		n, err := w.leases(tn).Live()
		if err != nil || n > 0 {
			return
		}
		if err := (host.Bridge{Name: defaultName, NS: tn.Name}).Remove(); err != nil {
			w.log.Warn("remove a tenant's unused default network", "netns", tn.Name, "err", err)
			return
		}
		bridges = slices.DeleteFunc(bridges, func(b string) bool { return b == defaultName })
	}
	if len(bridges) > 0 {
		return
	}
	if err := tn.Remove(); err != nil {
		w.log.Warn("remove a tenant's network namespace", "netns", tn.Name, "err", err)
		return
	}
	w.log.Info("removed a tenant's network namespace: its last network here is gone", "netns", tn.Name)
}
