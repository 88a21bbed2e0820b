package docker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// What a Docker container keeps in its pod's annotations: the config as
// Docker reports it (the image's merged in), and the host config as the
// client gave it. The pod spec is what macro runs; these are what
// `docker inspect` shows.
const (
	annConfig = "docker.config"
	annHost   = "docker.hostconfig"
	// annNetworks maps the IDs of the user networks the container is on
	// to their names and subnets, which Docker never changes.
	annNetworks = "docker.networks"
)

// netInfo is what a container shows of a user network it is on.
type netInfo struct {
	Name    string `json:"name"`
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway,omitempty"`
}

// mainContainer names the one container of a Docker container's pod.
const mainContainer = "main"

// ctr is a Docker container: a pod made through this API.
type ctr struct {
	pod  *model.Pod
	cfg  *container.Config
	host *container.HostConfig
	nets map[string]netInfo // by network ID
}

// asContainer reads a pod as a Docker container; false for pods other
// frontends made.
func asContainer(p *model.Pod) (*ctr, bool) {
	raw, ok := p.Annotations[annConfig]
	if !ok || len(p.Spec.Containers) != 1 {
		return nil, false
	}
	c := &ctr{pod: p, cfg: &container.Config{}, host: &container.HostConfig{}}
	if json.Unmarshal([]byte(raw), c.cfg) != nil {
		return nil, false
	}
	json.Unmarshal([]byte(p.Annotations[annHost]), c.host)
	if raw := p.Annotations[annNetworks]; raw != "" {
		json.Unmarshal([]byte(raw), &c.nets)
	}
	return c, true
}

func (c *ctr) ID() string   { return c.pod.Name }
func (c *ctr) Name() string { return "/" + c.pod.Alias }

// Docker's container states.
const (
	stateCreated    = "created"
	stateRunning    = "running"
	statePaused     = "paused"
	stateRestarting = "restarting"
	stateExited     = "exited"
	stateDead       = "dead"
)

// state is the container's Docker state.
func (c *ctr) state() string {
	st := c.pod.Status
	started := !st.StartedAt.IsZero()
	switch {
	case st.Phase == model.PhaseRunning:
		if st.Reason == reasonPaused {
			return statePaused
		}
		return stateRunning
	case model.Terminal(st.Phase):
		if c.willRestart() {
			return stateRestarting
		}
		if !started && st.Reason == "StartError" {
			return stateCreated // as Docker leaves a container that never ran
		}
		if st.Phase == model.PhaseLost {
			return stateDead
		}
		return stateExited
	case !started:
		return stateCreated
	case c.pod.Spec.Desired == model.DesiredRunning:
		return stateRestarting
	}
	return stateExited
}

// reasonPaused marks a running pod whose VM is paused.
const reasonPaused = "Paused"

// willRestart reports whether the agent restarts the ended pod by its
// policy.
func (c *ctr) willRestart() bool {
	return c.pod.Spec.Desired == model.DesiredRunning && c.pod.Status.Restarting
}

// running reports whether Docker counts the container as running (for
// stop, kill, rm and exec).
func (c *ctr) running() bool {
	s := c.state()
	return s == stateRunning || s == statePaused || s == stateRestarting
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// dockerState is the State of `docker inspect`.
func (c *ctr) dockerState() *container.State {
	st := c.pod.Status
	s := c.state()
	ds := &container.State{
		Status:     container.ContainerState(s),
		Running:    s == stateRunning || s == statePaused || s == stateRestarting,
		Paused:     s == statePaused,
		Restarting: s == stateRestarting,
		Dead:       s == stateDead,
		ExitCode:   st.ExitCode,
		StartedAt:  timeString(st.StartedAt),
		FinishedAt: timeString(st.FinishedAt),
		Health:     c.health(),
	}
	if s == stateRunning || s == statePaused {
		ds.ExitCode = 0
		ds.FinishedAt = timeString(time.Time{})
		ds.Pid = 1
	}
	for _, cs := range st.Containers {
		if cs.OOMKilled {
			ds.OOMKilled = true
		}
		if cs.Error != "" && !ds.Running {
			ds.Error = cs.Error
		}
	}
	if ds.Error == "" && !ds.Running && st.Phase != model.PhaseExited && st.Message != "" {
		ds.Error = st.Message
	}
	return ds
}

// statusLine is the Status column of `docker ps`.
func (c *ctr) statusLine(now time.Time) string {
	st := c.pod.Status
	switch c.state() {
	case stateRunning, statePaused:
		s := "Up " + units.HumanDuration(now.Sub(st.StartedAt))
		if h := c.health(); h != nil && h.Status != container.NoHealthcheck && c.state() != statePaused {
			if h.Status == container.Starting {
				s += " (health: starting)"
			} else {
				s += " (" + string(h.Status) + ")"
			}
		}
		if c.state() == statePaused {
			s += " (Paused)"
		}
		return s
	case stateRestarting:
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, units.HumanDuration(now.Sub(st.FinishedAt)))
	case stateExited:
		return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, units.HumanDuration(now.Sub(st.FinishedAt)))
	case stateDead:
		return "Dead"
	}
	return "Created"
}

