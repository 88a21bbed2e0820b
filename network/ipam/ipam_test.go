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
}
