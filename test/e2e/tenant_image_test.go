//go:build e2e

package e2e

import (
	"context"
	"testing"

	"github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// TestPrivateImagesBetweenTenants: an image tenant A pulled with its own
// credentials is not tenant B's, though its blobs are in the shared store;
// B gets it only by pulling with credentials of its own.
func TestPrivateImagesBetweenTenants(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, tokenAuth)
	e := newImageEnv(t)
	ref := reg.Host + "/private/app:1"
	// Put the image in the registry as tenant admin (the CLI's tenant).
	e.must(t, "image", "load", "-i", img.busybox)
	e.must(t, "image", "tag", "hearth.test/busybox", ref)
	e.must(t, "image", "login", "-u", regUser, "-p", regPass, reg.Host)
	e.must(t, "image", "push", ref)

	svc, err := image.Open(e.data)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := svc.Login(ctx, "tenant-a", reg.Host, regUser, regPass); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Pull(ctx, "tenant-a", ref, nil); err != nil {
		t.Fatalf("tenant a pull: %v", err)
	}
	if _, _, err := svc.Get("tenant-a", ref); err != nil {
		t.Fatalf("tenant a get: %v", err)
	}

	// B sees nothing of it: not by name, not by ID, not in its list.
	aRef, _ := svc.Lookup("tenant-a", ref)
	for _, q := range []string{ref, aRef.ID.String(), aRef.ID.Hex[:12]} {
		if _, _, err := svc.Get("tenant-b", q); !errdefs.IsNotFound(err) {
			t.Fatalf("tenant b get %s: %v, want not found", q, err)
		}
	}
	if l, _ := svc.List("tenant-b"); len(l) != 0 {
		t.Fatalf("tenant b lists %v", l)
	}
	// Having the blobs is no right to them: B's pull asks the registry,
	// which refuses B.
	_, err = svc.Pull(ctx, "tenant-b", ref, nil)
	if !errdefs.IsUnauthenticated(err) {
		t.Fatalf("tenant b pull without credentials: %v, want unauthenticated", err)
	}
	if _, _, err := svc.Get("tenant-b", ref); !errdefs.IsNotFound(err) {
		t.Fatalf("after a refused pull, tenant b has %s: %v", ref, err)
	}
	// With its own credentials B pulls it, and shares the blobs.
	if err := svc.Login(ctx, "tenant-b", reg.Host, regUser, regPass); err != nil {
		t.Fatal(err)
	}
	var downloaded int
	if _, err := svc.Pull(ctx, "tenant-b", ref, func(p image.Progress) {
		if p.Status == "Downloading" {
			downloaded++
		}
	}); err != nil {
		t.Fatalf("tenant b pull with credentials: %v", err)
	}
	if downloaded != 0 {
		t.Fatal("tenant b downloaded blobs the store already had")
	}
	// A's removal leaves B's image whole.
	if _, err := svc.Remove("tenant-a", ref, false); err != nil {
		t.Fatal(err)
	}
	img, _, err := svc.Get("tenant-b", ref)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("tenant b's layer after a's rm: %v", err)
		}
		rc.Close()
	}
}
