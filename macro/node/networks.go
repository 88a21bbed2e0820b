package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"

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
	// defaultBridge is the node's default network, which no tenant
	// namespace may reach.
	defaultBridge string
	// owner marks what this node makes on the host (bridgeOwner).
	owner string
	log   *slog.Logger

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
	return host.TenantNetFor(w.owner, tenant, []string{userBridgePrefix + "*", host.TapPrefix + "*", w.defaultBridge})
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
		w.removeIfEmpty(tn)
	}
	// Bridges of user networks on the host itself (made before tenants
	// had namespaces).
	if mine, err := host.OwnedBridges(w.owner); err == nil {
		for _, name := range mine {
			if err := (host.Bridge{Name: name}).Remove(); err != nil {
				w.log.Warn("remove the bridge of a deleted network", "bridge", name, "err", err)
			}
		}
	}
	err = store.Watch[model.Network](ctx, w.st, model.KindNetwork, func(ev store.Event[*model.Network], initial bool) {
		if ev.Type != store.Deleted || ev.Object == nil {
			return
		}
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
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (w *networks) removeIfEmpty(tn host.TenantNet) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.removeIfEmptyLocked(tn)
}

// removeIfEmptyLocked removes a tenant's namespace that holds no bridge;
// the caller holds mu.
func (w *networks) removeIfEmptyLocked(tn host.TenantNet) {
	if !tn.Exists() {
		return
	}
	bridges, err := tn.Bridges()
	if err != nil || len(bridges) > 0 {
		return
	}
	if err := tn.Remove(); err != nil {
		w.log.Warn("remove a tenant's network namespace", "netns", tn.Name, "err", err)
		return
	}
	w.log.Info("removed a tenant's network namespace: its last network here is gone", "netns", tn.Name)
}