// command is the Command column: the process line.
func (c *ctr) command() string {
	args := append(append([]string(nil), c.cfg.Entrypoint...), c.cfg.Cmd...)
	return strings.Join(args, " ")
}

// networks is the container's view of its networks: the default one.
func (c *ctr) networks() map[string]*network.EndpointSettings {
	if len(c.pod.Spec.Attachments) > 0 {
		out := map[string]*network.EndpointSettings{}
		for _, at := range c.pod.Spec.Attachments {
			info := c.nets[at.Network]
			ep := &network.EndpointSettings{NetworkID: at.Network, EndpointID: c.ID(), Aliases: at.Aliases}
			if ip, err := netip.ParseAddr(at.IP); err == nil {
				if sub, err := netip.ParsePrefix(info.Subnet); err == nil && c.running() {
					ep.IPAddress, ep.IPPrefixLen = ip, sub.Bits()
					ep.Gateway, _ = netip.ParseAddr(info.Gateway)
				}
				ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: ip}
			}
			out[info.Name] = ep
		}
		return out
	}
	ep := &network.EndpointSettings{NetworkID: defaultNetworkID, EndpointID: c.ID()}
	// The status has the address with its prefix length (10.88.0.5/16).
	if pfx, err := netip.ParsePrefix(c.pod.Status.IP); err == nil && c.running() {
		ep.IPAddress = pfx.Addr()
		ep.IPPrefixLen = pfx.Bits()
		ep.Gateway = pfx.Masked().Addr().Next()
	} else if ip, err := netip.ParseAddr(c.pod.Status.IP); err == nil && c.running() {
		ep.IPAddress = ip
	}
	return map[string]*network.EndpointSettings{defaultNetworkName: ep}
}

// onNetwork reports whether the container is on the network named, or of
// the ID, ref.
func (c *ctr) onNetwork(ref string) bool {
	if len(c.pod.Spec.Attachments) == 0 {
		return isDefaultNetwork(ref)
	}
	for _, at := range c.pod.Spec.Attachments {
		if at.Network == ref || c.nets[at.Network].Name == ref {
			return true
		}
	}
	return false
}

// The default network, Docker's "bridge": every container is on it until
// user-defined networks arrive. Its ID is fixed, 64 hex digits as Docker's.
const (
	defaultNetworkName = "bridge"
	defaultNetworkID   = "8dc0b6b8e9e1f4a64b1a0d31e7a5b6f2f0e0c5c1d3a2b4e6f8091a2b3c4d5e6f"
)

// summary is a line of `docker ps`.
func (c *ctr) summary(now time.Time) container.Summary {
	s := container.Summary{
		ID:      c.ID(),
		Names:   []string{c.Name()},
		Image:   c.cfg.Image,
		ImageID: c.pod.Spec.Containers[0].Image,
		Command: c.command(),
		Created: c.pod.CreatedAt.Unix(),
		Ports:   c.portSummary(),
		Labels:  c.pod.Labels,
		State:   container.ContainerState(c.state()),
		Status:  c.statusLine(now),
		Mounts:  c.mounts(),
	}
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.HostConfig.NetworkMode = "bridge"
	if m := string(c.host.NetworkMode); m != "" && m != "default" {
		s.HostConfig.NetworkMode = m
	}
	s.NetworkSettings = &container.NetworkSettingsSummary{Networks: c.networks()}
	if h := c.health(); h != nil {
		s.Health = &container.HealthSummary{Status: h.Status, FailingStreak: h.FailingStreak}
	}
	return s
}

