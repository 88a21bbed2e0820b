// Package model is macro's object model: the versioned Go types that
// macro keeps in etcd and every frontend (Docker, Compose, Kubernetes, the
// admin API) reads and writes. One model serves them all, so a container
// started with `docker run` is a pod any other frontend of the same tenant
// sees.
//
// Objects are JSON in etcd. Meta.Revision is etcd's modification revision
// of the object, filled in on reads and used for optimistic concurrency on
// writes; it is never stored.
package model

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"
)

// APIVersion is the version of the stored form of every object.
const APIVersion = "hearth/v1"

// Kinds.
const (
	KindTenant  = "tenants"
	KindNode    = "nodes"
	KindPod     = "pods"
	KindService = "services"
	KindNetwork = "networks"
	KindVolume  = "volumes"
	KindSecret  = "secrets"
	KindConfig  = "configs"
)

// Meta is what every object has.
type Meta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Tenant owns the object; empty for cluster-scoped kinds (nodes,
	// tenants).
	Tenant string `json:"tenant,omitempty"`
	Name   string `json:"name"`
	// Alias is a second name, unique among the tenant's objects of the
	// kind, that may change (a Docker container name). The store keeps
	// it unique; only Store.Rename changes it.
	Alias  string            `json:"alias,omitempty"`
	UID    string            `json:"uid"`
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations hold what a frontend keeps about an object for itself
	// (the Docker API's container config), keyed by the frontend's
	// prefix; macro does not read them.
	Annotations map[string]string `json:"annotations,omitempty"`
	CreatedAt   time.Time         `json:"createdAt"`
	// Generation counts changes of the spec; status writes keep it.
	Generation int64 `json:"generation"`
	// Revision is etcd's modification revision (not stored).
	Revision int64 `json:"-"`
}

// Object is any stored kind.
type Object interface {
	GetMeta() *Meta
}

func (m *Meta) GetMeta() *Meta { return m }

// ClusterScoped reports whether objects of a kind belong to no tenant.
func ClusterScoped(kind string) bool { return kind == KindNode || kind == KindTenant }

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)

// ValidName reports whether s names an object: lower-case DNS-subdomain
// style, as Kubernetes requires, which every frontend's names map into.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Validate checks the fields every object needs.
func (m *Meta) Validate(kind string) error {
	if m.Kind != kind {
		return fmt.Errorf("object of kind %q where %q was expected", m.Kind, kind)
	}
	if !ValidName(m.Name) {
		return fmt.Errorf("invalid %s name %q: lower-case letters, digits, '-' and '.', starting and ending alphanumeric", kind, m.Name)
	}
	if ClusterScoped(kind) != (m.Tenant == "") {
		if m.Tenant == "" {
			return fmt.Errorf("%s %s has no tenant", kind, m.Name)
		}
		return fmt.Errorf("%s are cluster-scoped: %s has a tenant", kind, m.Name)
	}
	if m.Tenant != "" && !ValidName(m.Tenant) {
		return fmt.Errorf("invalid tenant %q", m.Tenant)
	}
	return nil
}

// Tenant is a customer.
type Tenant struct {
	Meta
	Spec TenantSpec `json:"spec"`
}

// TenantSpec holds a tenant's quotas (zero is no limit) and its
// credentials.
type TenantSpec struct {
	CPUs        int   `json:"cpus,omitempty"`
	MemoryMiB   int   `json:"memoryMiB,omitempty"`
	Pods        int   `json:"pods,omitempty"`
	VolumeBytes int64 `json:"volumeBytes,omitempty"`
	// CertSerial is the serial number (hex) of the one client
	// certificate that acts for the tenant; a rotation replaces it, and
	// every older certificate stops working.
	CertSerial string `json:"certSerial,omitempty"`
	// Removing is set while everything the tenant owns is being removed;
	// its credentials no longer work.
	Removing bool `json:"removing,omitempty"`
}

// Node roles.
const (
	RoleControl = "control"
	RoleWorker  = "worker"
)

// Node is a machine that runs pods.
type Node struct {
	Meta
	Spec   NodeSpec   `json:"spec"`
	Status NodeStatus `json:"status"`
}

