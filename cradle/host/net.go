package host

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/internal/atomicfile"
)

// Bridge is a host bridge that pods' taps join, with the gateway address
// and, optionally, NAT to the host's network.
type Bridge struct {
	Name    string
	Subnet  netip.Prefix
	Gateway netip.Addr
	NAT     bool
	// Isolate keeps the bridge's pods to themselves: nothing is routed
	// between it and the bridges matching IsolateFrom, and its pods reach
	// nothing on the host but replies to what the host opened.
	Isolate     bool
	IsolateFrom []string // interface names, "hn*" wildcards allowed
	// Owner is written into the bridge's interface alias, so that its
	// owner can find its own bridges again (OwnedBridges).
	Owner string
	// NS is the network namespace the bridge lives in; "" is the host's.
	NS string
}

// DefaultBridge is where `hearth cradle run` puts pods that ask for no
// network of their own: a private bridge with NAT to the host's network.
var DefaultBridge = Bridge{
	Name:    "hearth0",
	Subnet:  netip.MustParsePrefix("10.88.0.0/16"),
	Gateway: netip.MustParseAddr("10.88.0.1"),
	NAT:     true,
}

// Ensure creates the bridge if it is missing, gives it the gateway address,
// and installs NAT. It is idempotent and safe to run concurrently.
func (b Bridge) Ensure() error { return InNS(b.NS, b.ensure) }

func (b Bridge) ensure() error {
	// A bridge left to itself takes the lowest MAC of its ports, so its
	// address would change as pods come and go, and pods that cached the
	// old one would lose their gateway (and resolver) for as long as
	// their ARP entry lasts. It gets a fixed one, from its gateway.
	mac, _ := net.ParseMAC(MACFor(b.Gateway))
	link, err := netlink.LinkByName(b.Name)
	if err == nil && link.Attrs().Flags&net.FlagUp != 0 {
		// The bridge is brought up last, so an up bridge is a ready one:
		// the common case costs one netlink call.
		if !bytes.Equal(link.Attrs().HardwareAddr, mac) {
			if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
				return fmt.Errorf("bridge %s: MAC: %w", b.Name, err)
			}
		}
		return nil
	}
	if err != nil {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.Name, HardwareAddr: mac}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", b.Name, err)
		}
		if link, err = netlink.LinkByName(b.Name); err != nil {
			return fmt.Errorf("bridge %s: %w", b.Name, err)
		}
	}
	if !bytes.Equal(link.Attrs().HardwareAddr, mac) {
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("bridge %s: MAC: %w", b.Name, err)
		}
	}
	if b.Owner != "" {
		if err := netlink.LinkSetAlias(link, b.Owner); err != nil {
			return fmt.Errorf("bridge %s: alias: %w", b.Name, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: b.Gateway.AsSlice(), Mask: net.CIDRMask(b.Subnet.Bits(), 32)}}
	if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("bridge %s: address %s: %w", b.Name, b.Gateway, err)
	}
	if b.NAT {
		if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0); err != nil {
			return fmt.Errorf("enable forwarding: %w", err)
		}
	}
	if b.NAT || b.Isolate {
		if err := b.installTable(); err != nil {
			return err
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("bridge %s: up: %w", b.Name, err)
	}
	return nil
}

// nftTable is the bridge's own nftables table.
func (b Bridge) nftTable() string { return "hearth_" + strings.ReplaceAll(b.Name, "-", "_") }

// installTable replaces the bridge's nftables table atomically: masquerade
// traffic from the subnet that leaves through another interface, and the
// isolation rules.
func (b Bridge) installTable() error {
	return nft(b.tableScript(), "install nftables rules for "+b.Name)
}

// tableScript is the nft script that (re)makes the bridge's table.
func (b Bridge) tableScript() string {
	var chains strings.Builder
	if b.NAT {
		fmt.Fprintf(&chains, `	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %s oifname != "%s" masquerade
	}
`, b.Subnet, b.Name)
	}
	if b.Isolate {
		fmt.Fprintf(&chains, "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n")
		if !b.NAT {
			// An internal network: nothing leaves it.
			fmt.Fprintf(&chains, "\t\tiifname \"%[1]s\" oifname != \"%[1]s\" drop\n", b.Name)
		}
		for _, other := range b.IsolateFrom {
			fmt.Fprintf(&chains, "\t\tiifname \"%[1]s\" oifname \"%[2]s\" oifname != \"%[1]s\" drop\n", b.Name, other)
			fmt.Fprintf(&chains, "\t\tiifname \"%[2]s\" iifname != \"%[1]s\" oifname \"%[1]s\" drop\n", b.Name, other)
		}
		fmt.Fprintf(&chains, "\t}\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n")
		// The network's resolver listens on the gateway (network/dns).
		fmt.Fprintf(&chains, "\t\tiifname \"%[1]s\" ct state established,related accept\n", b.Name)
		fmt.Fprintf(&chains, "\t\tiifname \"%[1]s\" ip daddr %[2]s udp dport 53 accept\n\t\tiifname \"%[1]s\" ip daddr %[2]s tcp dport 53 accept\n", b.Name, b.Gateway)
		fmt.Fprintf(&chains, "\t\tiifname \"%[1]s\" drop\n\t}\n", b.Name)
	}
	return fmt.Sprintf("table ip %[1]s\ndelete table ip %[1]s\ntable ip %[1]s {\n%[2]s}\n", b.nftTable(), chains.String())
}

