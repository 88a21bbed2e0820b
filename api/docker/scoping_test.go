package docker

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/testetcd"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
	"github.com/hearth-cloud/hearth/volume"
)

// FuzzTenantScoping looks up containers, networks and volumes by random
// references as tenant "acme", beside a tenant "bravo" that has objects
// of the same names and IDs that share prefixes with acme's: a lookup
// finds acme's own or answers exactly as for a thing that does not
// exist, never with bravo's.
func FuzzTenantScoping(f *testing.F) {
	e := testetcd.Start(f)
	s := &Server{Store: store.New(e.Client)}
	s.Volumes = &volume.Manager{Store: s.Store, Node: "n1"}
	ctx := context.Background()
	ids := map[string][]string{}
	for i, tenant := range []string{"acme", "bravo"} {
		for j, name := range []string{"web", "db", tenant + "-only"} {
			// bravo's IDs share acme's first digits.
			id := fmt.Sprintf("%x%x%062x", j, i, i*7+j+1)
			ids[tenant] = append(ids[tenant], id)
			p := &model.Pod{
				Meta: model.Meta{Kind: model.KindPod, Tenant: tenant, Name: id, Alias: name,
					Annotations: map[string]string{annConfig: `{"Image":"x"}`, annHost: `{}`}},
				Spec: model.PodSpec{Containers: []model.Container{{Name: "main", Image: "x"}}, Desired: model.DesiredStopped},
			}
			if err := s.Store.Create(ctx, p); err != nil {
				f.Fatal(err)
			}
			n := &model.Network{Meta: model.Meta{Kind: model.KindNetwork, Tenant: tenant, Name: "e" + id[1:], Alias: name}}
			if err := s.Store.Create(ctx, n); err != nil {
				f.Fatal(err)
			}
			v := &model.VolumeObject{Meta: model.Meta{Kind: model.KindVolume, Tenant: tenant, Name: "f" + id[1:], Alias: name + "-vol"}}
			if err := s.Store.Create(ctx, v); err != nil {
				f.Fatal(err)
			}
		}
	}
	for _, id := range ids["bravo"] {
		f.Add(id)
		f.Add(id[:12])
		f.Add(id[:3])
		f.Add("e" + id[1:12])
		f.Add("/" + id)
	}
	for _, s := range []string{"bravo-only", "/bravo-only", "bravo-only-vol", "web", "db-vol", "0", "", "/", "../bravo/web",
		"bravo/web", "acme/../bravo/web", "%2e%2e", "web\x00", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	owned := func(tenant string) error {
		if tenant != "acme" {
			return fmt.Errorf("found tenant %s's object", tenant)
		}
		return nil
	}
	// matches counts acme's IDs that a prefix ambiguity could be about.
	matches := func(prefix string, rename func(string) string) int {
		n := 0
		for _, id := range ids["acme"] {
			if prefix != "" && strings.HasPrefix(rename(id), prefix) {
				n++
			}
		}
		return n
	}
	f.Fuzz(func(t *testing.T, ref string) {
		c, err := s.resolve(ctx, "acme", ref)
		switch {
		case err == nil:
			if err := owned(c.pod.Tenant); err != nil {
				t.Fatalf("container %q: %v", ref, err)
			}
		case errdefs.IsNotFound(err):
			if err.Error() != "No such container: "+ref {
				t.Fatalf("container %q: %v", ref, err)
			}
		case strings.Contains(err.Error(), "multiple IDs"):
			if matches(strings.TrimPrefix(ref, "/"), func(id string) string { return id }) < 2 {
				t.Fatalf("container %q: ambiguous among other tenants' IDs: %v", ref, err)
			}
		default:
			t.Fatalf("container %q: %v", ref, err)
		}

		n, err := s.resolveNetwork(ctx, "acme", ref)
		switch {
		case err == nil:
			if n != nil {
				if err := owned(n.Tenant); err != nil {
					t.Fatalf("network %q: %v", ref, err)
				}
			}
		case errdefs.IsNotFound(err):
			if err.Error() != "network "+ref+" not found" {
				t.Fatalf("network %q: %v", ref, err)
			}
		case strings.Contains(err.Error(), "ambiguous"):
			if matches(ref, func(id string) string { return "e" + id[1:] }) < 2 {
				t.Fatalf("network %q: ambiguous among other tenants' IDs: %v", ref, err)
			}
		default:
			t.Fatalf("network %q: %v", ref, err)
		}

		v, err := s.Volumes.Get(ctx, "acme", ref)
		switch {
		case err == nil:
			if err := owned(v.Tenant); err != nil {
				t.Fatalf("volume %q: %v", ref, err)
			}
		case errdefs.IsNotFound(err):
			if err.Error() != "get "+ref+": no such volume" {
				t.Fatalf("volume %q: %v", ref, err)
			}
		default:
			t.Fatalf("volume %q: %v", ref, err)
		}
	})
}
