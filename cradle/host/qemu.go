// Package host is the host side of cradle: it finds the guest kernel and
// initramfs, chooses the accelerator, builds QEMU's command line for a pod,
// and owns the pod's host networking (bridge, tap, NAT, addresses).
//
// The whole QEMU command line is built in one place, VMConfig.Args, from
// plain data, so it can be read and tested without starting anything.
package host

import (
	"fmt"
	"strings"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// VMConfig is everything QEMU needs to start one pod.
type VMConfig struct {
	Name      string
	Accel     string
	CPUs      int
	MemoryMiB int
	Kernel    string
	Initrd    string
	// Cmdline is appended to the fixed kernel command line.
	Cmdline string
	// Control is the unix socket QEMU connects the control port to; empty
	// for none.
	Control string
	// Console receives the guest's serial console (kernel and init logs).
	Console string
	NICs    []NIC
	Disks   []Disk
	Shares  []Share
}

// NIC is a virtio-net device on a tap the caller opened.
type NIC struct {
	// FD is the tap's descriptor number in QEMU's process.
	FD  int
	MAC string
}

// Disk is a virtio-blk device backed by a host file.
type Disk struct {
	Path     string
	Serial   string // at most 20 bytes; the guest finds the disk by it
	ReadOnly bool
}

// Share is a host directory exported over virtio-9p.
type Share struct {
	Path     string
	Tag      string
	ReadOnly bool
	// Mapped keeps the guest's owners and modes in extended attributes
	// instead of applying them to the host's files, so that nothing a
	// pod writes becomes a setuid file or a device on the host.
	Mapped bool
}

// BaseCmdline is the guest kernel command line cradle always uses:
//   - reboot=t with -no-reboot makes a guest reboot end QEMU; microvm has
//     no ACPI to power off with;
//   - panic=-1 reboots at once on a panic, so a broken guest ends too;
//   - quiet keeps the slow emulated UART out of the boot path;
//   - tsc=reliable and no_timer_check skip clocksource checks that cost
//     time under TCG and are meaningless for a fresh VM.
const BaseCmdline = "console=ttyS0 reboot=t panic=-1 quiet tsc=reliable no_timer_check rdinit=/init"

// QEMUBinary is the emulator cradle runs.
const QEMUBinary = "qemu-system-x86_64"

// maxSerial is virtio-blk's serial length.
const maxSerial = 20

// Args returns QEMU's arguments (without the program name).
func (c *VMConfig) Args() ([]string, error) {
	if c.CPUs < 1 || c.MemoryMiB < 1 {
		return nil, fmt.Errorf("vm %s: invalid size %d cpus, %d MiB", c.Name, c.CPUs, c.MemoryMiB)
	}
	// acpi=off: without it QEMU describes virtio-mmio devices only in ACPI
	// tables, which the guest kernel (built without ACPI) cannot read; with
	// it, QEMU puts them on the kernel command line. No option ROMs: the
	// kernel is booted directly as a PVH ELF.
	machine := "microvm,x-option-roms=off,isa-serial=on,acpi=off"
	a := []string{
		"-name", c.Name,
		"-machine", machine,
		"-nodefaults", "-no-user-config", "-no-reboot",
		"-display", "none", "-monitor", "none",
		"-m", fmt.Sprintf("%dM", c.MemoryMiB),
		"-smp", fmt.Sprint(c.CPUs),
	}
	switch c.Accel {
	case AccelKVM:
		a = append(a, "-accel", "kvm", "-cpu", "host")
	case AccelTCG:
		// max gives RDRAND (a ready CRNG at boot) and modern instructions
		// images expect. One translation block cache per vCPU thread.
		a = append(a, "-accel", "tcg,thread=multi", "-cpu", "max")
	default:
		return nil, fmt.Errorf("vm %s: unknown accelerator %q", c.Name, c.Accel)
	}
	cmdline := BaseCmdline
	if c.Cmdline != "" {
		cmdline += " " + c.Cmdline
	}
	a = append(a, "-kernel", c.Kernel, "-initrd", c.Initrd, "-append", cmdline)
	if c.Console != "" {
		a = append(a, "-chardev", "file,id=con,path="+escape(c.Console), "-serial", "chardev:con")
	} else {
		a = append(a, "-serial", "none")
	}
	if c.Control != "" {
		a = append(a,
			"-device", "virtio-serial-device,max_ports=2",
			"-chardev", "socket,id=ctl,path="+escape(c.Control),
			"-device", "virtserialport,chardev=ctl,name=hearth.ctl",
		)
	}
	for i, n := range c.NICs {
		id := fmt.Sprintf("net%d", i)
		a = append(a,
			"-netdev", fmt.Sprintf("tap,id=%s,fd=%d,vhost=off", id, n.FD),
			"-device", fmt.Sprintf("virtio-net-device,netdev=%s,mac=%s", id, n.MAC))
	}
	for i, d := range c.Disks {
		if len(d.Serial) > maxSerial {
			return nil, fmt.Errorf("vm %s: disk serial %q longer than %d", c.Name, d.Serial, maxSerial)
		}
		id := fmt.Sprintf("disk%d", i)
		drive := fmt.Sprintf("id=%s,file=%s,format=raw,if=none,discard=unmap", id, escape(d.Path))
		if d.ReadOnly {
			// Read-only layers are opened by many VMs at once.
			drive += ",readonly=on,file.locking=off"
		}
		a = append(a, "-drive", drive,
			"-device", fmt.Sprintf("virtio-blk-device,drive=%s,serial=%s", id, d.Serial))
	}
	for i, s := range c.Shares {
		id := fmt.Sprintf("fs%d", i)
		model := "passthrough"
		if s.Mapped {
			model = "mapped-xattr"
		}
		fsdev := fmt.Sprintf("local,id=%s,path=%s,security_model=%s", id, escape(s.Path), model)
		if s.ReadOnly {
			fsdev += ",readonly=on"
		}
		a = append(a, "-fsdev", fsdev,
			"-device", fmt.Sprintf("virtio-9p-device,fsdev=%s,mount_tag=%s", id, s.Tag))
	}
	return a, nil
}

// escape doubles commas, QEMU's escape inside option values.
func escape(s string) string { return strings.ReplaceAll(s, ",", ",,") }