func nft(script, what string) error {
	bin, err := exec.LookPath("nft")
	if err != nil {
		return fmt.Errorf("nft not found: install nftables (`apt-get install nftables`)")
	}
	cmd := exec.Command(bin, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", what, err, bytes.TrimSpace(out))
	}
	return nil
}

// OverlappingBridge names a bridge other than name, among those whose
// names start with prefix, with an address in subnet; "" when there is
// none. Two bridges of one subnet on a host would make its routes
// ambiguous.
func OverlappingBridge(ns, name, prefix string, subnet netip.Prefix) (string, error) {
	var other string
	err := InNS(ns, func() (err error) {
		other, _, err = overlapping(name, prefix, subnet)
		return err
	})
	return other, err
}

func overlapping(name, prefix string, subnet netip.Prefix) (string, string, error) {
	links, err := linkList()
	if err != nil {
		return "", "", fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		n := l.Attrs().Name
		if n == name || !strings.HasPrefix(n, prefix) || l.Type() != "bridge" {
			continue
		}
		addrs, err := addrList(l)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, ok := netip.AddrFromSlice(a.IP); ok {
				bits, _ := a.Mask.Size()
				if netip.PrefixFrom(p.Unmap(), bits).Masked().Overlaps(subnet) {
					return n, l.Attrs().Alias, nil
				}
			}
		}
	}
	return "", "", nil
}

// OwnedBridges lists the bridges whose owner is owner.
func OwnedBridges(owner string) ([]string, error) {
	links, err := linkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []string
	for _, l := range links {
		if l.Type() == "bridge" && l.Attrs().Alias == owner {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// BridgePorts counts the links on a host bridge (pods' taps).
func BridgePorts(name string) (int, error) {
	br, err := netlink.LinkByName(name)
	if err != nil {
		return 0, err
	}
	links, err := linkList()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			n++
		}
	}
	return n, nil
}

// Remove deletes the bridge and its nftables table; a bridge that is not
// there (or whose namespace is not) is no error.
func (b Bridge) Remove() error {
	if b.NS != "" && !(TenantNet{Name: b.NS}).Exists() {
		return nil
	}
	return InNS(b.NS, b.remove)
}

func (b Bridge) remove() error {
	// The rules first: a bridge that is gone has nothing left behind.
	script := fmt.Sprintf("table ip %[1]s\ndelete table ip %[1]s\n", b.nftTable())
	if err := nft(script, "remove nftables rules of "+b.Name); err != nil {
		return err
	}
	if link, err := netlink.LinkByName(b.Name); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			return fmt.Errorf("remove bridge %s: %w", b.Name, err)
		}
	}
	return nil
}

// OpenTap creates a tap device that lives as long as a descriptor to it is
// open: when QEMU (and everyone else holding it) exits, the kernel removes
// the device, so a crash leaves no tap behind. vnet_hdr lets QEMU offload
// checksums.
func OpenTap(ns, name string) (tap *os.File, err error) {
	err = InNS(ns, func() error {
		tap, err = openTap(name)
		return err
	})
	return tap, err
}

func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	var req struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	if len(name) >= unix.IFNAMSIZ {
		unix.Close(fd)
		return nil, fmt.Errorf("tap name %q too long", name)
	}
	copy(req.name[:], name)
	req.flags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req))); errno != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("create tap %s: %w", name, errno)
	}
	return os.NewFile(uintptr(fd), "tap:"+name), nil
}

// AttachTap puts a tap on a bridge (of namespace ns) and brings it up.
func AttachTap(ns, tap, bridge string) error {
	return InNS(ns, func() error { return attachTap(tap, bridge) })
}