// inspect is `docker inspect`.
func (c *ctr) inspect() *container.InspectResponse {
	args := append(append([]string(nil), c.cfg.Entrypoint...), c.cfg.Cmd...)
	path := ""
	if len(args) > 0 {
		path, args = args[0], args[1:]
	}
	host := *c.host
	if host.NetworkMode == "" {
		host.NetworkMode = "bridge"
	}
	if host.RestartPolicy.Name == "" {
		host.RestartPolicy.Name = container.RestartPolicyDisabled
	}
	if host.LogConfig.Type == "" {
		host.LogConfig.Type = "json-file"
	}
	return &container.InspectResponse{
		ID:           c.ID(),
		Created:      timeString(c.pod.CreatedAt),
		Path:         path,
		Args:         args,
		State:        c.dockerState(),
		Image:        c.pod.Spec.Containers[0].Image,
		Name:         c.Name(),
		RestartCount: c.pod.Status.RestartCount,
		Driver:       "hearth",
		Platform:     "linux",
		HostConfig:   &host,
		Mounts:       c.mounts(),
		Config:       c.cfg,
		NetworkSettings: &container.NetworkSettings{
			SandboxID: c.pod.Status.CradleID,
			Ports:     c.portMap(),
			Networks:  c.networks(),
		},
	}
}

// hostAddrs are the addresses a published port listens on, as Docker
// lists them: all of IPv4's and IPv6's for a port bound to every address.
func hostAddrs(p model.Port) []netip.Addr {
	if p.HostIP == "" {
		return []netip.Addr{netip.IPv4Unspecified(), netip.IPv6Unspecified()}
	}
	a, err := netip.ParseAddr(p.HostIP)
	if err != nil {
		return nil
	}
	return []netip.Addr{a}
}

// boundPorts are the ports published while the container runs.
func (c *ctr) boundPorts() []model.Port {
	if c.pod.Status.Phase != model.PhaseRunning {
		return nil
	}
	return c.pod.Status.Ports
}

// portSummary is the PORTS of docker ps: each binding, and the exposed
// ports nothing is bound to.
func (c *ctr) portSummary() []container.PortSummary {
	out := []container.PortSummary{}
	published := map[string]bool{}
	for _, p := range c.boundPorts() {
		published[fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)] = true
		for _, a := range hostAddrs(p) {
			out = append(out, container.PortSummary{IP: a, PrivatePort: uint16(p.ContainerPort), PublicPort: uint16(p.HostPort), Type: p.Protocol})
		}
	}
	for port := range c.cfg.ExposedPorts {
		if !published[port.String()] {
			out = append(out, container.PortSummary{PrivatePort: port.Num(), Type: string(port.Proto())})
		}
	}
	return out
}

// portMap is NetworkSettings.Ports of inspect (and docker port): every
// exposed port, with its bindings while it runs.
func (c *ctr) portMap() network.PortMap {
	out := network.PortMap{}
	for port := range c.cfg.ExposedPorts {
		out[port] = nil
	}
	for _, p := range c.boundPorts() {
		port, err := network.ParsePort(fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol))
		if err != nil {
			continue
		}
		for _, a := range hostAddrs(p) {
			out[port] = append(out[port], network.PortBinding{HostIP: a, HostPort: strconv.Itoa(p.HostPort)})
		}
	}
	return out
}

// mounts are the container's mounts as Docker lists them.
func (c *ctr) mounts() []container.MountPoint {
	out := []container.MountPoint{}
	for _, m := range c.pod.Spec.Containers[0].Mounts {
		for _, v := range c.pod.Spec.Volumes {
			if v.Name != m.Volume {
				continue
			}
			mp := container.MountPoint{Destination: m.Target, RW: !m.ReadOnly, Source: v.Source}
			switch v.Type {
			case "bind":
				mp.Type = "bind"
				mp.Propagation = "rprivate"
				if m.SubPath != "" {
					mp.Source = path.Join(v.Source, m.SubPath)
				}
			case "tmpfs":
				mp.Type = "tmpfs"
			case "volume":
				mp.Type, mp.Name, mp.Driver, mp.Source = "volume", v.Alias, "local", ""
			}
			if m.ReadOnly {
				mp.Mode = "ro"
			}
			out = append(out, mp)
		}
	}
	return out
}

// Names and IDs.

