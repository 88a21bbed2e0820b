package shim

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/hearth-cloud/hearth/cradle/host"
	"github.com/hearth-cloud/hearth/cradle/spec"
)

// A pod's NICs are slots: those it booted with, on their networks, then
// its spare ones, on none. A plug (docker network connect while the pod
// runs) puts a free slot's NIC on a network; an unplug frees the slot,
// whichever it is. A microVM cannot gain devices after boot, so this is
// how a running pod changes networks.

// slotMAC is the MAC of NIC slot i, fixed at boot.
func (s *Shim) slotMAC(i int) string {
	n := s.launch.Network
	if i < len(n.Interfaces) {
		return n.Interfaces[i].MAC
	}
	return host.SpareMAC(s.launch.ID, i)
}

// slotOf finds the slot whose NIC is named name now, or -1.
func (s *Shim) slotOf(name string) int {
	for i, ifc := range s.slots {
		if ifc != nil && ifc.Name == name {
			return i
		}
	}
	return -1
}

// initSlots fills the slots at boot.
func (s *Shim) initSlots() {
	n := s.launch.Network
	if n == nil {
		return
	}
	s.slots = make([]*spec.Interface, len(n.Interfaces)+n.Spare)
	for i := range n.Interfaces {
		ifc := n.Interfaces[i]
		s.slots[i] = &ifc
	}
}

// plug puts a free NIC on ifc's bridge, guarded, and has the guest take it
// up as ifc.
func (s *Shim) plug(ifc spec.Interface, dns []string) error {
	s.plugMu.Lock()
	defer s.plugMu.Unlock()
	pfx, err := netip.ParsePrefix(ifc.Address)
	if err != nil {
		return callErr(spec.ErrInvalid, "interface %s: address %q: %v", ifc.Name, ifc.Address, err)
	}
	s.mu.Lock()
	running := s.vm != nil && s.state.Status != spec.StatusExited
	s.mu.Unlock()
	if !running {
		return callErr(spec.ErrConflict, "the pod's VM is not running")
	}
	slot := -1
	for i, have := range s.slots {
		switch {
		case have == nil && slot < 0:
			slot = i
		case have != nil && (have.Name == ifc.Name || have.Bridge == ifc.Bridge):
			return callErr(spec.ErrConflict, "the pod has interface %s on %s already", have.Name, have.Bridge)
		}
	}
	if slot < 0 {
		return callErr(spec.ErrConflict, "the pod has no free NIC: it is on %d networks, all it can be on while it runs (a microVM's NICs are fixed when it starts)", len(s.slots))
	}
	tap := host.TapName(s.launch.ID, slot)
	ifc.MAC = s.slotMAC(slot)
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
	s.slots[slot] = &ifc
	s.mu.Lock()
	s.guarded = append(s.guarded, guarded{tap, ifc.MAC, pfx.Addr()})
	s.state.Interfaces = append(s.state.Interfaces, ifc)
	s.mu.Unlock()
	s.saveState()
	s.log.Info("plugged a NIC", "name", ifc.Name, "bridge", ifc.Bridge, "address", ifc.Address)
	return nil
}

// unplug takes the NIC named name off its network: the guest drops it,
// then its tap leaves the bridge and its slot is free.
func (s *Shim) unplug(name string, dns []string) error {
	s.plugMu.Lock()
	defer s.plugMu.Unlock()
	slot := s.slotOf(name)
	if slot < 0 {
		return callErr(spec.ErrNotFound, "the pod has no interface %s", name)
	}
	ifc := *s.slots[slot]
	if _, err := s.call(&spec.Request{Op: spec.OpUnplug, Interface: &ifc, DNS: dns}); err != nil {
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
	s.slots[slot] = nil
	s.mu.Lock()
	s.guarded = slices.DeleteFunc(s.guarded, func(g guarded) bool { return g.tap == tap })
	s.state.Interfaces = slices.DeleteFunc(s.state.Interfaces, func(i spec.Interface) bool { return i.Name == name })
	s.mu.Unlock()
	s.saveState()
	s.log.Info("unplugged a NIC", "name", name, "bridge", ifc.Bridge)
	return nil
}
