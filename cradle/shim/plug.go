package shim

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/hearth-cloud/hearth/cradle/host"
	"github.com/hearth-cloud/hearth/cradle/spec"
)

// plug puts a spare NIC on ifc's bridge, guarded, and has the guest take
// it up as ifc (docker network connect while the pod runs).
func (s *Shim) plug(ifc spec.Interface, dns []string) error {
	s.plugMu.Lock()
	defer s.plugMu.Unlock()
	l := s.launch
	if l.Network == nil || l.Network.Spare == 0 {
		return callErr(spec.ErrConflict, "the pod has no spare NIC: it joins networks only when it starts")
	}
	pfx, err := netip.ParsePrefix(ifc.Address)
	if err != nil {
		return callErr(spec.ErrInvalid, "interface %s: address %q: %v", ifc.Name, ifc.Address, err)
	}
	s.mu.Lock()
	running := s.vm != nil && s.state.Status != spec.StatusExited
	for _, have := range s.state.Interfaces {
		if have.Name == ifc.Name || have.Bridge == ifc.Bridge {
			s.mu.Unlock()
			return callErr(spec.ErrConflict, "the pod has interface %s on %s already", have.Name, have.Bridge)
		}
	}
	s.mu.Unlock()
	if !running {
		return callErr(spec.ErrConflict, "the pod's VM is not running")
	}
	slot := -1
	for i := len(l.Network.Interfaces); i < len(l.Network.Interfaces)+l.Network.Spare; i++ {
		if _, used := s.plugged[i]; !used {
			slot = i
			break
		}
	}
	if slot < 0 {
		return callErr(spec.ErrConflict, "all %d spare NICs are in use: the pod joins at most %d networks while it runs", l.Network.Spare, l.Network.Spare)
	}
	tap := host.TapName(l.ID, slot)
	ifc.MAC = host.SpareMAC(l.ID, slot)
	if err := host.Guard(tap, ifc.MAC, pfx.Addr()); err != nil {
		return err
	}
	undo := func() {
		host.DetachTap(tap)
		host.Unguard(tap, ifc.MAC, pfx.Addr())
	}
	if err := host.AttachTap(tap, ifc.Bridge); err != nil {
		undo()
		return err
	}
	iface := ifc
	if _, err := s.call(&spec.Request{Op: spec.OpPlug, Interface: &iface, DNS: dns}); err != nil {
		undo()
		return fmt.Errorf("configure %s in the guest: %w", ifc.Name, err)
	}
	if s.plugged == nil {
		s.plugged = map[int]spec.Interface{}
	}
	s.plugged[slot] = ifc
	s.mu.Lock()
	s.guarded = append(s.guarded, guarded{tap, ifc.MAC, pfx.Addr()})
	s.state.Interfaces = append(s.state.Interfaces, ifc)
	s.mu.Unlock()
	s.saveState()
	s.log.Info("plugged a NIC", "name", ifc.Name, "bridge", ifc.Bridge, "address", ifc.Address)
	return nil
}

// unplug takes a plugged NIC off its network: the guest drops it, then
// its tap leaves the bridge. NICs the pod booted with stay.
func (s *Shim) unplug(name string) error {
	s.plugMu.Lock()
	defer s.plugMu.Unlock()
	slot := -1
	var ifc spec.Interface
	for i, p := range s.plugged {
		if p.Name == name {
			slot, ifc = i, p
		}
	}
	if slot < 0 {
		return callErr(spec.ErrNotFound, "no plugged interface %s (interfaces the pod started with stay until it stops)", name)
	}
	if _, err := s.call(&spec.Request{Op: spec.OpUnplug, Interface: &ifc}); err != nil {
		return fmt.Errorf("take %s down in the guest: %w", name, err)
	}
	tap := host.TapName(s.launch.ID, slot)
	if err := host.DetachTap(tap); err != nil {
		return err
	}
	pfx, _ := netip.ParsePrefix(ifc.Address)
	if err := host.Unguard(tap, ifc.MAC, pfx.Addr()); err != nil {
		s.log.Warn("remove the spoofing guard of a tap", "tap", tap, "err", err)
	}
	delete(s.plugged, slot)
	s.mu.Lock()
	s.guarded = slices.DeleteFunc(s.guarded, func(g guarded) bool { return g.tap == tap })
	s.state.Interfaces = slices.DeleteFunc(s.state.Interfaces, func(i spec.Interface) bool { return i.Name == name })
	s.mu.Unlock()
	s.saveState()
	s.log.Info("unplugged a NIC", "name", name, "bridge", ifc.Bridge)
	return nil
}
