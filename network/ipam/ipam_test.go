package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/testetcd"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestComplete(t *testing.T) {
	pools := DefaultPools()
	got, err := Complete(model.NetworkSpec{}, prefixes("172.18.0.0/16", "172.19.5.0/24"), pools)
	if err != nil || got.Subnet != "172.20.0.0/16" || got.Gateway != "172.20.0.1" {
		t.Fatalf("auto subnet: %+v %v", got, err)
	}
	got, err = Complete(model.NetworkSpec{Subnet: "10.5.0.0/24", Gateway: "10.5.0.254", IPRange: "10.5.0.128/25"}, nil, pools)
	if err != nil || got.Gateway != "10.5.0.254" || got.IPRange != "10.5.0.128/25" {
		t.Fatalf("given subnet: %+v %v", got, err)
	}
	for _, tc := range []struct {
		spec model.NetworkSpec
		used []netip.Prefix
		is   error
	}{
		{model.NetworkSpec{Subnet: "10.5.0.0"}, nil, errdefs.ErrInvalidArgument},
		{model.NetworkSpec{Subnet: "10.5.0.1/24"}, nil, errdefs.ErrInvalidArgument},
		{model.NetworkSpec{Subnet: "fd00::/64"}, nil, errdefs.ErrInvalidArgument},
		{model.NetworkSpec{Subnet: "10.5.0.0/31"}, nil, errdefs.ErrInvalidArgument},
		{model.NetworkSpec{Subnet: "10.5.0.0/24", Gateway: "10.6.0.1"}, nil, errdefs.ErrInvalidArgument},
		{model.NetworkSpec{Subnet: "10.5.0.0/24", Gateway: "10.5.0.255"}, nil, errdefs.ErrInvalidArgument},
		{model.NetworkSpec{Subnet: "10.5.0.0/24", Gateway: "nope"}, nil, errdefs.ErrInvalidArgument},
		{model.NetworkSpec{Subnet: "10.5.0.0/24", IPRange: "10.6.0.0/25"}, nil, errdefs.ErrInvalidArgument},
		{model.NetworkSpec{Subnet: "10.5.0.0/24", IPRange: "10.5.0.0/16"}, nil, errdefs.ErrInvalidArgument},
		{model.NetworkSpec{Gateway: "10.5.0.1"}, nil, errdefs.ErrInvalidArgument},
		{model.NetworkSpec{Subnet: "10.5.0.0/24"}, prefixes("10.0.0.0/8"), errdefs.ErrPermissionDenied},
		{model.NetworkSpec{Subnet: "10.0.0.0/8"}, prefixes("10.5.0.0/24"), errdefs.ErrPermissionDenied},
		{model.NetworkSpec{}, pools, errdefs.ErrPermissionDenied},
	} {
		if _, err := Complete(tc.spec, tc.used, pools); !errors.Is(err, tc.is) {
			t.Errorf("Complete(%+v, %v) = %v, want %v", tc.spec, tc.used, err, tc.is)
		}
	}
}

// TestCreateConcurrent: networks created at once, from several clients,
// never get overlapping subnets, and other tenants may reuse them.
func TestCreateConcurrent(t *testing.T) {
	e := testetcd.Start(t)
	a := &Allocator{Store: store.New(e.Client), Reserved: prefixes("172.18.0.0/16")}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			n := &model.Network{Meta: model.Meta{Kind: model.KindNetwork, Tenant: "acme", Name: fmt.Sprintf("n%d", i)}}
			errs <- a.Create(ctx, n)
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	nets, _, err := store.List[model.Network](ctx, a.Store, model.KindNetwork, "acme")
	if err != nil || len(nets) != 8 {
		t.Fatalf("networks: %d, %v", len(nets), err)
	}
	var seen []netip.Prefix
	for _, n := range nets {
		p := netip.MustParsePrefix(n.Spec.Subnet)
		for _, q := range append(seen, a.Reserved...) {
			if p.Overlaps(q) {
				t.Errorf("%s got %s, which overlaps %s", n.Name, p, q)
			}
		}
		seen = append(seen, p)
	}
	other := &model.Network{Meta: model.Meta{Kind: model.KindNetwork, Tenant: "other", Name: "n0"}, Spec: model.NetworkSpec{Subnet: nets[0].Spec.Subnet}}
	if err := a.Create(ctx, other); err != nil {
		t.Errorf("another tenant on the same subnet: %v", err)
	}
	// A subnet from the pools overlaps no tenant's network.
	third := &model.Network{Meta: model.Meta{Kind: model.KindNetwork, Tenant: "third", Name: "n0"}}
	if err := a.Create(ctx, third); err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix(third.Spec.Subnet)
	for _, q := range seen {
		if p.Overlaps(q) {
			t.Errorf("another tenant's pool subnet %s overlaps %s", p, q)
		}
	}
}

