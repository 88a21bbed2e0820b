package host

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Each tenant's networks on a node live in a network namespace of their
// own (TenantNet): its bridges, its pods' taps, its resolvers' sockets,
// its nftables rules. Two tenants may then choose the same subnet, and
// no route, ARP entry or rule of one can touch the other. A veth pair
// (the uplink) joins the namespace to the host, which masquerades what
// leaves and refuses everything else in either direction.

// netnsDir is where named namespaces are pinned, as ip-netns(8) does,
// so that they outlive hearth and its pods keep running across a
// restart.
const netnsDir = "/run/netns"

// TenantNet is one tenant's network namespace on one node.
type TenantNet struct {
	// Name is the namespace's name under /run/netns.
	Name string
	// Uplink is the host's end of the veth pair; the namespace's end is
	// named upstreamName.
	Uplink string
	// Owner is written into the uplink's alias, so that the node that
	// made the namespace finds it again (OwnedNets).
	Owner string
	// IsolateFrom are host interfaces ("hn*" wildcards allowed) that the
	// namespace may not forward to: other namespaces' uplinks, the host's
	// pod bridges.
	IsolateFrom []string
	// Pool holds the uplinks' /30s; zero is DefaultUplinkPool.
	Pool netip.Prefix
}

// upstreamName is the namespace's end of the uplink.
const upstreamName = "up0"

// uplinkPrefix starts every uplink's name, netnsPrefix every
// namespace's.
const (
	uplinkPrefix = "hv"
	netnsPrefix  = "hearth-"
)

// TenantNetFor names the namespace of tenant's networks on the node of
// owner: several nodes may share a host.
func TenantNetFor(owner, tenant string, isolateFrom []string) TenantNet {
	sum := sha256.Sum256([]byte(owner + "\x00" + tenant))
	h := hex.EncodeToString(sum[:])
	return TenantNet{Name: netnsPrefix + h[:12], Uplink: uplinkPrefix + h[:12], Owner: owner,
		IsolateFrom: append([]string{uplinkPrefix + "*"}, isolateFrom...)}
}

// InNS runs fn on a thread in the named network namespace; "" is the
// host's. What fn creates there (sockets, links, processes it starts)
// stays there.
func InNS(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	return onOwnThread(func() error {
		target, err := netns.GetFromName(name)
		if err != nil {
			return fmt.Errorf("network namespace %s: %w", name, err)
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("enter network namespace %s: %w", name, err)
		}
		return fn()
	})
}

// onOwnThread runs fn, which may move its thread to another network
// namespace, on a goroutine of its own locked to its thread, and moves
// the thread back after. A thread that cannot go back ends with that
// goroutine instead of serving others in the wrong namespace.
func onOwnThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace: %w", err)
			return
		}
		defer orig.Close()
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// nsMu serialises the making of namespaces in this process.
var nsMu sync.Mutex

// Exists reports whether the namespace is there.
func (t TenantNet) Exists() bool {
	_, err := os.Stat(filepath.Join(netnsDir, t.Name))
	return err == nil
}

// Ensure makes the namespace with its uplink, its address and its
// rules, or completes one a crash left half-made. It is idempotent.
func (t TenantNet) Ensure() error {
	nsMu.Lock()
	defer nsMu.Unlock()
	// The uplink's host end is brought up last, so an up uplink of an
	// existing namespace is a ready one: the common case costs a stat
	// and one netlink call.
	if t.Exists() {
		if l, err := netlink.LinkByName(t.Uplink); err == nil && l.Attrs().Flags&net.FlagUp != 0 {
			return nil
		}
	}
	if !t.Exists() {
		if err := t.create(); err != nil {
			return fmt.Errorf("network namespace %s: %w", t.Name, err)
		}
	}
	// The host forwards between the uplink and the world.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0); err != nil {
		return fmt.Errorf("enable forwarding: %w", err)
	}
	host, err := t.uplink()
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", t.Name, err)
	}
	if err := nft(t.hostScript(host), "install the uplink rules of "+t.Name); err != nil {
		return err
	}
	link, err := netlink.LinkByName(t.Uplink)
	if err == nil {
		err = netlink.LinkSetUp(link)
	}
	if err != nil {
		return fmt.Errorf("uplink %s: up: %w", t.Uplink, err)
	}
	return nil
}

// create makes the namespace, pinned, with its loopback up and
// forwarding on.
func (t TenantNet) create() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	err := onOwnThread(func() error {
		ns, err := netns.NewNamed(t.Name) // enters it
		if err != nil {
			return err
		}
		ns.Close()
		if lo, err := netlink.LinkByName("lo"); err == nil {
			if err := netlink.LinkSetUp(lo); err != nil {
				return err
			}
		}
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0)
	})
	if err != nil {
		netns.DeleteNamed(t.Name)
	}
	return err
}

