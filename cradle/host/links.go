package host

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// redump runs a netlink dump again when links changed during it (as pods
// of other clusters come and go), a few times at most.
func redump[T any](dump func() ([]T, error)) ([]T, error) {
	var err error
	for i := 0; i < 5; i++ {
		var out []T
		if out, err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return out, err
		}
	}
	return nil, err
}

// linkList lists the host's links.
func linkList() ([]netlink.Link, error) { return redump(netlink.LinkList) }

// addrList lists a link's IPv4 addresses.
func addrList(l netlink.Link) ([]netlink.Addr, error) {
	return redump(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_V4) })
}
