//go:build e2e

package e2e

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDockerNetworks: docker network create, ls, inspect, rm and prune,
// with subnets allocated by macro's IPAM and Docker's errors.
func TestDockerNetworks(t *testing.T) {
	t.Parallel()
	d := newDockerEnv(t)
	since := strconv.FormatInt(time.Now().Unix(), 10)

	front := strings.TrimSpace(d.ok(t, "network", "create", "front"))
	if !hex64.MatchString(front) {
		t.Fatalf("network create printed %q, want a 64-hex ID", front)
	}
	d.ok(t, "network", "create", "back")
	d.ok(t, "network", "create", "--subnet", "10.50.0.0/24", "--gateway", "10.50.0.254", "--ip-range", "10.50.0.128/25",
		"--internal", "--label", "tier=db", "db")

	// Auto subnets never overlap each other, the given one, or the
	// nodes' default bridge.
	subnets := map[string]netip.Prefix{}
	for _, n := range []string{"front", "back", "db", "bridge"} {
		p, err := netip.ParsePrefix(strings.TrimSpace(d.ok(t, "network", "inspect", n, "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}")))
		if err != nil {
			t.Fatalf("subnet of %s: %v", n, err)
		}
		for m, q := range subnets {
			if p.Overlaps(q) {
				t.Errorf("%s (%s) overlaps %s (%s)", n, p, m, q)
			}
		}
		subnets[n] = p
	}
	if out := d.ok(t, "network", "inspect", "db", "--format", "{{range .IPAM.Config}}{{.Gateway}} {{.IPRange}}{{end}} {{.Internal}} {{.Labels.tier}}"); out != "10.50.0.254 10.50.0.128/25 true db\n" {
		t.Errorf("inspect db: %q", out)
	}
	// By ID and by ID prefix.
	if out := d.ok(t, "network", "inspect", front[:8], "--format", "{{.Name}}"); out != "front\n" {
		t.Errorf("inspect by ID prefix: %q", out)
	}
	if out := d.ok(t, "network", "ls", "--format", "{{.Name}}"); out != "back\nbridge\ndb\nfront\n" { // the CLI sorts by name
		t.Errorf("network ls: %q", out)
	}
	if out := d.ok(t, "network", "ls", "-q", "--filter", "label=tier=db"); len(strings.Fields(out)) != 1 {
		t.Errorf("network ls --filter label: %q", out)
	}
	if out := d.ok(t, "network", "ls", "--filter", "type=custom", "--format", "{{.Name}}"); out != "back\ndb\nfront\n" {
		t.Errorf("network ls --filter type=custom: %q", out)
	}

	// Bad input, with Docker's messages.
	d.fails(t, 1, "network with name front already exists", "network", "create", "front")
	d.fails(t, 1, "network with name bridge already exists", "network", "create", "bridge")
	d.fails(t, 1, "Pool overlaps with other one on this address space", "network", "create", "--subnet", "10.50.0.0/16", "wide")
	d.fails(t, 1, "invalid subnet nope", "network", "create", "--subnet", "nope", "bad")
	d.fails(t, 1, "not supported", "network", "create", "-d", "overlay", "ov")
	code, body, _ := d.api(t, "POST", "/networks/create", `{"Name":"x","IPAM":{"Config":[{"Subnet":"10.70.0.0/24","Gateway":"10.71.0.1"}]}}`)
	apiError(t, "a gateway outside its subnet", code, body, http.StatusBadRequest, "no matching subnet for gateway 10.71.0.1")
	code, body, _ = d.api(t, "POST", "/networks/create", `{"Name":`)
	apiError(t, "malformed JSON", code, body, http.StatusBadRequest, "")
	d.fails(t, 1, "network nosuch not found", "network", "inspect", "nosuch")
	d.fails(t, 1, "network nosuch not found", "network", "rm", "nosuch")
	d.fails(t, 1, "pre-defined network and cannot be removed", "network", "rm", "bridge")

	// rm by ID prefix, then prune takes the rest; the events say so.
	d.ok(t, "network", "rm", front[:12])
	out := d.ok(t, "network", "prune", "-f")
	if !strings.Contains(out, "back") || !strings.Contains(out, "db") {
		t.Errorf("network prune: %q", out)
	}
	if out := d.ok(t, "network", "ls", "--format", "{{.Name}}"); out != "bridge\n" {
		t.Errorf("network ls after prune: %q", out)
	}
	ev := d.ok(t, "events", "--since", since, "--until", strconv.FormatInt(time.Now().Unix()+1, 10),
		"--filter", "type=network", "--filter", "network=front", "--format", "{{.Action}}")
	if ev != "create\ndestroy\n" {
		t.Errorf("network events of front: %q", ev)
	}
	// The freed subnet is handed out again.
	d.ok(t, "network", "create", "--subnet", "10.50.0.0/16", "wide")
	d.ok(t, "network", "rm", "wide")
}
