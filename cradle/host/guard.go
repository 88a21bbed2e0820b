package host

import (
	"fmt"
	"net/netip"
	"strings"
)

// The spoofing guard: a pod's tap may send only frames from the MAC its
// NIC was given, carrying IPv4 from its own address or ARP that claims
// exactly that pair. Anything else a pod sends (another MAC, another
// source address, a forged ARP reply for the gateway, IPv6) is dropped on
// the bridge before it reaches another pod or the host. One table holds
// the rules for every tap; each NIC adds its tuple to the set while its
// pod runs.
const (
	guardTable = "hearth_guard"
	guardSet   = "nics"
)

// guardScript makes the guard's table, or remakes its rules: idempotent,
// and atomic, so that concurrent pods may run it; the set's elements are
// kept.
func guardScript() string {
	return fmt.Sprintf(`add table bridge %[1]s
add set bridge %[1]s %[2]s { type ifname . ether_addr . ipv4_addr; }
add chain bridge %[1]s prerouting { type filter hook prerouting priority filter; policy accept; }
flush chain bridge %[1]s prerouting
add rule bridge %[1]s prerouting iifname != "%[3]s*" accept
add rule bridge %[1]s prerouting ether type ip iifname . ether saddr . ip saddr @%[2]s accept
add rule bridge %[1]s prerouting ether type arp iifname . ether saddr . arp saddr ip @%[2]s iifname . arp saddr ether . arp saddr ip @%[2]s accept
add rule bridge %[1]s prerouting drop
`, guardTable, guardSet, TapPrefix)
}

// guardElement is a NIC's tuple in the guard's set.
func guardElement(tap, mac string, ip netip.Addr) string {
	return fmt.Sprintf(`{ "%s" . %s . %s }`, tap, strings.ToLower(mac), ip)
}

// Guard lets the tap (of namespace ns) send as mac and ip, and nothing
// else. Each namespace has its own guard table.
func Guard(ns, tap, mac string, ip netip.Addr) error {
	script := guardScript() + fmt.Sprintf("add element bridge %s %s %s\n", guardTable, guardSet, guardElement(tap, mac, ip))
	return InNS(ns, func() error { return nft(script, "guard tap "+tap) })
}

// Unguard forgets the tap's tuple once its pod is gone; a namespace that
// is gone took the tuple with it.
func Unguard(ns, tap, mac string, ip netip.Addr) error {
	if ns != "" && !(TenantNet{Name: ns}).Exists() {
		return nil
	}
	script := fmt.Sprintf("delete element bridge %s %s %s\n", guardTable, guardSet, guardElement(tap, mac, ip))
	return InNS(ns, func() error { return nft(script, "unguard tap "+tap) })
}