func TestAddress(t *testing.T) {
	spec := model.NetworkSpec{Subnet: "10.5.0.0/29", Gateway: "10.5.0.1"}
	used := map[netip.Addr]bool{}
	var got []string
	for {
		ip, err := Address(spec, "", used)
		if err != nil {
			if !errors.Is(err, errdefs.ErrUnavailable) {
				t.Fatal(err)
			}
			break
		}
		used[ip] = true
		got = append(got, ip.String())
	}
	// .0 is the network, .1 the gateway, .7 the broadcast.
	if fmt.Sprint(got) != "[10.5.0.2 10.5.0.3 10.5.0.4 10.5.0.5 10.5.0.6]" {
		t.Errorf("addresses handed out: %v", got)
	}
	ranged := model.NetworkSpec{Subnet: "10.5.0.0/24", Gateway: "10.5.0.1", IPRange: "10.5.0.128/25"}
	if ip, err := Address(ranged, "", nil); err != nil || ip.String() != "10.5.0.128" {
		t.Errorf("first of the range: %v %v", ip, err)
	}
	if ip, err := Address(ranged, "10.5.0.9", nil); err != nil || ip.String() != "10.5.0.9" {
		t.Errorf("a requested address in the subnet: %v %v", ip, err)
	}
	for want, is := range map[string]error{
		"10.5.0.1": errdefs.ErrInvalidArgument, "10.5.0.255": errdefs.ErrInvalidArgument,
		"10.6.0.2": errdefs.ErrInvalidArgument, "x": errdefs.ErrInvalidArgument, "fd00::1": errdefs.ErrInvalidArgument,
	} {
		if _, err := Address(ranged, want, nil); !errors.Is(err, is) {
			t.Errorf("Address(%s) = %v, want %v", want, err, is)
		}
	}
	if _, err := Address(ranged, "10.5.0.9", map[netip.Addr]bool{netip.MustParseAddr("10.5.0.9"): true}); !errdefs.IsConflict(err) {
		t.Errorf("a taken address: %v", err)
	}
}

// TestAssign: pods get distinct addresses at once, a deleted pod's
// address is free again, and a network in use is not removed.
func TestAssign(t *testing.T) {
	e := testetcd.Start(t)
	a := &Allocator{Store: store.New(e.Client)}
	ctx := context.Background()
	n := &model.Network{Meta: model.Meta{Kind: model.KindNetwork, Tenant: "acme", Name: "net1", Alias: "front"}, Spec: model.NetworkSpec{Subnet: "10.9.0.0/24"}}
	if err := a.Create(ctx, n); err != nil {
		t.Fatal(err)
	}
	pod := func(name string) *model.Pod {
		return &model.Pod{Meta: model.Meta{Kind: model.KindPod, Tenant: "acme", Name: name}, Spec: model.PodSpec{
			Containers: []model.Container{{Name: "c", Image: "img"}}, Resources: model.Resources{CPUs: 1, MemoryMiB: 64},
			Restart: model.Restart{Policy: model.RestartNo}, Desired: model.DesiredStopped,
			Attachments: []model.Attachment{{Network: "net1"}}}}
	}
	// As a frontend does: assign and create under the tenant's lock.
	create := func(p *model.Pod) error {
		return a.Store.Locked(ctx, store.TenantLock(p.Tenant), func() error {
			if err := a.Assign(ctx, p); err != nil {
				return err
			}
			return a.Store.Create(ctx, p)
		})
	}
	var wg sync.WaitGroup
	pods := make([]*model.Pod, 6)
	for i := range pods {
		pods[i] = pod(fmt.Sprintf("p%d", i))
		wg.Add(1)
		go func(p *model.Pod) {
			defer wg.Done()
			if err := create(p); err != nil {
				t.Error(err)
			}
		}(pods[i])
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, p := range pods {
		ip := p.Spec.Attachments[0].IP
		if seen[ip] || !netip.MustParsePrefix("10.9.0.0/24").Contains(netip.MustParseAddr(ip)) || ip == "10.9.0.1" {
			t.Errorf("pod %s got %s", p.Name, ip)
		}
		seen[ip] = true
	}
	if err := a.DeleteNetwork(ctx, n); !errdefs.IsConflict(err) {
		t.Errorf("removing a network in use: %v", err)
	}
	freed := pods[0].Spec.Attachments[0].IP
	for _, p := range pods {
		if err := a.Store.Delete(ctx, model.KindPod, "acme", p.Name, 0); err != nil {
			t.Fatal(err)
		}
	}
	again := pod("again")
	if err := create(again); err != nil || again.Spec.Attachments[0].IP != "10.9.0.2" {
		t.Errorf("after the pods went: %v %v (first was %s)", again.Spec.Attachments, err, freed)
	}
	missing := pod("lost")
	missing.Spec.Attachments[0].Network = "nosuch"
	if err := create(missing); !errdefs.IsNotFound(err) {
		t.Errorf("a pod on a missing network: %v", err)
	}
	a.Store.Delete(ctx, model.KindPod, "acme", "again", 0)
	if err := a.DeleteNetwork(ctx, n); err != nil {
		t.Errorf("removing a network no pod uses: %v", err)
	}
}

func TestParsePool(t *testing.T) {
	got, err := ParsePool("base=10.200.0.0/16,size=24")
	if err != nil || len(got) != 256 || got[0].String() != "10.200.0.0/24" || got[255].String() != "10.200.255.0/24" {
		t.Fatalf("ParsePool /16 in /24s: %v (%d) %v", got[:min(2, len(got))], len(got), err)
	}
	if got, err := ParsePool("size=20, base=192.168.0.0/16"); err != nil || len(got) != 16 || got[1].String() != "192.168.16.0/20" {
		t.Fatalf("ParsePool in another order: %v %v", got, err)
	}
	for _, bad := range []string{"", "base=10.0.0.0/8", "size=24", "base=nope,size=24", "base=10.0.0.0/16,size=8",
		"base=10.0.0.0/16,size=31", "base=10.0.0.0/8,size=30", "base=10.0.0.0/16,size=x", "base=10.0.0.0/16,size=24,x=1", "base=::/64,size=80"} {
		if _, err := ParsePool(bad); err == nil {
			t.Errorf("ParsePool(%q) took it", bad)
		}
	}
}
