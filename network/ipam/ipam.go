// Package ipam gives networks their addresses, cluster-wide, in macro's
// store: a network's subnet is chosen (or checked, when the user gives
// one) against the tenant's other networks under a per-tenant lock in
// etcd, so that two nodes creating networks at once never pick
// overlapping subnets. Tenants are isolated from each other, so two
// tenants may use the same subnet.
package ipam

import (
	"context"
	"fmt"
	"net/netip"

	"go.etcd.io/etcd/client/v3/concurrency"

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

// Create completes n's addressing against the tenant's networks and
// writes it, under the tenant's lock. n.Alias is its unique name.
func (a *Allocator) Create(ctx context.Context, n *model.Network) error {
	sess, err := concurrency.NewSession(a.Store.Client(), concurrency.WithTTL(10), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	defer sess.Close()
	mu := concurrency.NewMutex(sess, store.Prefix+"locks/ipam/"+n.Tenant)
	if err := mu.Lock(ctx); err != nil {
		return fmt.Errorf("ipam: lock tenant %s: %w", n.Tenant, err)
	}
	defer mu.Unlock(context.WithoutCancel(ctx))
	nets, _, err := store.List[model.Network](ctx, a.Store, model.KindNetwork, n.Tenant)
	if err != nil {
		return err
	}
	used := append([]netip.Prefix(nil), a.Reserved...)
	for _, o := range nets {
		if p, err := netip.ParsePrefix(o.Spec.Subnet); err == nil {
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
}
