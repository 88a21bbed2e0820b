// Package spec holds cradle's wire contracts: the launch spec that describes
// one pod (one microVM), and the control protocol spoken between the host
// and the guest init, and between clients and the per-pod supervisor.
//
// Both sides of the VM boundary import this package, so it depends on the
// standard library only.
package spec

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strings"
)

// Version is the launch spec version this build writes and accepts.
const Version = 1

// Launch describes one pod: everything the supervisor and the guest init
// need to start it. It is serialised as JSON (spec.json in the pod's
// directory); the control plane produces it, and `hearth cradle run` builds
// one from its flags.
type Launch struct {
	Version int `json:"version"`
	// ID is the pod's unique ID: 64 lower-case hex digits.
	ID string `json:"id"`
	// Name is a unique, human-chosen name ([a-zA-Z0-9][a-zA-Z0-9_.-]*).
	Name string `json:"name,omitempty"`
	// Hostname of the VM; containers share it unless they set their own.
	Hostname string `json:"hostname,omitempty"`

	Resources Resources `json:"resources"`
	// Network is nil for a pod with loopback only.
	Network *Network `json:"network,omitempty"`
	// Layers are read-only filesystem images (EROFS) attached as disks.
	// Containers refer to them by index; a layer used by several containers
	// is attached once.
	Layers []Layer `json:"layers,omitempty"`
	// Volumes are storage the pod's containers mount.
	Volumes []Volume `json:"volumes,omitempty"`
	// Containers run in the VM, each with its own rootfs and mount, PID,
	// UTS and IPC namespaces. The pod ends when all of them have exited.
	Containers []Container `json:"containers"`

	// Labels are free-form metadata for the caller (image reference, owner).
	Labels map[string]string `json:"labels,omitempty"`
	// LogDir, on the host, is where the supervisor appends each
	// container's output (NAME.log), so that it outlives this VM: a
	// control plane keeps one log across a pod's restarts. Empty keeps
	// the logs in the pod's own directory.
	LogDir string `json:"logDir,omitempty"`
}

// Resources size the VM.
type Resources struct {
	// CPUs is the number of virtual CPUs (at least 1).
	CPUs int `json:"cpus"`
	// MemoryMiB is the guest RAM in MiB (at least MinMemoryMiB).
	MemoryMiB int `json:"memoryMiB"`
}

// MinMemoryMiB is the smallest VM that boots the guest kernel and init with
// room for a container.
const MinMemoryMiB = 64

// MaxCPUs matches the guest kernel's CONFIG_NR_CPUS.
const MaxCPUs = 64

// Network configures the pod's NICs. The host side (bridge, tap) belongs to
// the supervisor; the guest only sees the addresses.
type Network struct {
	Interfaces []Interface `json:"interfaces"`
	// DNS lists resolver addresses written to the containers' resolv.conf.
	DNS []string `json:"dns,omitempty"`
	// Search lists DNS search domains.
	Search []string `json:"search,omitempty"`
	// Spare NICs boot unplugged, so that the pod can join a network while
	// it runs (OpPlug): a microVM's devices are fixed at boot.
	Spare int `json:"spare,omitempty"`
	// NetNS names the host network namespace (under /run/netns) that
	// holds the bridges, and so the taps, of all the pod's NICs: its
	// tenant's on this node. "" is the host's own.
	NetNS string `json:"netns,omitempty"`
}

// Interface is one virtio-net NIC on a host tap device.
type Interface struct {
	// Name inside the guest, e.g. "eth0".
	Name string `json:"name"`
	// MAC address, e.g. "52:54:00:12:34:56".
	MAC string `json:"mac"`
	// Address with prefix, e.g. "10.88.0.5/16".
	Address string `json:"address"`
	// Gateway is the network's gateway, empty for a network with no way
	// out. The first NIC with one carries the default route; when it
	// goes (OpUnplug), the next takes it over.
	Gateway string `json:"gateway,omitempty"`
	// Bridge is the host bridge the tap joins.
	Bridge string `json:"bridge"`
}

