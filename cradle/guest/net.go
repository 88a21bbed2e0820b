package guest

import (
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"

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
	for _, ifc := range n.Interfaces {
		var link netlink.Link
		for _, l := range links {
			if strings.EqualFold(l.Attrs().HardwareAddr.String(), ifc.MAC) {
				link = l
				break
			}
		}
		if link == nil {
			return fmt.Errorf("interface %s: no NIC with MAC %s", ifc.Name, ifc.MAC)
		}
		if link.Attrs().Name != ifc.Name {
			if err := netlink.LinkSetName(link, ifc.Name); err != nil {
				return fmt.Errorf("interface %s: rename: %w", ifc.Name, err)
			}
		}
		addr, err := netlink.ParseAddr(ifc.Address)
		if err != nil {
			return fmt.Errorf("interface %s: address %s: %w", ifc.Name, ifc.Address, err)
		}
		if err := netlink.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("interface %s: add address: %w", ifc.Name, err)
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("interface %s: up: %w", ifc.Name, err)
		}
		if ifc.Gateway != "" {
			gw := net.ParseIP(ifc.Gateway)
			route := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}
			if err := netlink.RouteAdd(route); err != nil {
				return fmt.Errorf("interface %s: default route via %s: %w", ifc.Name, gw, err)
			}
		}
	}
	return nil
}