// NodeSpec is what a node offers.
type NodeSpec struct {
	Role string `json:"role"`
	// Address is where the node's API listens (host:port); empty for a
	// single node.
	Address  string    `json:"address,omitempty"`
	Capacity Resources `json:"capacity"`
	// Unschedulable keeps new pods off (drain).
	Unschedulable bool `json:"unschedulable,omitempty"`
}

// Node states.
const (
	NodeReady    = "Ready"
	NodeNotReady = "NotReady"
	NodeDown     = "Down"
)

// NodeStatus is the node's observed state.
type NodeStatus struct {
	State     string    `json:"state"`
	Accel     string    `json:"accel,omitempty"`
	Heartbeat time.Time `json:"heartbeat,omitempty"`
}

// Resources are CPU and memory.
type Resources struct {
	CPUs      int `json:"cpus"`
	MemoryMiB int `json:"memoryMiB"`
}

// Pod is one microVM with its containers.
type Pod struct {
	Meta
	Spec   PodSpec   `json:"spec"`
	Status PodStatus `json:"status"`
}

// Desired states of a pod.
const (
	DesiredRunning = "running"
	DesiredStopped = "stopped"
)

// PodSpec is what a pod should be.
type PodSpec struct {
	Containers []Container `json:"containers"`
	Resources  Resources   `json:"resources"`
	Restart    Restart     `json:"restart"`
	Volumes    []Volume    `json:"volumes,omitempty"`
	// Attachments put the pod on user-defined networks, one NIC each in
	// order; without any it is on the node's default network.
	Attachments []Attachment `json:"attachments,omitempty"`
	// Ports publishes pod ports on the pod's node.
	Ports    []Port `json:"ports,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// NodeSelector constrains placement to nodes whose labels match.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// NodeName is the binding: set by the scheduler (or given, for a pod
	// pinned to a node, like one with a local volume).
	NodeName string `json:"nodeName,omitempty"`
	// Desired is running or stopped.
	Desired string `json:"desired"`
	// StopTimeout is the seconds a stop waits before SIGKILL: nil is the
	// default of 10, 0 kills at once.
	StopTimeout *int `json:"stopTimeout,omitempty"`
	// AutoRemove deletes the pod once it has exited for good (Docker's
	// --rm).
	AutoRemove bool `json:"autoRemove,omitempty"`
	// HoldStart asks the node agent to boot the pod's VM but leave the
	// start of its containers to the frontend that set it, which attaches
	// to their output first (a `docker run` that is not detached). A
	// frontend that never starts them is stood in for after a while;
	// restarts by policy are never held.
	HoldStart bool `json:"holdStart,omitempty"`
	// ExitOnNext makes the next exit final, whatever the restart policy
	// (docker kill with the stop signal); a start clears it.
	ExitOnNext bool `json:"exitOnNext,omitempty"`
}

// Attachment is a pod's place on a network.
type Attachment struct {
	// Network is the network's name (a Docker network's ID).
	Network string `json:"network"`
	// IP is the pod's address on it, assigned by network/ipam when the
	// pod is created.
	IP string `json:"ip,omitempty"`
	// Aliases are further names the pod answers to on the network.
	Aliases []string `json:"aliases,omitempty"`
}

// Port publishes a port of the pod on its node (docker run -p).
type Port struct {
	// HostIP is the node address to listen on; empty is all of them.
	HostIP string `json:"hostIP,omitempty"`
	// HostPort 0 asks the node for a free port (docker run -P); the one
	// it took is in PodStatus.Ports.
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"` // tcp or udp
}

// String is Docker's form: 0.0.0.0:8080->80/tcp.
func (p Port) String() string {
	ip := p.HostIP
	if ip == "" {
		ip = "0.0.0.0"
	}
	return fmt.Sprintf("%s->%d/%s", net.JoinHostPort(ip, strconv.Itoa(p.HostPort)), p.ContainerPort, p.Protocol)
}

