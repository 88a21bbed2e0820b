// Package ipam gives networks and pods their addresses, cluster-wide, in
// macro's store, under locks in etcd, so that two nodes creating networks
// or pods at once never hand out the same subnet or address. A network's
// subnet is chosen from pools that no tenant's network uses, or, when the
// user gives one, checked against the tenant's own networks: tenants may
// choose the same subnet. Pods' addresses come from their networks.
package ipam

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// DefaultPools are where subnets come from when none is asked for, as
// Docker's: 172.18-31.0.0/16, then 192.168.0.0/16 in /20s.
func DefaultPools() []netip.Prefix {
	var out []netip.Prefix
	for b := 18; b <= 31; b++ {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(b), 0, 0}), 16))
	}
	for c := 0; c < 256; c += 16 {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(c), 0}), 20))
	}
	return out
}

// Overlaps reports whether two prefixes share an address.
func Overlaps(a, b netip.Prefix) bool { return a.Overlaps(b) }

// Complete checks a network's addressing and fills in what is left
// out: a subnet from pools that overlaps nothing in used, and the gateway
// (the subnet's first host address).
func Complete(spec model.NetworkSpec, used []netip.Prefix, pools []netip.Prefix) (model.NetworkSpec, error) {
	var subnet netip.Prefix
	if spec.Subnet == "" {
		if spec.Gateway != "" || spec.IPRange != "" {
			return spec, errdefs.InvalidArgument("a gateway or an IP range needs a subnet (--subnet)")
		}
		found := false
		for _, p := range pools {
			if !overlapsAny(p, used) {
				subnet, found = p, true
				break
			}
		}
		if !found {
			return spec, errdefs.PermissionDenied("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")
		}
	} else {
		p, err := netip.ParsePrefix(spec.Subnet)
		if err != nil {
			return spec, errdefs.InvalidArgument("invalid subnet %s: invalid CIDR address: %s", spec.Subnet, spec.Subnet)
		}
		if !p.Addr().Is4() {
			return spec, errdefs.InvalidArgument("subnet %s: only IPv4 networks are supported", spec.Subnet)
		}
		if p.Bits() > 30 {
			return spec, errdefs.InvalidArgument("subnet %s is too small: it needs room for a gateway and a pod (at most /30)", spec.Subnet)
		}
		if p != p.Masked() {
			return spec, errdefs.InvalidArgument("invalid subnet %s: it is not the start of its prefix (%s)", spec.Subnet, p.Masked())
		}
		if overlapsAny(p, used) {
			return spec, errdefs.PermissionDenied("Pool overlaps with other one on this address space")
		}
		subnet = p
	}
	spec.Subnet = subnet.String()
	if spec.IPRange != "" {
		r, err := netip.ParsePrefix(spec.IPRange)
		if err != nil {
			return spec, errdefs.InvalidArgument("invalid ip-range %s: invalid CIDR address: %s", spec.IPRange, spec.IPRange)
		}
		if r.Bits() < subnet.Bits() || !subnet.Contains(r.Addr()) {
			return spec, errdefs.InvalidArgument("no matching subnet for range %s", spec.IPRange)
		}
		spec.IPRange = r.Masked().String()
	}
	if spec.Gateway == "" {
		spec.Gateway = subnet.Addr().Next().String()
	} else {
		g, err := netip.ParseAddr(spec.Gateway)
		if err != nil {
			return spec, errdefs.InvalidArgument("invalid gateway %s", spec.Gateway)
		}
		if !subnet.Contains(g) || g == subnet.Addr() || g == broadcast(subnet) {
			return spec, errdefs.InvalidArgument("no matching subnet for gateway %s", spec.Gateway)
		}
	}
	return spec, nil
}

func overlapsAny(p netip.Prefix, used []netip.Prefix) bool {
	for _, u := range used {
		if Overlaps(p, u) {
			return true
		}
	}
	return false
}

// broadcast is an IPv4 prefix's last address.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Allocator creates networks with their addresses.
type Allocator struct {
	Store *store.Store
	// Reserved are prefixes no network may use: the nodes' default
	// bridge, say.
	Reserved []netip.Prefix
	// Pools override DefaultPools.
	Pools []netip.Prefix
}

// Create completes n's addressing and writes it; n.Alias is its unique
// name. A subnet the user gives must not overlap the tenant's other
// networks; one chosen from the pools overlaps no tenant's, so that
// networks of several tenants can share a node (under the cluster's lock,
// as network creation is rare).
func (a *Allocator) Create(ctx context.Context, n *model.Network) error {
	return a.Store.Locked(ctx, store.ClusterLock, func() error {
		nets, _, err := store.List[model.Network](ctx, a.Store, model.KindNetwork, "")
		if err != nil {
			return err
		}
		used := append([]netip.Prefix(nil), a.Reserved...)
		for _, o := range nets {
			p, err := netip.ParsePrefix(o.Spec.Subnet)
			if err == nil && (o.Tenant == n.Tenant || n.Spec.Subnet == "") {
				used = append(used, p)
			}
		}
		pools := a.Pools
		if pools == nil {
			pools = DefaultPools()
		}
		spec, err := Complete(n.Spec, used, pools)
		if err != nil {
			return err
		}
		n.Spec = spec
		return a.Store.Create(ctx, n)
	})
}

