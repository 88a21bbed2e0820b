package shim

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

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
	s.macs = make([]string, len(s.slots))
	for i := range s.slots {
		s.macs[i] = s.slotMAC(i)
	}
	for i := range n.Interfaces {
		ifc := n.Interfaces[i]
		s.slots[i] = &ifc
	}
}

// plugTimeout bounds the guest's part of a plug or an unplug.
const plugTimeout = 30 * time.Second

// callGuest makes a call to the guest within plugTimeout.
func (s *Shim) callGuest(req *spec.Request) error {
	st, err := s.openStream()
	if err != nil {
		return err
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(plugTimeout))
	_, err = spec.Call(st, req)
	return err
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
	running := s.vm != nil && s.state.Status != spec.StatusExited && !s.closing
	paused := s.state.Paused
	s.mu.Unlock()
	switch {
	case !running:
		return callErr(spec.ErrConflict, "the pod's VM is not running")
	case paused:
		return callErr(spec.ErrConflict, "the pod is paused: unpause it first")
	}
	slot := -1
	for _, have := range s.slots {
		if have != nil && (have.Name == ifc.Name || have.Bridge == ifc.Bridge) {
			return callErr(spec.ErrConflict, "the pod has interface %s on %s already", have.Name, have.Bridge)
		}
	}
	// Spare NICs first, then those freed by an unplug.
	boot := len(s.launch.Network.Interfaces)
	for i := range s.slots {
		j := (i + boot) % len(s.slots)
		if s.slots[j] == nil {
			slot = j
			break
		}
	}
	if slot < 0 {
		return callErr(spec.ErrConflict, "the pod has no free NIC: it is on %d networks, all it can be on while it runs (a microVM's NICs are fixed when it starts)", len(s.slots))
	}
	tap := host.TapName(s.launch.ID, slot)
	from := s.macs[slot]
	if ifc.MAC == "" {
		ifc.MAC = from
	}
	ns := s.launch.Network.NetNS
	if err := host.Guard(ns, tap, ifc.MAC, pfx.Addr()); err != nil {
		return err
	}
	undo := func() {
		host.DetachTap(ns, tap)
		host.Unguard(ns, tap, ifc.MAC, pfx.Addr())
	}
	if err := host.AttachTap(ns, tap, ifc.Bridge); err != nil {
		undo()
		return err
	}
	iface := ifc
	// The guest gives the NIC the MAC asked for (one per address), so
	// that a reused NIC never shares a MAC with another on the bridge.
	if err := s.callGuest(&spec.Request{Op: spec.OpPlug, Interface: &iface, DNS: dns, MAC: from}); err != nil {
		undo()
		return fmt.Errorf("configure %s in the guest: %w", ifc.Name, err)
	}
	s.slots[slot], s.macs[slot] = &ifc, ifc.MAC
	s.mu.Lock()
	s.guarded = append(s.guarded, guarded{ns, tap, ifc.MAC, pfx.Addr()})
	s.state.Interfaces = append(slices.Clone(s.state.Interfaces), ifc)
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
	if err := s.callGuest(&spec.Request{Op: spec.OpUnplug, Interface: &ifc, DNS: dns}); err != nil {
		return fmt.Errorf("take %s down in the guest: %w", name, err)
	}
	tap := host.TapName(s.launch.ID, slot)
	ns := s.launch.Network.NetNS
	if err := host.DetachTap(ns, tap); err != nil {
		return err
	}
	pfx, _ := netip.ParsePrefix(ifc.Address)
	if err := host.Unguard(ns, tap, ifc.MAC, pfx.Addr()); err != nil {
		s.log.Warn("remove the spoofing guard of a tap", "tap", tap, "err", err)
	}
	s.slots[slot] = nil
	s.mu.Lock()
	// New slices: snapshots share the old ones.
	s.guarded = slices.DeleteFunc(slices.Clone(s.guarded), func(g guarded) bool { return g.tap == tap })
	s.state.Interfaces = slices.DeleteFunc(slices.Clone(s.state.Interfaces), func(i spec.Interface) bool { return i.Name == name })
	s.mu.Unlock()
	s.saveState()
	s.log.Info("unplugged a NIC", "name", name, "bridge", ifc.Bridge)
	return nil
}
