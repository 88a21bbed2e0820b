package host

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-cloud/hearth/cradle/spec"
)

func TestMACFor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ip, want string
	}{
		{"10.88.0.5", "52:54:0a:58:00:05"},
		{"10.88.255.254", "52:54:0a:58:ff:fe"},
		{"0.0.0.0", "52:54:00:00:00:00"},
		{"255.255.255.255", "52:54:ff:ff:ff:ff"},
		{"192.168.1.17", "52:54:c0:a8:01:11"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := MACFor(netip.MustParseAddr(tt.ip))
		if got != tt.want {
			t.Errorf("MACFor(%s) = %s, want %s", tt.ip, got, tt.want)
		}
		if other, ok := seen[got]; ok {
			t.Errorf("MACFor(%s) = MACFor(%s)", tt.ip, other)
		}
		seen[got] = tt.ip
		// Locally administered (bit 1 of the first octet) and unicast
		// (bit 0 clear).
		hw, err := net.ParseMAC(got)
		if err != nil {
			t.Fatalf("MACFor(%s) = %q: %v", tt.ip, got, err)
		}
		if hw[0]&0b10 == 0 || hw[0]&0b1 != 0 {
			t.Errorf("MACFor(%s) = %s: not a locally administered unicast address", tt.ip, got)
		}
		// The launch spec accepts it.
		ifc := spec.Network{Interfaces: []spec.Interface{{Name: "eth0", MAC: got, Address: tt.ip + "/16", Bridge: "b"}}}
		l := spec.Launch{Version: spec.Version, ID: strings.Repeat("a", 64), Resources: spec.Resources{CPUs: 1, MemoryMiB: 64},
			Network: &ifc, Containers: []spec.Container{{Name: "c", Process: spec.Process{Args: []string{"x"}}}}}
		if err := l.Validate(); err != nil {
			t.Errorf("MACFor(%s) = %s, which the spec rejects: %v", tt.ip, got, err)
		}
	}
}

func TestTapName(t *testing.T) {
	t.Parallel()
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	seen := map[string]bool{}
	// IFNAMSIZ is 16 with the NUL: 15 characters at most. A pod has at
	// most 10 NICs before the name would be too long (see the report).
	for i := range 10 {
		name := TapName(id, i)
		if len(name) > 15 {
			t.Errorf("TapName(id, %d) = %q: %d characters", i, name, len(name))
		}
		if !strings.HasPrefix(name, "hth0123456789a") {
			t.Errorf("TapName(id, %d) = %q does not carry the pod ID", i, name)
		}
		if seen[name] {
			t.Errorf("TapName(id, %d) = %q twice", i, name)
		}
		seen[name] = true
	}
	if a, b := TapName(id, 0), TapName("f"+id[1:], 0); a == b {
		t.Errorf("two pods share tap name %q", a)
	}
}

func testIPAM(t *testing.T, subnet, gw string) *IPAM {
	t.Helper()
	return &IPAM{
		Path: filepath.Join(t.TempDir(), "state", "ipam.json"),
		Bridge: Bridge{
			Name:    "test0",
			Subnet:  netip.MustParsePrefix(subnet),
			Gateway: netip.MustParseAddr(gw),
		},
	}
}

func allocate(t *testing.T, m *IPAM, pod string) string {
	t.Helper()
	a, err := m.Allocate(pod)
	if err != nil {
		t.Fatalf("Allocate(%s): %v", pod, err)
	}
	return a.String()
}

func leases(t *testing.T, m *IPAM) map[string]string {
	t.Helper()
	b, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("lease file: %v", err)
	}
	return out
}

func TestIPAMAllocate(t *testing.T) {
	t.Parallel()
	m := testIPAM(t, "10.99.0.0/24", "10.99.0.1")
	// In order, skipping the network address and the gateway.
	for i, pod := range []string{"a", "b", "c"} {
		if got, want := allocate(t, m, pod), fmt.Sprintf("10.99.0.%d", i+2); got != want {
			t.Fatalf("Allocate(%s) = %s, want %s", pod, got, want)
		}
	}
	// The same pod keeps its address.
	if got := allocate(t, m, "b"); got != "10.99.0.3" {
		t.Fatalf("Allocate(b) again = %s, want 10.99.0.3", got)
	}
	want := map[string]string{"10.99.0.2": "a", "10.99.0.3": "b", "10.99.0.4": "c"}
	if got := leases(t, m); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("leases %v, want %v", got, want)
	}
	// A released address is the first free one again.
	if err := m.Release("b"); err != nil {
		t.Fatal(err)
	}
	if err := m.Release("b"); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if err := m.Release("never-allocated"); err != nil {
		t.Fatalf("Release of an unknown pod: %v", err)
	}
	if got := allocate(t, m, "d"); got != "10.99.0.3" {
		t.Fatalf("Allocate(d) after releasing b = %s, want 10.99.0.3", got)
	}
	if got := allocate(t, m, "e"); got != "10.99.0.5" {
		t.Fatalf("Allocate(e) = %s, want 10.99.0.5", got)
	}
	// Another IPAM on the same file sees the same leases.
	m2 := &IPAM{Path: m.Path, Bridge: m.Bridge}
	if got := allocate(t, m2, "a"); got != "10.99.0.2" {
		t.Fatalf("Allocate(a) through a second IPAM = %s", got)
	}
}