// Layer is one read-only filesystem image on the host.
type Layer struct {
	// Digest identifies the content (the layer's uncompressed diff ID).
	Digest string `json:"digest"`
	// Path is the host file holding the filesystem image.
	Path string `json:"path"`
}

// VolumeType says how a volume reaches the VM.
type VolumeType string

const (
	// VolumeDir shares a host directory into the VM (virtio-9p).
	VolumeDir VolumeType = "dir"
	// VolumeBlock attaches a host file as a virtio-blk disk holding ext4,
	// formatted on first use.
	VolumeBlock VolumeType = "block"
	// VolumeTmpfs is memory inside the VM; it counts against the pod's RAM.
	VolumeTmpfs VolumeType = "tmpfs"
)

// Volume is storage that containers of the pod mount.
type Volume struct {
	// Name is unique within the pod ([a-z0-9-], at most 16 characters, as
	// it becomes a virtio device tag).
	Name string     `json:"name"`
	Type VolumeType `json:"type"`
	// Source is the host path (directory or disk file). Empty for tmpfs.
	Source string `json:"source,omitempty"`
	// ReadOnly attaches the volume read-only to the whole VM.
	ReadOnly bool `json:"readOnly,omitempty"`
	// SizeBytes bounds a block volume created on first use, or a tmpfs.
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// Mapped keeps a directory volume's owners and modes in extended
	// attributes on the host rather than applying them there: for
	// volumes pods own, so that nothing they write is a setuid file or a
	// device on the host. Binds of the admin's directories are not.
	Mapped bool `json:"mapped,omitempty"`
}

// Container is one process tree in the pod.
type Container struct {
	// Name is unique within the pod.
	Name string `json:"name"`
	// Layers index Launch.Layers, bottom first. The rootfs is an overlay of
	// them under a writable layer.
	Layers []int `json:"layers"`
	// Hostname overrides the pod's hostname in this container's UTS
	// namespace.
	Hostname string  `json:"hostname,omitempty"`
	Process  Process `json:"process"`
	Mounts   []Mount `json:"mounts,omitempty"`
	// ReadonlyRootfs makes the container's root filesystem read-only.
	ReadonlyRootfs bool `json:"readonlyRootfs,omitempty"`
	// Init runs the command under a minimal init, /sbin/docker-init, as
	// Docker's --init does: it forwards signals and reaps zombies.
	Init bool `json:"init,omitempty"`
	// StopSignal is sent to stop the container (default SIGTERM).
	StopSignal int `json:"stopSignal,omitempty"`
	// StopTimeout is how many seconds a stop waits before SIGKILL
	// (default 10).
	StopTimeout *int `json:"stopTimeout,omitempty"`
}

// Process is what runs: the container's PID 1, or an exec.
type Process struct {
	// Args[0] is looked up in PATH (from Env) inside the container when it
	// has no slash.
	Args []string `json:"args"`
	Env  []string `json:"env,omitempty"`
	// Cwd is an absolute path; created when missing, as Docker does.
	Cwd string `json:"cwd,omitempty"`
	// User is "name", "uid", "name:group" or "uid:gid", resolved against
	// the container's /etc/passwd and /etc/group. Empty means root.
	User string `json:"user,omitempty"`
	// Terminal allocates a pseudo-terminal for stdio.
	Terminal bool `json:"terminal,omitempty"`
	// OpenStdin keeps stdin open for an attached client; otherwise stdin is
	// /dev/null.
	OpenStdin bool `json:"openStdin,omitempty"`
}

// Mount places a volume inside a container.
type Mount struct {
	// Volume names an entry of Launch.Volumes.
	Volume   string `json:"volume"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// Fill copies what the image has at Target into the volume when the
	// volume is empty, owners, modes and times kept (Docker's
	// behaviour for a new named volume).
	Fill bool `json:"fill,omitempty"`
	// SubPath mounts only this relative path of the volume, a file or a
	// directory (a bind mount of a single host file shares its
	// directory).
	SubPath string `json:"subPath,omitempty"`
}

var (
	idRE        = regexp.MustCompile(`^[0-9a-f]{64}$`)
	nameRE      = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)
	volumeRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,15}$`)
	macRE       = regexp.MustCompile(`^([0-9a-f]{2}:){5}[0-9a-f]{2}$`)
	labelRE     = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$`)
	ifaceNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,14}$`)
)