// uplink makes the veth pair if it is missing, addresses both ends, and
// routes the namespace's traffic out through it. It returns the host
// end's address.
func (t TenantNet) uplink() (netip.Prefix, error) {
	link, err := netlink.LinkByName(t.Uplink)
	if err == nil && !t.hasUpstream() {
		// Half-made by a crash: made again.
		netlink.LinkDel(link)
		err = errors.New("no upstream end")
	}
	if err != nil {
		peer := "p" + t.Uplink[1:]
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: t.Uplink}, PeerName: peer}
		if err := netlink.LinkAdd(veth); err != nil && !errors.Is(err, unix.EEXIST) {
			return netip.Prefix{}, fmt.Errorf("create uplink %s: %w", t.Uplink, err)
		}
		if link, err = netlink.LinkByName(t.Uplink); err != nil {
			return netip.Prefix{}, err
		}
		p, err := netlink.LinkByName(peer)
		if err != nil {
			return netip.Prefix{}, err
		}
		ns, err := netns.GetFromName(t.Name)
		if err != nil {
			return netip.Prefix{}, err
		}
		err = netlink.LinkSetNsFd(p, int(ns))
		ns.Close()
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("move the uplink into %s: %w", t.Name, err)
		}
		if err := InNS(t.Name, func() error {
			p, err := netlink.LinkByName(peer)
			if err != nil {
				return err
			}
			return netlink.LinkSetName(p, upstreamName)
		}); err != nil {
			return netip.Prefix{}, err
		}
	}
	if err := netlink.LinkSetAlias(link, t.Owner); err != nil {
		return netip.Prefix{}, fmt.Errorf("uplink %s: alias: %w", t.Uplink, err)
	}
	hostEnd, err := t.address(link)
	if err != nil {
		return netip.Prefix{}, err
	}
	nsEnd := netip.PrefixFrom(hostEnd.Addr().Next(), hostEnd.Bits())
	err = InNS(t.Name, func() error {
		up, err := netlink.LinkByName(upstreamName)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(up, &netlink.Addr{IPNet: prefixNet(nsEnd)}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("address: %w", err)
		}
		if err := netlink.LinkSetUp(up); err != nil {
			return err
		}
		route := &netlink.Route{LinkIndex: up.Attrs().Index, Gw: hostEnd.Addr().AsSlice()}
		if err := netlink.RouteReplace(route); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
		return nil
	})
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("uplink of %s: %w", t.Name, err)
	}
	return hostEnd, nil
}

// hasUpstream reports whether the namespace has its end of the uplink.
func (t TenantNet) hasUpstream() bool {
	return InNS(t.Name, func() error {
		_, err := netlink.LinkByName(upstreamName)
		return err
	}) == nil
}

// address gives the uplink its host end's address: under a lock shared
// by every hearth on the host, so that two never take one /30.
func (t TenantNet) address(link netlink.Link) (netip.Prefix, error) {
	f, err := os.OpenFile(uplinkLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return netip.Prefix{}, err
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		return netip.Prefix{}, err
	}
	hostEnd, err := t.transferAddr(link)
	if err != nil {
		return netip.Prefix{}, err
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: prefixNet(hostEnd)}); err != nil && !errors.Is(err, unix.EEXIST) {
		return netip.Prefix{}, fmt.Errorf("uplink %s: address: %w", t.Uplink, err)
	}
	return hostEnd, nil
}

// uplinkLock is the host-wide lock of address choice (not in netnsDir,
// which ip-netns(8) reads as namespaces only).
const uplinkLock = "/run/hearth-uplinks.lock"

// DefaultUplinkPool holds the uplinks' /30s unless a node says otherwise:
// shared address space (RFC 6598), which no tenant network is handed out
// of by default.
var DefaultUplinkPool = netip.MustParsePrefix("100.64.0.0/10")

// pool is where the uplink's /30 comes from.
func (t TenantNet) pool() netip.Prefix { return UplinkPool(t.Pool) }

// UplinkPool is p, or DefaultUplinkPool when p is zero.
func UplinkPool(p netip.Prefix) netip.Prefix {
	if p.IsValid() {
		return p.Masked()
	}
	return DefaultUplinkPool
}

// ParseUplinkPool reads a pool for uplinks: IPv4, room for one /30 at
// least.
func ParseUplinkPool(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p.Bits() > 30 {
		return netip.Prefix{}, fmt.Errorf("invalid uplink pool %q: want an IPv4 CIDR of /30 or wider", s)
	}
	return p.Masked(), nil
}