func TestIPAMGatewayNotFirst(t *testing.T) {
	t.Parallel()
	m := testIPAM(t, "10.0.0.0/29", "10.0.0.3")
	var got []string
	for _, pod := range []string{"a", "b", "c", "d", "e"} {
		got = append(got, allocate(t, m, pod))
	}
	if want := "[10.0.0.1 10.0.0.2 10.0.0.4 10.0.0.5 10.0.0.6]"; fmt.Sprint(got) != want {
		t.Fatalf("addresses %v, want %s", got, want)
	}
	if _, err := m.Allocate("f"); err == nil {
		t.Fatal("Allocate in a full /29 succeeded")
	}
}

func TestIPAMExhaustion(t *testing.T) {
	t.Parallel()
	m := testIPAM(t, "10.0.0.0/29", "10.0.0.1")
	// .0 network, .1 gateway, .7 broadcast: five for pods.
	seen := map[string]bool{}
	for i := range 5 {
		a := allocate(t, m, fmt.Sprintf("pod%d", i))
		if seen[a] {
			t.Fatalf("%s handed out twice", a)
		}
		seen[a] = true
	}
	if seen["10.0.0.7"] || seen["10.0.0.1"] || seen["10.0.0.0"] {
		t.Fatalf("handed out a reserved address: %v", seen)
	}
	_, err := m.Allocate("pod5")
	if err == nil || err.Error() != "no free address in 10.0.0.0/29" {
		t.Fatalf("Allocate in a full subnet = %v, want no free address", err)
	}
	// A failed Allocate changes nothing.
	if n := len(leases(t, m)); n != 5 {
		t.Fatalf("%d leases after a failed Allocate", n)
	}
	// Pods that still hold an address still get it.
	if got := allocate(t, m, "pod3"); got != "10.0.0.5" {
		t.Fatalf("Allocate(pod3) in a full subnet = %s", got)
	}
	if err := m.Release("pod2"); err != nil {
		t.Fatal(err)
	}
	if got := allocate(t, m, "pod5"); got != "10.0.0.4" {
		t.Fatalf("Allocate after a release = %s, want 10.0.0.4", got)
	}
}

func TestIPAMUnmaskedSubnet(t *testing.T) {
	t.Parallel()
	m := testIPAM(t, "10.1.2.77/30", "10.1.2.77")
	// 10.1.2.76/30: .77 gateway, .78 the only address, .79 broadcast.
	if got := allocate(t, m, "a"); got != "10.1.2.78" {
		t.Fatalf("Allocate = %s, want 10.1.2.78", got)
	}
	if _, err := m.Allocate("b"); err == nil {
		t.Fatal("Allocate in a full /30 succeeded")
	}
}

func TestIPAMReclaimsDeadPods(t *testing.T) {
	t.Parallel()
	m := testIPAM(t, "10.99.0.0/24", "10.99.0.1")
	for _, pod := range []string{"a", "b", "c"} {
		allocate(t, m, pod)
	}
	var mu sync.Mutex
	dead := map[string]bool{"a": true, "c": true}
	m.Alive = func(id string) bool {
		mu.Lock()
		defer mu.Unlock()
		return !dead[id]
	}
	if got := allocate(t, m, "d"); got != "10.99.0.2" {
		t.Fatalf("Allocate(d) = %s, want a's reclaimed 10.99.0.2", got)
	}
	want := map[string]string{"10.99.0.2": "d", "10.99.0.3": "b"}
	if got := leases(t, m); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("leases %v, want %v (every dead pod's lease dropped)", got, want)
	}
	// A live pod keeps its address.
	if got := allocate(t, m, "b"); got != "10.99.0.3" {
		t.Fatalf("Allocate(b) = %s", got)
	}
}