var nameRE = regexp.MustCompile(`^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// validName checks a container name as Docker does.
func validName(name string) error {
	if !nameRE.MatchString(name) || len(name) > 253 {
		return errdefs.InvalidArgument("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name)
	}
	return nil
}

var idRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// newID makes a container ID: 64 hex digits whose short form is not a
// number (Docker's rule, so it cannot be mistaken for one).
func newID() string {
	for {
		b := make([]byte, 32)
		rand.Read(b)
		id := hex.EncodeToString(b)
		if _, err := strconv.ParseUint(id[:12], 10, 64); err == nil {
			continue
		}
		return id
	}
}

// Names for containers created without one: an adjective and a noun, as
// Docker makes them, from Hearth's own words.
var (
	adjectives = []string{"amber", "bold", "brave", "bright", "calm", "clever", "cosy", "crisp", "eager", "fond",
		"gentle", "glad", "golden", "happy", "hardy", "keen", "kind", "lively", "loyal", "lucid",
		"merry", "mellow", "nimble", "patient", "proud", "quiet", "rapid", "serene", "steady", "sunny",
		"swift", "tender", "tidy", "vivid", "warm", "wise", "witty", "young", "zesty", "sturdy"}
	nouns = []string{"anvil", "beacon", "bellows", "birch", "brazier", "candle", "cedar", "chimney", "cinder", "coal",
		"copper", "ember", "fender", "firedog", "flame", "flint", "forge", "grate", "griddle", "hearth",
		"hob", "inglenook", "kettle", "kiln", "lantern", "log", "mantel", "oak", "oven", "poker",
		"range", "settle", "smoke", "spark", "stoker", "stove", "tinder", "torch", "trivet", "wick"}
)

func randomName(attempt int) string {
	b := make([]byte, 2)
	rand.Read(b)
	n := adjectives[int(b[0])%len(adjectives)] + "_" + nouns[int(b[1])%len(nouns)]
	if attempt > 0 {
		n += strconv.Itoa(attempt)
	}
	return n
}

// parseSignal reads a signal as Docker takes it: "SIGTERM", "TERM" or
// "15".
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, errdefs.InvalidArgument("invalid signal: %s", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if sig := unix.SignalNum("SIG" + name); sig != 0 {
		return sig, nil
	}
	// Names Linux has that x/sys does not list; and the real-time
	// signals, as SIGRTMIN+3 for systemd's STOPSIGNAL.
	switch name {
	case "IOT":
		return syscall.SIGABRT, nil
	case "CLD":
		return syscall.SIGCHLD, nil
	case "POLL":
		return syscall.SIGIO, nil
	}
	const rtmin, rtmax = 34, 64
	for _, rt := range []struct {
		prefix string
		base   int
		sign   int
	}{{"RTMIN", rtmin, 1}, {"RTMAX", rtmax, -1}} {
		rest, ok := strings.CutPrefix(name, rt.prefix)
		if !ok {
			continue
		}
		off := 0
		if rest != "" {
			op := "+"
			if rt.sign < 0 {
				op = "-"
			}
			n, err := strconv.Atoi(strings.TrimPrefix(rest, op))
			if err != nil || !strings.HasPrefix(rest, op) {
				break
			}
			off = n
		}
		if n := rt.base + rt.sign*off; n >= rtmin && n <= rtmax {
			return syscall.Signal(n), nil
		}
	}
	return 0, errdefs.InvalidArgument("invalid signal: %s", s)
}

// resolve finds a tenant's container by full ID, name or unique ID prefix,
// in Docker's order.
func (s *Server) resolve(ctx context.Context, tenant, ref string) (*ctr, error) {
	notFound := errdefs.NotFound("No such container: %s", ref)
	name := strings.TrimPrefix(ref, "/")
	if name == "" {
		return nil, notFound
	}
	if idRE.MatchString(name) {
		p, err := store.Get[model.Pod](ctx, s.Store, model.KindPod, tenant, name)
		if err == nil {
			if c, ok := asContainer(p); ok {
				return c, nil
			}
			return nil, notFound
		}
		if !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	p, err := store.GetByAlias[model.Pod](ctx, s.Store, model.KindPod, tenant, name)
	if err == nil {
		if c, ok := asContainer(p); ok {
			return c, nil
		}
	} else if !errdefs.IsNotFound(err) {
		return nil, err
	}
	if !regexp.MustCompile(`^[0-9a-f]+$`).MatchString(name) {
		return nil, notFound
	}
	pods, _, err := store.List[model.Pod](ctx, s.Store, model.KindPod, tenant)
	if err != nil {
		return nil, err
	}
	var found *ctr
	for _, p := range pods {
		if !strings.HasPrefix(p.Name, name) {
			continue
		}
		c, ok := asContainer(p)
		if !ok {
			continue
		}
		if found != nil {
			return nil, errdefs.InvalidArgument("multiple IDs found with provided prefix: %s", name)
		}
		found = c
	}
	if found == nil {
		return nil, notFound
	}
	return found, nil
}

// containers lists the tenant's Docker containers.
func (s *Server) containers(ctx context.Context, tenant string) ([]*ctr, error) {
	pods, _, err := store.List[model.Pod](ctx, s.Store, model.KindPod, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]*ctr, 0, len(pods))
	for _, p := range pods {
		if c, ok := asContainer(p); ok {
			out = append(out, c)
		}
	}
	return out, nil
}