// Conflicts reports whether two published ports cannot both be bound on
// one node.
func (p Port) Conflicts(q Port) bool {
	if p.HostPort == 0 || q.HostPort == 0 || p.HostPort != q.HostPort || p.Protocol != q.Protocol {
		return false
	}
	return p.HostIP == "" || q.HostIP == "" || p.HostIP == q.HostIP
}

// DefaultStopTimeout is the grace a stop gives a pod's containers.
const DefaultStopTimeout = 10 * time.Second

// StopGrace is how long a stop of the pod waits before SIGKILL.
func (s *PodSpec) StopGrace() time.Duration {
	if s.StopTimeout == nil {
		return DefaultStopTimeout
	}
	return time.Duration(*s.StopTimeout) * time.Second
}

// Container is one process tree of a pod.
type Container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
	// Command replaces the image's entrypoint, and then the image's cmd
	// too; Args replace its cmd. nil keeps the image's; an empty Command
	// clears it (so it is stored even when empty).
	Command    []string `json:"command"`
	Args       []string `json:"args,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
	TTY        bool     `json:"tty,omitempty"`
	Stdin      bool     `json:"stdin,omitempty"`
	Mounts     []Mount  `json:"mounts,omitempty"`
	ReadOnly   bool     `json:"readOnlyRootfs,omitempty"`
	// Init runs a minimal init as the container's PID 1, which forwards
	// signals to the command and reaps zombies (docker run --init).
	Init       bool `json:"init,omitempty"`
	StopSignal int  `json:"stopSignal,omitempty"`
	// Healthcheck runs inside the pod while it runs; its results are
	// PodStatus.Health.
	Healthcheck *Healthcheck `json:"healthcheck,omitempty"`
}

// Healthcheck is a command that says whether a container is healthy, with
// Docker's meaning: Test is ["CMD", args...] or ["CMD-SHELL", line].
type Healthcheck struct {
	Test          []string      `json:"test"`
	Interval      time.Duration `json:"interval,omitempty"`
	Timeout       time.Duration `json:"timeout,omitempty"`
	StartPeriod   time.Duration `json:"startPeriod,omitempty"`
	StartInterval time.Duration `json:"startInterval,omitempty"`
	Retries       int           `json:"retries,omitempty"`
}

// Health states.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Health is the state of a pod's healthcheck.
type Health struct {
	Status        string         `json:"status"`
	FailingStreak int            `json:"failingStreak"`
	Log           []HealthResult `json:"log,omitempty"`
}

// HealthResult is one run of a healthcheck.
type HealthResult struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	ExitCode int       `json:"exitCode"`
	Output   string    `json:"output"`
}

// Mount places a pod volume in a container.
type Mount struct {
	Volume   string `json:"volume"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// NoCopy leaves an empty named volume empty; without it the image's
	// content at Target fills it the first time it is mounted.
	NoCopy bool `json:"noCopy,omitempty"`
	// SubPath mounts only this relative path of the volume (a bind of a
	// single host file shares its directory and mounts the file).
	SubPath string `json:"subPath,omitempty"`
}

// Volume is storage of a pod: a named volume object, a host directory
// (admin only), or tmpfs.
type Volume struct {
	Name string `json:"name"`
	// Type is volume (a VolumeObject), bind or tmpfs.
	Type string `json:"type"`
	// Source is the VolumeObject's name, or the host directory of a bind.
	Source string `json:"source,omitempty"`
	// Alias is the VolumeObject's alias, the name its users know it by.
	Alias     string `json:"alias,omitempty"`
	SizeBytes int64  `json:"sizeBytes,omitempty"`
	// Node is where a volume lives; the pod is placed there.
	Node string `json:"node,omitempty"`
	// Shared marks a volume kept as a host directory, which several pods
	// may write at once; other volumes are disks with one writer.
	Shared bool `json:"shared,omitempty"`
}

// Restart policies, as Docker names them.
const (
	RestartNo            = "no"
	RestartOnFailure     = "on-failure"
	RestartAlways        = "always"
	RestartUnlessStopped = "unless-stopped"
)