// DeleteNetwork removes a network that no pod is attached to.
func (a *Allocator) DeleteNetwork(ctx context.Context, n *model.Network) error {
	return a.Store.Locked(ctx, store.TenantLock(n.Tenant), func() error {
		pods, _, err := store.List[model.Pod](ctx, a.Store, model.KindPod, n.Tenant)
		if err != nil {
			return err
		}
		for _, p := range pods {
			for _, at := range p.Spec.Attachments {
				if at.Network == n.Name {
					return errdefs.Conflict("error while removing network: network %s id %s has active endpoints", n.Alias, n.Name)
				}
			}
		}
		return a.Store.Delete(ctx, model.KindNetwork, n.Tenant, n.Name, 0)
	})
}

// Assign gives the pod its address on each network it attaches to (the
// one asked for, checked, or the first free one). Addresses are read from
// the tenant's pods themselves, so a deleted pod frees its own; the
// caller holds store.TenantLock until the pod is created, so that no two
// pods take one address.
func (a *Allocator) Assign(ctx context.Context, p *model.Pod) error {
	if len(p.Spec.Attachments) == 0 {
		return nil
	}
	nets := map[string]*model.Network{}
	for _, at := range p.Spec.Attachments {
		n, err := store.Get[model.Network](ctx, a.Store, model.KindNetwork, p.Tenant, at.Network)
		if err != nil {
			if errdefs.IsNotFound(err) {
				return errdefs.NotFound("network %s not found", at.Network)
			}
			return err
		}
		nets[at.Network] = n
	}
	pods, _, err := store.List[model.Pod](ctx, a.Store, model.KindPod, p.Tenant)
	if err != nil {
		return err
	}
	used := map[string]map[netip.Addr]bool{}
	for _, o := range pods {
		if o.Name == p.Name {
			continue // a pod joining another network keeps its addresses
		}
		for _, at := range o.Spec.Attachments {
			if ip, err := netip.ParseAddr(at.IP); err == nil {
				if used[at.Network] == nil {
					used[at.Network] = map[netip.Addr]bool{}
				}
				used[at.Network][ip] = true
			}
		}
	}
	for i := range p.Spec.Attachments {
		at := &p.Spec.Attachments[i]
		ip, err := Address(nets[at.Network].Spec, at.IP, used[at.Network])
		if err != nil {
			return err
		}
		at.IP = ip.String()
	}
	return nil
}

// Address checks a requested address on a network, or picks the first
// free one of its IP range (its subnet without one): never the network's
// own address, its broadcast or its gateway.
func Address(spec model.NetworkSpec, want string, used map[netip.Addr]bool) (netip.Addr, error) {
	subnet, err := netip.ParsePrefix(spec.Subnet)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("network subnet %q: %w", spec.Subnet, err)
	}
	gw, _ := netip.ParseAddr(spec.Gateway)
	usable := func(ip netip.Addr) bool {
		return subnet.Contains(ip) && ip != subnet.Addr() && ip != broadcast(subnet) && ip != gw
	}
	if want != "" {
		ip, err := netip.ParseAddr(want)
		if err != nil || !ip.Is4() {
			return netip.Addr{}, errdefs.InvalidArgument("invalid IPv4 address %q", want)
		}
		if !usable(ip) {
			return netip.Addr{}, errdefs.InvalidArgument("no configured subnet or ip-range contain the IP address %s", want)
		}
		if used[ip] {
			return netip.Addr{}, errdefs.Conflict("Address already in use: %s", want)
		}
		return ip, nil
	}
	rng := subnet
	if spec.IPRange != "" {
		if r, err := netip.ParsePrefix(spec.IPRange); err == nil {
			rng = r
		}
	}
	for ip := rng.Masked().Addr(); rng.Contains(ip); ip = ip.Next() {
		if usable(ip) && !used[ip] {
			return ip, nil
		}
	}
	return netip.Addr{}, errdefs.Unavailable("no available IPv4 addresses on this network's address pools: %s", rng)
}

// ParsePool reads a pool as dockerd's --default-address-pool takes it,
// "base=CIDR,size=BITS", and splits it into its subnets.
func ParsePool(s string) ([]netip.Prefix, error) {
	var base netip.Prefix
	size := -1
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		switch k {
		case "base":
			p, err := netip.ParsePrefix(v)
			if err != nil || !p.Addr().Is4() {
				return nil, fmt.Errorf("address pool %q: base %q is not an IPv4 CIDR", s, v)
			}
			base = p.Masked()
		case "size":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("address pool %q: size %q is not a number of bits", s, v)
			}
			size = n
		default:
			return nil, fmt.Errorf("address pool %q: unknown key %q (base=CIDR,size=BITS)", s, k)
		}
	}
	if !base.IsValid() || size < 0 {
		return nil, fmt.Errorf("address pool %q: want base=CIDR,size=BITS", s)
	}
	if size < base.Bits() || size > 30 || size-base.Bits() > 16 {
		return nil, fmt.Errorf("address pool %q: size %d must be between the base's %d bits and 30, and make at most 65536 subnets", s, size, base.Bits())
	}
	var out []netip.Prefix
	n := 1 << (size - base.Bits())
	step := uint32(1) << (32 - size)
	a4 := base.Addr().As4()
	start := uint32(a4[0])<<24 | uint32(a4[1])<<16 | uint32(a4[2])<<8 | uint32(a4[3])
	for i := 0; i < n; i++ {
		v := start + uint32(i)*step
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), size))
	}
	return out, nil
}
