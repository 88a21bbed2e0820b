package host

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// linkList lists the host's links. A dump that links changed during (as
// pods of other clusters come and go) is asked again.
func linkList() ([]netlink.Link, error) {
	var err error
	for i := 0; i < 5; i++ {
		var links []netlink.Link
		if links, err = netlink.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return links, err
		}
	}
	return nil, err
}

// addrList lists a link's IPv4 addresses, asking again after an
// interrupted dump.
func addrList(l netlink.Link) ([]netlink.Addr, error) {
	var err error
	for i := 0; i < 5; i++ {
		var addrs []netlink.Addr
		if addrs, err = netlink.AddrList(l, netlink.FAMILY_V4); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return addrs, err
		}
	}
	return nil, err
}