// Restart is a pod's restart policy.
type Restart struct {
	Policy string `json:"policy"`
	// MaxRetries bounds on-failure restarts; 0 is no bound.
	MaxRetries int `json:"maxRetries,omitempty"`
}

// Pod phases.
const (
	PhasePending   = "Pending"   // waiting for a node
	PhaseScheduled = "Scheduled" // bound, not started yet
	PhaseStarting  = "Starting"
	PhaseRunning   = "Running"
	PhaseExited    = "Exited" // every container exited; see ExitCode
	PhaseFailed    = "Failed" // could not run; see Reason
	PhaseLost      = "Lost"   // its node is gone
)

// PodStatus is what the pod is.
type PodStatus struct {
	Phase   string `json:"phase"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Node runs (or ran) the pod.
	Node string `json:"node,omitempty"`
	IP   string `json:"ip,omitempty"`
	// Ports are the published ports as bound, host ports chosen.
	Ports []Port `json:"ports,omitempty"`
	// CradleID is the pod's VM on its node.
	CradleID     string            `json:"cradleId,omitempty"`
	ExitCode     int               `json:"exitCode,omitempty"`
	Containers   []ContainerStatus `json:"containers,omitempty"`
	RestartCount int               `json:"restartCount,omitempty"`
	// Restarting is set with an exit after which the agent restarts the
	// pod by its policy, so readers need not guess the agent's decision.
	Restarting bool `json:"restarting,omitempty"`
	// NetworksSynced is the spec generation whose attachments the running
	// VM's NICs were last brought in line with (a network joined or left
	// while it runs), and NetworksError why that failed, if it did.
	NetworksSynced int64     `json:"networksSynced,omitempty"`
	NetworksError  string    `json:"networksError,omitempty"`
	StartedAt      time.Time `json:"startedAt,omitempty"`
	FinishedAt     time.Time `json:"finishedAt,omitempty"`
	// ScheduledAt is when the scheduler bound the pod.
	ScheduledAt time.Time `json:"scheduledAt,omitempty"`
	// Health is the healthcheck's state while the pod runs.
	Health *Health `json:"health,omitempty"`
}

// ContainerStatus is one container's part of PodStatus.
type ContainerStatus struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	ExitCode  int    `json:"exitCode,omitempty"`
	OOMKilled bool   `json:"oomKilled,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Terminal reports whether a phase is final for this incarnation.
func Terminal(phase string) bool {
	return phase == PhaseExited || phase == PhaseFailed || phase == PhaseLost
}

// Unbind sends the pod back to the scheduler, off a node that lost it or
// was drained. No frontend waits to start it on its next node, so it is
// not held.
func (p *Pod) Unbind(reason, message string) {
	p.Spec.NodeName = ""
	p.Spec.HoldStart = false
	p.Status = PodStatus{Phase: PhasePending, Reason: reason, Message: message, RestartCount: p.Status.RestartCount}
}

// ShouldRestart reports whether the pod's restart policy restarts it after
// an exit with code.
func (p *Pod) ShouldRestart(code int) bool {
	s := p.Spec
	if s.Desired != DesiredRunning || s.ExitOnNext {
		return false
	}
	switch s.Restart.Policy {
	case RestartAlways, RestartUnlessStopped:
		return true
	case RestartOnFailure:
		return code != 0 && (s.Restart.MaxRetries == 0 || p.Status.RestartCount < s.Restart.MaxRetries)
	}
	return false
}

// Validate checks a pod's spec.
func (p *Pod) Validate() error {
	if err := p.Meta.Validate(KindPod); err != nil {
		return err
	}
	s := &p.Spec
	if len(s.Containers) == 0 {
		return fmt.Errorf("pod %s has no containers", p.Name)
	}
	seen := map[string]bool{}
	for _, c := range s.Containers {
		if !ValidName(c.Name) || seen[c.Name] {
			return fmt.Errorf("pod %s: invalid or duplicate container name %q", p.Name, c.Name)
		}
		seen[c.Name] = true
		if c.Image == "" {
			return fmt.Errorf("pod %s: container %s has no image", p.Name, c.Name)
		}
	}
	if s.Resources.CPUs < 1 || s.Resources.MemoryMiB < 64 {
		return fmt.Errorf("pod %s: resources %d CPUs, %d MiB: want at least 1 CPU and 64 MiB", p.Name, s.Resources.CPUs, s.Resources.MemoryMiB)
	}
	switch s.Restart.Policy {
	case RestartNo, RestartOnFailure, RestartAlways, RestartUnlessStopped:
	default:
		return fmt.Errorf("pod %s: unknown restart policy %q", p.Name, s.Restart.Policy)
	}
	if s.Restart.MaxRetries < 0 {
		return fmt.Errorf("pod %s: negative maximum retry count", p.Name)
	}
	for i, pt := range s.Ports {
		if pt.Protocol != "tcp" && pt.Protocol != "udp" {
			return fmt.Errorf("pod %s: port %d: protocol %q: want tcp or udp", p.Name, pt.ContainerPort, pt.Protocol)
		}
		if pt.ContainerPort < 1 || pt.ContainerPort > 65535 || pt.HostPort < 0 || pt.HostPort > 65535 {
			return fmt.Errorf("pod %s: invalid port %d:%d", p.Name, pt.HostPort, pt.ContainerPort)
		}
		if pt.HostIP != "" && net.ParseIP(pt.HostIP) == nil {
			return fmt.Errorf("pod %s: invalid host IP %q", p.Name, pt.HostIP)
		}
		for _, q := range s.Ports[:i] {
			if pt.Conflicts(q) {
				return fmt.Errorf("pod %s: host port %s is published twice", p.Name, pt)
			}
		}
	}
	switch s.Desired {
	case DesiredRunning, DesiredStopped:
	default:
		return fmt.Errorf("pod %s: desired state %q: want running or stopped", p.Name, s.Desired)
	}
	return nil
}

// Service is a replicated pod template.
type Service struct {
	Meta
	Spec   ServiceSpec   `json:"spec"`
	Status ServiceStatus `json:"status"`
}

// ServiceSpec says how many pods of which template.
type ServiceSpec struct {
	Replicas int     `json:"replicas"`
	Template PodSpec `json:"template"`
	// Update is how a changed template rolls out: "recreate" (the
	// default) or "rolling".
	Update string `json:"update,omitempty"`
}

// ServiceStatus counts the service's pods.
type ServiceStatus struct {
	Replicas int `json:"replicas"`
	Running  int `json:"running"`
}

// Network, Volume, Secret and Config are kept by macro for their
// frontends; their behaviour arrives with the issues that need them.

// Network is a tenant network.
type Network struct {
	Meta
	Spec NetworkSpec `json:"spec"`
}

// NetworkSpec is a network's addressing.
type NetworkSpec struct {
	Subnet  string `json:"subnet,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	// IPRange is the part of the subnet pods' addresses come from.
	IPRange string `json:"ipRange,omitempty"`
	// Internal networks have no way out of the cluster.
	Internal bool   `json:"internal,omitempty"`
	Driver   string `json:"driver,omitempty"`
}

// VolumeObject is a named volume.
type VolumeObject struct {
	Meta
	Spec VolumeSpec `json:"spec"`
}

// VolumeSpec is a named volume's size and home node.
type VolumeSpec struct {
	// SizeBytes bounds what the volume holds.
	SizeBytes int64 `json:"sizeBytes,omitempty"`
	// Node holds a local volume; pods that use it go there.
	Node string `json:"node,omitempty"`
	// Shared volumes are host directories that several pods may write
	// at once (9p); the others are ext4 disks, one writer at a time.
	Shared bool `json:"shared,omitempty"`
	// Driver and Options are what the frontend was given (Docker's
	// volume driver and --opt), kept for inspection.
	Driver  string            `json:"driver,omitempty"`
	Options map[string]string `json:"options,omitempty"`
}

// Secret is sensitive data for pods.
type Secret struct {
	Meta
	Data map[string][]byte `json:"data"`
}

// Config is non-sensitive data for pods.
type Config struct {
	Meta
	Data map[string][]byte `json:"data"`
}