// transferAddr is the host end's address of the uplink: the one it has,
// or a free /30 of its pool chosen from the namespace's name.
func (t TenantNet) transferAddr(link netlink.Link) (netip.Prefix, error) {
	transferNet := t.pool()
	if addrs, err := addrList(link); err == nil {
		for _, a := range addrs {
			if p, ok := netip.AddrFromSlice(a.IP); ok && transferNet.Contains(p.Unmap()) {
				bits, _ := a.Mask.Size()
				return netip.PrefixFrom(p.Unmap(), bits), nil
			}
		}
	}
	used := map[netip.Addr]bool{}
	links, err := linkList()
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, l := range links {
		addrs, _ := addrList(l)
		for _, a := range addrs {
			if p, ok := netip.AddrFromSlice(a.IP); ok && transferNet.Contains(p.Unmap()) {
				used[netip.PrefixFrom(p.Unmap(), 30).Masked().Addr()] = true // its /30
			}
		}
	}
	sum := sha256.Sum256([]byte(t.Name))
	blocks := uint32(1) << (32 - transferNet.Bits() - 2)
	base := binary.BigEndian.Uint32(transferNet.Addr().AsSlice())
	for i := uint32(0); i < blocks; i++ {
		n := (binary.BigEndian.Uint32(sum[:4]) + i) % blocks
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+n*4)
		net0 := netip.AddrFrom4(b)
		if !used[net0] {
			return netip.PrefixFrom(net0.Next(), 30), nil
		}
	}
	return netip.Prefix{}, errors.New("no free uplink address")
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// hostTable is the uplink's nftables table on the host.
func (t TenantNet) hostTable() string { return "hearth_" + t.Uplink }

// hostScript masquerades what leaves the namespace for the world, and
// drops all else that crosses the uplink: to the host itself (its
// management ports), to other namespaces and pod bridges, and anything
// into the namespace that it did not ask for.
func (t TenantNet) hostScript(hostEnd netip.Prefix) string {
	var b strings.Builder
	nsEnd := hostEnd.Addr().Next()
	fmt.Fprintf(&b, "table ip %[1]s\ndelete table ip %[1]s\ntable ip %[1]s {\n", t.hostTable())
	fmt.Fprintf(&b, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tip saddr %s oifname != \"%s\" masquerade\n\t}\n", nsEnd, t.Uplink)
	fmt.Fprintf(&b, "\tchain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n")
	for _, other := range t.IsolateFrom {
		fmt.Fprintf(&b, "\t\tiifname \"%[1]s\" oifname \"%[2]s\" drop\n", t.Uplink, other)
	}
	fmt.Fprintf(&b, "\t\tiifname \"%[1]s\" ip saddr != %[2]s drop\n", t.Uplink, nsEnd)
	fmt.Fprintf(&b, "\t\toifname \"%[1]s\" ct state established,related accept\n\t\toifname \"%[1]s\" drop\n\t}\n", t.Uplink)
	fmt.Fprintf(&b, "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n")
	fmt.Fprintf(&b, "\t\tiifname \"%[1]s\" ct state established,related accept\n\t\tiifname \"%[1]s\" drop\n\t}\n}\n", t.Uplink)
	return b.String()
}

// Remove deletes the namespace (with every bridge and rule in it), its
// uplink and the uplink's rules; what is not there is no error.
func (t TenantNet) Remove() error {
	nsMu.Lock()
	defer nsMu.Unlock()
	script := fmt.Sprintf("table ip %[1]s\ndelete table ip %[1]s\n", t.hostTable())
	if err := nft(script, "remove the uplink rules of "+t.Name); err != nil {
		return err
	}
	// The namespace first: while its uplink is there, OwnedNets finds
	// it again should this fail.
	if t.Exists() {
		if err := netns.DeleteNamed(t.Name); err != nil {
			return fmt.Errorf("remove network namespace %s: %w", t.Name, err)
		}
	}
	// The namespace's end going takes the pair, but not at once.
	if link, err := netlink.LinkByName(t.Uplink); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			if _, gone := netlink.LinkByName(t.Uplink); gone != nil {
				return nil
			}
			return fmt.Errorf("remove uplink %s: %w", t.Uplink, err)
		}
	}
	return nil
}

// Bridges lists the bridges in the namespace.
func (t TenantNet) Bridges() ([]string, error) {
	var out []string
	err := InNS(t.Name, func() error {
		links, err := linkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if l.Type() == "bridge" {
				out = append(out, l.Attrs().Name)
			}
		}
		return nil
	})
	return out, err
}

// OwnedNets lists the namespaces whose uplink's alias is owner, by the
// uplinks' names (TenantNet.Uplink); with owner "" every one, with its
// owner.
func OwnedNets(owner string) (map[string]string, error) {
	links, err := linkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := map[string]string{}
	for _, l := range links {
		a := l.Attrs()
		if l.Type() == "veth" && strings.HasPrefix(a.Name, uplinkPrefix) && a.Alias != "" && (owner == "" || a.Alias == owner) {
			out[a.Name] = a.Alias
		}
	}
	return out, nil
}

// NetOfUplink is the namespace an uplink serves.
func NetOfUplink(uplink, owner string) TenantNet {
	return TenantNet{Name: netnsPrefix + strings.TrimPrefix(uplink, uplinkPrefix), Uplink: uplink, Owner: owner}
}

// NetNamed is the namespace of that name.
func NetNamed(name, owner string) TenantNet {
	return TenantNet{Name: name, Uplink: uplinkPrefix + strings.TrimPrefix(name, netnsPrefix), Owner: owner}
}