func attachTap(tap, bridge string) error {
	l, err := netlink.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("tap %s: %w", tap, err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	if err := netlink.LinkSetMaster(l, br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", tap, bridge, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("tap %s up: %w", tap, err)
	}
	return nil
}

// DetachTap takes a tap (of namespace ns) off its bridge and down.
func DetachTap(ns, tap string) error {
	return InNS(ns, func() error { return detachTap(tap) })
}

func detachTap(tap string) error {
	l, err := netlink.LinkByName(tap)
	if err != nil {
		return fmt.Errorf("tap %s: %w", tap, err)
	}
	if err := netlink.LinkSetNoMaster(l); err != nil {
		return fmt.Errorf("detach %s: %w", tap, err)
	}
	if err := netlink.LinkSetDown(l); err != nil {
		return fmt.Errorf("tap %s down: %w", tap, err)
	}
	return nil
}

// SpareMAC is the MAC of a pod's spare NIC i: locally administered, from
// the pod's ID, and apart from MACFor's addresses (52:54:…).
func SpareMAC(podID string, i int) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", podID, i)))
	return fmt.Sprintf("52:55:%02x:%02x:%02x:%02x", h[0], h[1], h[2], h[3])
}

// TapPrefix starts the name of every pod's tap.
const TapPrefix = "hth"

// TapName is the host tap of a pod's NIC i (i < spec.MaxInterfaces): 15
// bytes, the kernel's limit.
func TapName(podID string, i int) string { return fmt.Sprintf("%s%s%x", TapPrefix, podID[:11], i) }

// MACFor derives a locally administered MAC from an IPv4 address, as
// Docker does, so addresses and MACs never clash on a bridge.
func MACFor(ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// HostDNS returns the host's resolvers that a VM can reach: loopback
// resolvers (systemd-resolved's 127.0.0.53) are of no use inside a VM, so
// Docker's fallback takes their place.
func HostDNS() []string {
	var out []string
	f, err := os.Open("/etc/resolv.conf")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) >= 2 && fs[0] == "nameserver" {
				if a, err := netip.ParseAddr(fs[1]); err == nil && !a.IsLoopback() && a.Is4() {
					out = append(out, a.String())
				}
			}
		}
	}
	if len(out) == 0 {
		out = []string{"8.8.8.8", "8.8.4.4"}
	}
	return out
}

// IPAM hands out addresses of a bridge's subnet to pods. Leases live in a
// JSON file under a lock, so concurrent `cradle run`s never collide; leases
// of pods whose directory is gone are reclaimed.
type IPAM struct {
	Path   string
	Bridge Bridge
	// Alive reports whether a pod still exists; a lease of a pod that does
	// not is free.
	Alive func(podID string) bool
}

// Allocate leases a free address to podID.
func (m *IPAM) Allocate(podID string) (netip.Addr, error) {
	var got netip.Addr
	err := m.update(func(leases map[string]string) error {
		used := map[netip.Addr]bool{}
		for ip, id := range leases {
			if id == podID {
				got, _ = netip.ParseAddr(ip)
				return nil
			}
			if m.Alive != nil && !m.Alive(id) {
				delete(leases, ip)
				continue
			}
			a, _ := netip.ParseAddr(ip)
			used[a] = true
		}
		for a := m.Bridge.Subnet.Masked().Addr().Next(); m.Bridge.Subnet.Contains(a); a = a.Next() {
			if a == m.Bridge.Gateway || used[a] {
				continue
			}
			// Skip the broadcast address.
			if !m.Bridge.Subnet.Contains(a.Next()) {
				break
			}
			leases[a.String()] = podID
			got = a
			return nil
		}
		return fmt.Errorf("no free address in %s", m.Bridge.Subnet)
	})
	return got, err
}

// Live counts the leases of pods that still exist.
func (m *IPAM) Live() (int, error) {
	n := 0
	err := m.update(func(leases map[string]string) error {
		for ip, id := range leases {
			if m.Alive != nil && !m.Alive(id) {
				delete(leases, ip)
				continue
			}
			n++
		}
		return nil
	})
	return n, err
}

// Release frees podID's leases.
func (m *IPAM) Release(podID string) error {
	return m.update(func(leases map[string]string) error {
		for ip, id := range leases {
			if id == podID {
				delete(leases, ip)
			}
		}
		return nil
	})
}

func (m *IPAM) update(fn func(map[string]string) error) error {
	if err := os.MkdirAll(filepath.Dir(m.Path), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(m.Path+".lock", os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("ipam: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("ipam lock: %w", err)
	}
	leases := map[string]string{}
	if b, err := os.ReadFile(m.Path); err == nil {
		if err := json.Unmarshal(b, &leases); err != nil {
			return fmt.Errorf("ipam: corrupt %s: %w", m.Path, err)
		}
	}
	if err := fn(leases); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(leases, "", "  ")
	return atomicfile.WriteFile(m.Path, b, 0o644)
}