// validHostname checks RFC 1123: dot-separated labels of letters, digits
// and inner hyphens, 64 bytes at most (the kernel's limit).
func validHostname(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if !labelRE.MatchString(label) {
			return false
		}
	}
	return true
}

// MaxInterfaces bounds a pod's NICs (and keeps tap names within IFNAMSIZ).
const MaxInterfaces = 16

// ValidName reports whether s is acceptable as a pod or container name.
func ValidName(s string) bool { return len(s) <= 128 && nameRE.MatchString(s) }

// Validate checks everything that can be checked without touching the host.
// Its errors name the offending field.
func (l *Launch) Validate() error {
	if l.Version != Version {
		return fmt.Errorf("launch spec version %d not supported (want %d)", l.Version, Version)
	}
	if !idRE.MatchString(l.ID) {
		return fmt.Errorf("pod id %q: want 64 lower-case hex digits", l.ID)
	}
	if l.Name != "" && !ValidName(l.Name) {
		return fmt.Errorf("invalid pod name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", l.Name)
	}
	if l.Hostname != "" && !validHostname(l.Hostname) {
		return fmt.Errorf("invalid hostname %q", l.Hostname)
	}
	if l.Resources.CPUs < 1 || l.Resources.CPUs > MaxCPUs {
		return fmt.Errorf("invalid cpu count %d: want 1 to %d", l.Resources.CPUs, MaxCPUs)
	}
	if l.Resources.MemoryMiB < MinMemoryMiB {
		return fmt.Errorf("invalid memory %d MiB: want at least %d MiB", l.Resources.MemoryMiB, MinMemoryMiB)
	}
	if err := l.Network.validate(); err != nil {
		return err
	}
	for i, ly := range l.Layers {
		if ly.Path == "" || !path.IsAbs(ly.Path) {
			return fmt.Errorf("layer %d: path %q is not absolute", i, ly.Path)
		}
	}
	vols := map[string]*Volume{}
	for i := range l.Volumes {
		v := &l.Volumes[i]
		if !volumeRE.MatchString(v.Name) {
			return fmt.Errorf("volume name %q: want [a-z0-9-], at most 16 characters", v.Name)
		}
		if vols[v.Name] != nil {
			return fmt.Errorf("volume %q defined twice", v.Name)
		}
		vols[v.Name] = v
		switch v.Type {
		case VolumeDir, VolumeBlock:
			if !path.IsAbs(v.Source) {
				return fmt.Errorf("volume %q: source %q is not an absolute path", v.Name, v.Source)
			}
		case VolumeTmpfs:
			if v.Source != "" {
				return fmt.Errorf("volume %q: tmpfs takes no source", v.Name)
			}
		default:
			return fmt.Errorf("volume %q: unknown type %q", v.Name, v.Type)
		}
		if v.SizeBytes < 0 {
			return fmt.Errorf("volume %q: negative size", v.Name)
		}
	}
	if len(l.Containers) == 0 {
		return fmt.Errorf("pod has no containers")
	}
	names := map[string]bool{}
	for i := range l.Containers {
		c := &l.Containers[i]
		if !ValidName(c.Name) {
			return fmt.Errorf("container %d: invalid name %q", i, c.Name)
		}
		if names[c.Name] {
			return fmt.Errorf("container name %q used twice", c.Name)
		}
		names[c.Name] = true
		for _, li := range c.Layers {
			if li < 0 || li >= len(l.Layers) {
				return fmt.Errorf("container %q: layer index %d out of range", c.Name, li)
			}
		}
		if c.StopSignal < 0 || c.StopSignal > 64 {
			return fmt.Errorf("container %q: invalid stop signal %d", c.Name, c.StopSignal)
		}
		if c.StopTimeout != nil && *c.StopTimeout < 0 {
			return fmt.Errorf("container %q: negative stop timeout", c.Name)
		}
		if c.Hostname != "" && !validHostname(c.Hostname) {
			return fmt.Errorf("container %q: invalid hostname %q", c.Name, c.Hostname)
		}
		if err := c.Process.Validate(); err != nil {
			return fmt.Errorf("container %q: %w", c.Name, err)
		}
		targets := map[string]bool{}
		for _, m := range c.Mounts {
			if vols[m.Volume] == nil {
				return fmt.Errorf("container %q: mount of unknown volume %q", c.Name, m.Volume)
			}
			if !path.IsAbs(m.Target) {
				return fmt.Errorf("container %q: mount target %q is not an absolute path", c.Name, m.Target)
			}
			t := path.Clean(m.Target)
			if t == "/" {
				return fmt.Errorf("container %q: cannot mount a volume over /", c.Name)
			}
			if targets[t] {
				return fmt.Errorf("container %q: duplicate mount point %s", c.Name, t)
			}
			targets[t] = true
			if sp := m.SubPath; sp != "" && (path.IsAbs(sp) || path.Clean(sp) != sp || sp == ".." || strings.HasPrefix(sp, "../")) {
				return fmt.Errorf("container %q: mount sub-path %q is not a clean relative path inside its volume", c.Name, sp)
			}
		}
	}
	return nil
}