func TestIPAMConcurrent(t *testing.T) {
	t.Parallel()
	m := testIPAM(t, "10.99.0.0/24", "10.99.0.1")
	const n = 20
	addrs := make([]netip.Addr, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Each goroutine has its own IPAM, as separate processes do.
			mi := &IPAM{Path: m.Path, Bridge: m.Bridge}
			addrs[i], errs[i] = mi.Allocate(fmt.Sprintf("pod%02d", i))
		})
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Allocate %d: %v", i, errs[i])
		}
		a := addrs[i]
		if j, ok := seen[a]; ok {
			t.Fatalf("pods %d and %d both got %s", i, j, a)
		}
		seen[a] = i
		if !m.Bridge.Subnet.Contains(a) || a == m.Bridge.Gateway || a == m.Bridge.Subnet.Addr() {
			t.Fatalf("pod %d got %s", i, a)
		}
	}
	l := leases(t, m)
	if len(l) != n {
		t.Fatalf("%d leases on file, want %d", len(l), n)
	}
	for i := range n {
		if got := l[addrs[i].String()]; got != fmt.Sprintf("pod%02d", i) {
			t.Fatalf("lease of %s is %q", addrs[i], got)
		}
	}
	// The first 20 addresses after the gateway, in some order.
	for k := 2; k < 2+n; k++ {
		if _, ok := seen[netip.MustParseAddr(fmt.Sprintf("10.99.0.%d", k))]; !ok {
			t.Fatalf("10.99.0.%d not handed out; got %v", k, addrs)
		}
	}
}

func TestIPAMCorruptFile(t *testing.T) {
	t.Parallel()
	for _, content := range []string{"{", "not json", `["10.0.0.2"]`, `{"10.0.0.2": 5}`} {
		m := testIPAM(t, "10.0.0.0/24", "10.0.0.1")
		if err := os.MkdirAll(filepath.Dir(m.Path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m.Path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if a, err := m.Allocate("a"); err == nil || !strings.Contains(err.Error(), "ipam: corrupt "+m.Path) {
			t.Errorf("Allocate with lease file %q = %v, %v; want a corrupt file error", content, a, err)
		}
		if err := m.Release("a"); err == nil || !strings.Contains(err.Error(), "corrupt") {
			t.Errorf("Release with lease file %q = %v; want a corrupt file error", content, err)
		}
		// The file is left for a human to look at.
		if b, _ := os.ReadFile(m.Path); string(b) != content {
			t.Errorf("corrupt lease file rewritten to %q", b)
		}
	}
}

// TestBridgeTableScript: the rules parse (nft --check) and say what they
// should.
func TestBridgeTableScript(t *testing.T) {
	b := Bridge{Name: "hn0123456789ab", Subnet: netip.MustParsePrefix("10.50.0.0/24"), Gateway: netip.MustParseAddr("10.50.0.1"),
		NAT: true, Isolate: true, IsolateFrom: []string{"hn*", "hearth0"}}
	script := b.tableScript()
	for _, want := range []string{
		`ip saddr 10.50.0.0/24 oifname != "hn0123456789ab" masquerade`,
		`iifname "hn0123456789ab" oifname "hn*" oifname != "hn0123456789ab" drop`,
		`iifname "hearth0" iifname != "hn0123456789ab" oifname "hn0123456789ab" drop`,
		`iifname "hn0123456789ab" ct state established,related accept`,
		`iifname "hn0123456789ab" ip daddr 10.50.0.1 udp dport 53 accept`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	nftCheck(t, script)
}

// nftCheck has nft parse a script without applying it.
func nftCheck(t *testing.T, script string) {
	t.Helper()
	bin, err := exec.LookPath("nft")
	if err != nil || os.Geteuid() != 0 {
		t.Skip("nft --check needs nft and root")
	}
	cmd := exec.Command(bin, "--check", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft --check: %v\n%s\n%s", err, out, script)
	}
}

// TestGuardScript: the spoofing guard parses, passes only a tap's own
// MAC and address (IPv4 and ARP alike), drops the rest from taps, and
// leaves other ports of the bridges alone.
func TestGuardScript(t *testing.T) {
	script := guardScript() + "add element bridge hearth_guard nics " + guardElement("hthabcdef012340", "52:54:0A:32:00:02", netip.MustParseAddr("10.50.0.2")) + "\n"
	for _, want := range []string{
		`iifname != "hth*" accept`,
		`ether type ip iifname . ether saddr . ip saddr @nics accept`,
		`ether type arp iifname . ether saddr . arp saddr ip @nics iifname . arp saddr ether . arp saddr ip @nics accept`,
		"prerouting drop\n",
		`{ "hthabcdef012340" . 52:54:0a:32:00:02 . 10.50.0.2 }`,
	} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	nftCheck(t, script)
}
