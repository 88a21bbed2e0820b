package host

import (
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestTenantNet makes a tenant's namespace with a bridge in it, checks
// what is where, and removes it all.
func TestTenantNet(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("network namespaces need root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("needs nft")
	}
	owner := "hearth-test:" + t.TempDir()
	tn := TenantNetFor(owner, "acme", []string{"hn*"})
	other := TenantNetFor(owner, "bravo", nil)
	if tn.Name == other.Name || tn.Uplink == other.Uplink || len(tn.Uplink) > 15 {
		t.Fatalf("names: %+v %+v", tn, other)
	}
	t.Cleanup(func() { tn.Remove() })
	for i := 0; i < 2; i++ { // idempotent
		if err := tn.Ensure(); err != nil {
			t.Fatal(err)
		}
	}
	br := Bridge{Name: "hntest0", Subnet: netip.MustParsePrefix("10.250.0.0/24"), Gateway: netip.MustParseAddr("10.250.0.1"),
		NAT: true, Isolate: true, IsolateFrom: []string{"hn*"}, Owner: owner, NS: tn.Name}
	if err := br.Ensure(); err != nil {
		t.Fatal(err)
	}
	// The bridge is in the namespace, not on the host.
	if _, err := netlink.LinkByName("hntest0"); err == nil {
		t.Error("the bridge is on the host")
	}
	if got, err := tn.Bridges(); err != nil || len(got) != 1 || got[0] != "hntest0" {
		t.Errorf("bridges in the namespace: %v, %v", got, err)
	}
	// The uplink: found by its owner, addressed from the transfer net,
	// with its rules on the host.
	owned, err := OwnedNets(owner)
	if err != nil || owned[tn.Uplink] != owner {
		t.Errorf("OwnedNets: %v, %v", owned, err)
	}
	up, err := netlink.LinkByName(tn.Uplink)
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := addrList(up)
	if len(addrs) != 1 || !DefaultUplinkPool.Contains(netip.MustParseAddr(addrs[0].IP.String())) {
		t.Errorf("uplink addresses: %v", addrs)
	}
	tables, _ := exec.Command("nft", "list", "tables").Output()
	if !strings.Contains(string(tables), tn.hostTable()) {
		t.Errorf("no host table %s", tn.hostTable())
	}
	// A default route inside, through the uplink.
	var routes []netlink.Route
	if err := InNS(tn.Name, func() (err error) { routes, err = netlink.RouteList(nil, netlink.FAMILY_V4); return err }); err != nil {
		t.Fatal(err)
	}
	def := false
	for _, r := range routes {
		def = def || ((r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw != nil && DefaultUplinkPool.Contains(netip.MustParseAddr(r.Gw.String())))
	}
	if !def {
		t.Errorf("no default route through the uplink: %v", routes)
	}
	if err := tn.Remove(); err != nil {
		t.Fatal(err)
	}
	if tn.Exists() {
		t.Error("the namespace is left")
	}
	if _, err := netlink.LinkByName(tn.Uplink); err == nil {
		t.Error("the uplink is left")
	}
	tables, _ = exec.Command("nft", "list", "tables").Output()
	if strings.Contains(string(tables), tn.hostTable()) {
		t.Error("the host table is left")
	}
	if err := tn.Remove(); err != nil {
		t.Errorf("a second Remove: %v", err)
	}
	if err := InNS(tn.Name, func() error { return nil }); err == nil {
		t.Error("InNS entered a namespace that is gone")
	}

	// A pool of the node's choosing.
	pool, err := ParseUplinkPool("198.18.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	other.Pool = pool
	t.Cleanup(func() { other.Remove() })
	if err := other.Ensure(); err != nil {
		t.Fatal(err)
	}
	up, err = netlink.LinkByName(other.Uplink)
	if err != nil {
		t.Fatal(err)
	}
	if addrs, _ := addrList(up); len(addrs) != 1 || !pool.Contains(netip.MustParseAddr(addrs[0].IP.String())) {
		t.Errorf("uplink addresses from %s: %v", pool, addrs)
	}
	for _, bad := range []string{"10.0.0.0/31", "fd00::/64", "nonsense"} {
		if _, err := ParseUplinkPool(bad); err == nil {
			t.Errorf("ParseUplinkPool(%q) passed", bad)
		}
	}
}