// Validate checks a process description.
func (p *Process) Validate() error {
	if len(p.Args) == 0 || p.Args[0] == "" {
		return fmt.Errorf("no command given")
	}
	// NUL ends a string for the kernel; let none through to where a
	// program would cut at it.
	for _, a := range p.Args {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("invalid argument %q: contains a NUL byte", a)
		}
	}
	if strings.ContainsRune(p.Cwd, 0) || strings.ContainsRune(p.User, 0) {
		return fmt.Errorf("working directory or user contains a NUL byte")
	}
	if p.Cwd != "" && !path.IsAbs(p.Cwd) {
		return fmt.Errorf("working directory %q is not an absolute path", p.Cwd)
	}
	for _, e := range p.Env {
		if k, _, _ := strings.Cut(e, "="); k == "" || strings.ContainsRune(e, 0) {
			return fmt.Errorf("invalid environment variable %q", e)
		}
	}
	return nil
}

func (n *Network) validate() error {
	if n == nil {
		return nil
	}
	if n.Spare < 0 || len(n.Interfaces)+n.Spare > MaxInterfaces {
		return fmt.Errorf("%d interfaces and %d spare: at most %d in all", len(n.Interfaces), n.Spare, MaxInterfaces)
	}
	seen := map[string]bool{}
	for i, ifc := range n.Interfaces {
		if !ifaceNameRE.MatchString(ifc.Name) || seen[ifc.Name] {
			return fmt.Errorf("interface %d: invalid or duplicate name %q", i, ifc.Name)
		}
		seen[ifc.Name] = true
		if !macRE.MatchString(ifc.MAC) {
			return fmt.Errorf("interface %s: invalid MAC %q", ifc.Name, ifc.MAC)
		}
		if _, err := netip.ParsePrefix(ifc.Address); err != nil {
			return fmt.Errorf("interface %s: invalid address %q", ifc.Name, ifc.Address)
		}
		if ifc.Gateway != "" {
			if _, err := netip.ParseAddr(ifc.Gateway); err != nil {
				return fmt.Errorf("interface %s: invalid gateway %q", ifc.Name, ifc.Gateway)
			}
		}
		if ifc.Bridge == "" {
			return fmt.Errorf("interface %s: no bridge", ifc.Name)
		}
	}
	for _, d := range n.DNS {
		if _, err := netip.ParseAddr(d); err != nil {
			return fmt.Errorf("invalid DNS server %q", d)
		}
	}
	return nil
}
