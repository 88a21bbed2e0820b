package guest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/cradle/spec"
)

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("link %s up: %w", name, err)
	}
	return nil
}

// configureNetwork brings up each NIC of the spec: the guest finds it by
// MAC, names it, and gives it its address and default route.
func configureNetwork(n *spec.Network) error {
	if n == nil {
		return nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	// Spare NICs (host.SpareMAC's 52:55:…) step out of the way of the
	// names the others take.
	for _, l := range links {
		if mac := l.Attrs().HardwareAddr.String(); strings.HasPrefix(mac, "52:55:") {
			if err := netlink.LinkSetName(l, spareName(mac)); err != nil {
				return fmt.Errorf("spare NIC %s: rename: %w", mac, err)
			}
		}
	}
	for _, ifc := range n.Interfaces {
		link, err := findMAC(links, ifc.MAC)
		if err != nil {
			return fmt.Errorf("interface %s: %w", ifc.Name, err)
		}
		if err := upNIC(link, ifc); err != nil {
			return err
		}
	}
	return nil
}

// upNIC names a NIC, gives it its address, brings it up and, when it is
// the first with a gateway, routes through it: at boot and on a plug.
func upNIC(link netlink.Link, ifc spec.Interface) error {
	if link.Attrs().Name != ifc.Name {
		if err := netlink.LinkSetName(link, ifc.Name); err != nil {
			return fmt.Errorf("interface %s: rename: %w", ifc.Name, err)
		}
	}
	addr, err := netlink.ParseAddr(ifc.Address)
	if err != nil {
		return fmt.Errorf("interface %s: address %s: %w", ifc.Name, ifc.Address, err)
	}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("interface %s: add address: %w", ifc.Name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("interface %s: up: %w", ifc.Name, err)
	}
	return defaultRoute(link, ifc)
}

// plug takes up a NIC plugged while the pod runs, as configureNetwork
// does at boot, and when dns is given points the containers' resolv.conf
// at it.
func (g *Guest) plug(ifc spec.Interface, from string, dns []string) error {
	if from == "" {
		from = ifc.MAC
	}
	link, err := linkByMAC(from)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return fmt.Errorf("interface %s: down: %w", ifc.Name, err)
	}
	if !strings.EqualFold(from, ifc.MAC) {
		mac, err := net.ParseMAC(ifc.MAC)
		if err != nil {
			return &callError{spec.ErrInvalid, fmt.Sprintf("interface %s: MAC %q: %v", ifc.Name, ifc.MAC, err)}
		}
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("interface %s: MAC %s: %w", ifc.Name, ifc.MAC, err)
		}
	}
	if err := upNIC(link, ifc); err != nil {
		return err
	}
	g.mu.Lock()
	g.nics[ifc.Name] = ifc
	g.mu.Unlock()
	if len(dns) > 0 {
		return g.setDNS(dns)
	}
	return nil
}

// defaultRoute routes through ifc's gateway when the pod has no default
// route yet: the first NIC with a gateway carries it.
func defaultRoute(link netlink.Link, ifc spec.Interface) error {
	if ifc.Gateway == "" {
		return nil
	}
	route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.ParseIP(ifc.Gateway)}
	if err := netlink.RouteAdd(route); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("interface %s: default route via %s: %w", ifc.Name, ifc.Gateway, err)
	}
	return nil
}

// unplug takes a NIC off; when it carried the default route, the next
// NIC with a gateway takes it over.
func (g *Guest) unplug(ifc spec.Interface) error {
	if err := unplugNIC(ifc); err != nil {
		return err
	}
	g.mu.Lock()
	delete(g.nics, ifc.Name)
	var rest []spec.Interface
	for _, n := range g.nics {
		rest = append(rest, n)
	}
	g.mu.Unlock()
	sort.Slice(rest, func(i, j int) bool { return rest[i].Name < rest[j].Name })
	for _, n := range rest {
		if link, err := netlink.LinkByName(n.Name); err == nil && n.Gateway != "" {
			return defaultRoute(link, n)
		}
	}
	return nil
}

// unplugNIC takes a plugged NIC down before its tap leaves the bridge,
// and renames it out of the way of the next plug.
func unplugNIC(ifc spec.Interface) error {
	link, err := netlink.LinkByName(ifc.Name)
	if err != nil {
		return &callError{spec.ErrNotFound, fmt.Sprintf("interface %s: %v", ifc.Name, err)}
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return fmt.Errorf("interface %s: down: %w", ifc.Name, err)
	}
	addrs, _ := netlink.AddrList(link, netlink.FAMILY_ALL)
	for _, a := range addrs {
		netlink.AddrDel(link, &a)
	}
	if err := netlink.LinkSetName(link, spareName(link.Attrs().HardwareAddr.String())); err != nil {
		return fmt.Errorf("interface %s: rename: %w", ifc.Name, err)
	}
	return nil
}

func linkByMAC(mac string) (netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return findMAC(links, mac)
}

// findMAC picks the link with a MAC out of links.
func findMAC(links []netlink.Link, mac string) (netlink.Link, error) {
	for _, l := range links {
		if strings.EqualFold(l.Attrs().HardwareAddr.String(), mac) {
			return l, nil
		}
	}
	return nil, &callError{spec.ErrNotFound, "no NIC with MAC " + mac}
}

// setDNS points the pod's containers at new resolvers: each one's
// resolv.conf is rewritten in place, so the bind mount shows it.
func (g *Guest) setDNS(dns []string) error {
	g.mu.Lock()
	if g.launch != nil && g.launch.Network != nil {
		g.launch.Network.DNS = dns
	}
	var dirs []string
	for _, c := range g.containers {
		dirs = append(dirs, c.dir)
	}
	g.mu.Unlock()
	conf := g.resolvConf()
	for _, d := range dirs {
		p := filepath.Join(d, "etc", "resolv.conf")
		if _, err := os.Stat(p); err != nil {
			continue // not started yet: it gets the new one
		}
		if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
			return fmt.Errorf("resolv.conf: %w", err)
		}
	}
	return nil
}

// spareName is an unplugged NIC's name: "sp" and its MAC's last 4 bytes.
func spareName(mac string) string { return "sp" + strings.ReplaceAll(mac, ":", "")[4:] }
