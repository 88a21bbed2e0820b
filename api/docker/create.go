package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
	"github.com/hearth-cloud/hearth/tenancy"
)

// defaultMemoryMiB sizes the VM of a container without -m: a VM needs a
// size, where a Docker container may use all of the host.
const defaultMemoryMiB = 512

// createContainer is POST /containers/create.
func (s *Server) createContainer(w http.ResponseWriter, r *http.Request, tenant string) {
	var req container.CreateRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.Config == nil {
		writeError(w, errdefs.InvalidArgument("config cannot be empty in order to create a container"))
		return
	}
	if req.HostConfig == nil {
		req.HostConfig = &container.HostConfig{}
	}
	name := strings.TrimPrefix(r.URL.Query().Get("name"), "/")
	if name != "" {
		if err := validName(name); err != nil {
			writeError(w, err)
			return
		}
	}
	if p := r.URL.Query().Get("platform"); p != "" && p != "linux" && p != "linux/amd64" {
		writeError(w, errdefs.InvalidArgument("platform %s is not supported: Hearth runs linux/amd64 images", p))
		return
	}
	pod, warnings, err := s.podFor(r, tenant, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	for attempt := 0; ; attempt++ {
		pod.Alias = name
		if name == "" {
			pod.Alias = randomName(attempt)
		}
		err = s.createPod(r.Context(), pod)
		var inUse *store.AliasInUseError
		if errors.As(err, &inUse) {
			if name == "" && attempt < 10 {
				continue
			}
			err = errdefs.Conflict("Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", inUse.Alias, inUse.Holder)
		}
		break
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, container.CreateResponse{ID: pod.Name, Warnings: warnings})
}

// createPod stores a new pod. One on user networks, with volumes, or of
// a tenant with quotas is made under its tenant's lock, which keeps its
// addresses unique, its volumes from going away meanwhile, and two
// creations from both taking the quota's last share.
func (s *Server) createPod(ctx context.Context, pod *model.Pod) error {
	hasVolumes := slices.ContainsFunc(pod.Spec.Volumes, func(v model.Volume) bool { return v.Type == "volume" })
	quota, limited, err := tenancy.Limited(ctx, s.Store, pod.Tenant)
	if err != nil {
		return err
	}
	if len(pod.Spec.Attachments) == 0 && !hasVolumes && !limited {
		return s.Store.Create(ctx, pod)
	}
	return s.Store.Locked(ctx, store.TenantLock(pod.Tenant), func() error {
		if limited {
			if err := tenancy.Admit(ctx, s.Store, quota, tenancy.PodUsage(pod, pod.Spec.Desired == model.DesiredRunning), ""); err != nil {
				return err
			}
		}
		if len(pod.Spec.Attachments) > 0 {
			if s.Networks == nil {
				return errdefs.Unavailable("networks are not served here")
			}
			err := s.Networks.Assign(ctx, pod)
			if errdefs.IsNotFound(err) {
				err = errdefs.InvalidArgument("%v", err) // the network went meanwhile
			}
			if err != nil {
				return err
			}
		}
		undo := func() {}
		if hasVolumes {
			vm, err := s.volumes()
			if err != nil {
				return err
			}
			if undo, err = vm.Attach(ctx, pod, nil); err != nil {
				return err
			}
		}
		if err := s.Store.Create(ctx, pod); err != nil {
			undo()
			return err
		}
		return nil
	})
}

// podFor turns a create request into the pod that runs it.
func (s *Server) podFor(r *http.Request, tenant string, req *container.CreateRequest) (*model.Pod, []string, error) {
	cfg, hc := req.Config, req.HostConfig
	warnings := []string{}
	if tenant != AdminTenant {
		if err := refusedToTenants(req.HostConfig); err != nil {
			return nil, nil, err
		}
	}
	if err := unsupported(req); err != nil {
		return nil, nil, err
	}
	if cfg.Image == "" {
		return nil, nil, errdefs.InvalidArgument("no image specified")
	}
	img, ref, err := s.Images.Get(tenant, cfg.Image)
	if err != nil {
		return nil, nil, err
	}
	icf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", cfg.Image, err)
	}
	merged := mergeConfig(cfg, &icf.Config)
	args := append(append([]string(nil), merged.Entrypoint...), merged.Cmd...)
	if len(args) == 0 {
		return nil, nil, errdefs.InvalidArgument("no command specified")
	}
	for _, e := range merged.Env {
		if strings.ContainsRune(e, 0) {
			return nil, nil, errdefs.InvalidArgument("invalid environment variable %q", e)
		}
	}

	id := newID()
	c := model.Container{
		Name:       mainContainer,
		Image:      ref.ID.String(),
		Command:    append([]string{}, merged.Entrypoint...),
		Args:       merged.Cmd,
		Env:        merged.Env,
		WorkingDir: merged.WorkingDir,
		User:       merged.User,
		TTY:        cfg.Tty,
		Stdin:      cfg.OpenStdin,
		ReadOnly:   hc.ReadonlyRootfs,
	}
	if merged.StopSignal != "" {
		sig, err := parseSignal(merged.StopSignal)
		if err != nil {
			return nil, nil, err
		}
		c.StopSignal = int(sig)
	}
	if merged.WorkingDir != "" && !path.IsAbs(merged.WorkingDir) {
		return nil, nil, errdefs.InvalidArgument("the working directory '%s' is invalid, it needs to be an absolute path", merged.WorkingDir)
	}
	c.Init = hc.Init != nil && *hc.Init
	if c.Healthcheck, err = healthcheck(merged.Healthcheck); err != nil {
		return nil, nil, err
	}

	spec := model.PodSpec{
		Containers:  []model.Container{c},
		Resources:   model.Resources{CPUs: 1, MemoryMiB: defaultMemoryMiB},
		Hostname:    merged.Hostname,
		Desired:     model.DesiredStopped,
		StopTimeout: merged.StopTimeout,
		AutoRemove:  hc.AutoRemove,
	}
	if spec.Hostname == "" {
		spec.Hostname = id[:12]
		merged.Hostname = spec.Hostname
	}
	if err := resources(hc.Resources, &spec.Resources); err != nil {
		return nil, nil, err
	}
	if spec.Restart, err = restartPolicy(hc.RestartPolicy); err != nil {
		return nil, nil, err
	}
	if hc.AutoRemove && spec.Restart.Policy != model.RestartNo {
		return nil, nil, errdefs.InvalidArgument("can't create 'AutoRemove' container with restart policy")
	}
	if err := mounts(hc, &spec, merged.Volumes, tenant == AdminTenant); err != nil {
		return nil, nil, err
	}
	if spec.Ports, err = publishedPorts(hc, merged.ExposedPorts); err != nil {
		return nil, nil, err
	}
	nets, err := s.attachments(r.Context(), tenant, req, &spec)
	if err != nil {
		return nil, nil, err
	}
	for port := range hc.PortBindings {
		// A published port is an exposed one, as Docker records it.
		if merged.ExposedPorts == nil {
			merged.ExposedPorts = network.PortSet{}
		}
		merged.ExposedPorts[port] = struct{}{}
	}

	cfgJSON, err := json.Marshal(merged)
	if err != nil {
		return nil, nil, err
	}
	hcJSON, err := json.Marshal(hc)
	if err != nil {
		return nil, nil, err
	}
	pod := &model.Pod{
		Meta: model.Meta{Kind: model.KindPod, Tenant: tenant, Name: id, Labels: merged.Labels,
			Annotations: map[string]string{annConfig: string(cfgJSON), annHost: string(hcJSON)}},
		Spec:   spec,
		Status: model.PodStatus{Phase: model.PhasePending},
	}
	if len(nets) > 0 {
		b, err := json.Marshal(nets)
		if err != nil {
			return nil, nil, err
		}
		pod.Annotations[annNetworks] = string(b)
	}
	if err := pod.Validate(); err != nil {
		return nil, nil, errdefs.InvalidArgument("%v", err)
	}
	return pod, warnings, nil
}

// attachments puts the pod on the user-defined networks the request names
// (--network, several since API 1.44), with the addresses asked for
// (--ip); network/ipam assigns the others when the pod is created. A
// container is on the default network or on user-defined ones.
func (s *Server) attachments(ctx context.Context, tenant string, req *container.CreateRequest, spec *model.PodSpec) (map[string]netInfo, error) {
	mode := string(req.HostConfig.NetworkMode)
	onDefault := func(nm string) bool { return nm == "" || nm == "default" || isDefaultNetwork(nm) }
	eps := map[string]*network.EndpointSettings{}
	if req.NetworkingConfig != nil {
		eps = req.NetworkingConfig.EndpointsConfig
	}
	var refs []string
	if !onDefault(mode) {
		refs = append(refs, mode)
	}
	var more []string
	for nm := range eps {
		if nm != mode && !onDefault(nm) {
			more = append(more, nm)
		}
	}
	sort.Strings(more)
	refs = append(refs, more...)
	if len(refs) == 0 {
		for nm, ep := range eps {
			if ep != nil && ep.IPAMConfig != nil && ep.IPAMConfig.IPv4Address.IsValid() {
				return nil, errdefs.InvalidArgument("user specified IP address is supported on user defined networks only (--network %s)", nm)
			}
			if ep != nil && len(ep.Aliases) > 0 {
				return nil, errdefs.InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
			}
		}
		return nil, nil
	}
	if onDefault(mode) && mode != "" && mode != "default" {
		return nil, errdefs.InvalidArgument("a container cannot be on the default network and on user-defined networks at once yet")
	}
	nets := map[string]netInfo{}
	for _, ref := range refs {
		n, err := s.resolveNetwork(ctx, tenant, ref)
		if errdefs.IsNotFound(err) {
			// Not a 404: the CLI would take it for a missing image.
			return nil, errdefs.InvalidArgument("network %s not found", ref)
		}
		if err != nil {
			return nil, err
		}
		if n == nil {
			return nil, errdefs.InvalidArgument("a container cannot be on the default network and on user-defined networks at once yet")
		}
		if _, dup := nets[n.Name]; dup {
			return nil, errdefs.InvalidArgument("network %s is given twice", ref)
		}
		at := model.Attachment{Network: n.Name}
		if ep := eps[ref]; ep != nil {
			if ep.IPAMConfig != nil && ep.IPAMConfig.IPv4Address.IsValid() {
				at.IP = ep.IPAMConfig.IPv4Address.String()
			}
			for _, a := range ep.Aliases {
				if !store.ValidAlias(a) || strings.ContainsAny(a, " \t") {
					return nil, errdefs.InvalidArgument("invalid network alias %q", a)
				}
				at.Aliases = append(at.Aliases, a)
			}
		}
		spec.Attachments = append(spec.Attachments, at)
		nets[n.Name] = netInfo{Name: n.Alias, Subnet: n.Spec.Subnet, Gateway: n.Spec.Gateway}
	}
	return nets, nil
}

// publishedPorts turns -p (PortBindings) and -P (every exposed port not
// bound otherwise, on a port the node picks) into the pod's ports.
func publishedPorts(hc *container.HostConfig, exposed network.PortSet) ([]model.Port, error) {
	var out []model.Port
	proto := func(p network.Port) (string, error) {
		switch pr := string(p.Proto()); pr {
		case "tcp", "udp":
			return pr, nil
		default:
			return "", errdefs.InvalidArgument("cannot publish %s: only tcp and udp ports can be published", p)
		}
	}
	for port, binds := range hc.PortBindings {
		pr, err := proto(port)
		if err != nil {
			return nil, err
		}
		if len(binds) == 0 {
			binds = []network.PortBinding{{}}
		}
		for _, b := range binds {
			hp := 0
			if h := b.HostPort; h != "" {
				if lo, hi, ok := strings.Cut(h, "-"); ok {
					if lo != hi {
						return nil, errdefs.InvalidArgument("host port ranges (%s) are not supported: publish each port", h)
					}
					h = lo
				}
				n, err := strconv.Atoi(h)
				if err != nil || n < 0 || n > 65535 {
					return nil, errdefs.InvalidArgument("invalid port specification: %q", b.HostPort)
				}
				hp = n
			}
			ip := ""
			if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
				ip = b.HostIP.String()
			}
			out = append(out, model.Port{HostIP: ip, HostPort: hp, ContainerPort: int(port.Num()), Protocol: pr})
		}
	}
	if hc.PublishAllPorts {
		for port := range exposed {
			if _, bound := hc.PortBindings[port]; bound {
				continue
			}
			pr, err := proto(port)
			if err != nil {
				continue // Docker skips what it cannot publish
			}
			out = append(out, model.Port{ContainerPort: int(port.Num()), Protocol: pr})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ContainerPort != b.ContainerPort {
			return a.ContainerPort < b.ContainerPort
		}
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		return a.HostPort < b.HostPort
	})
	for i, p := range out {
		for _, q := range out[:i] {
			if p.Conflicts(q) {
				return nil, errdefs.InvalidArgument("host port %d/%s is published twice", p.HostPort, p.Protocol)
			}
		}
	}
	return out, nil
}

// mergeConfig is Docker's merge of the image's config under the user's:
// the container's config as inspect shows it.
func mergeConfig(user *container.Config, img *v1.Config) *container.Config {
	m := *user
	if m.User == "" {
		m.User = img.User
	}
	if len(img.ExposedPorts) > 0 && m.ExposedPorts == nil {
		m.ExposedPorts = network.PortSet{}
	}
	for p := range img.ExposedPorts {
		if port, err := network.ParsePort(p); err == nil {
			m.ExposedPorts[port] = struct{}{}
		}
	}
	env := append([]string(nil), user.Env...)
	for _, ie := range img.Env {
		k, _, _ := strings.Cut(ie, "=")
		found := false
		for _, ue := range user.Env {
			if uk, _, _ := strings.Cut(ue, "="); uk == k {
				found = true
				break
			}
		}
		if !found {
			env = append(env, ie)
		}
	}
	m.Env = env
	labels := map[string]string{}
	for k, v := range img.Labels {
		labels[k] = v
	}
	for k, v := range user.Labels {
		labels[k] = v
	}
	m.Labels = labels
	if len(m.Entrypoint) == 0 {
		if len(m.Cmd) == 0 {
			m.Cmd = img.Cmd
		}
		if m.Entrypoint == nil {
			m.Entrypoint = img.Entrypoint
		}
	}
	if m.WorkingDir == "" {
		m.WorkingDir = img.WorkingDir
	}
	if m.StopSignal == "" {
		m.StopSignal = img.StopSignal
	}
	if len(img.Volumes) > 0 {
		vols := map[string]struct{}{}
		for k := range img.Volumes {
			vols[k] = struct{}{}
		}
		for k := range user.Volumes {
			vols[k] = struct{}{}
		}
		m.Volumes = vols
	}
	if len(m.Shell) == 0 {
		m.Shell = img.Shell
	}
	if len(m.OnBuild) == 0 {
		m.OnBuild = img.OnBuild
	}
	if ih := img.Healthcheck; ih != nil {
		if m.Healthcheck == nil {
			m.Healthcheck = &container.HealthConfig{Test: ih.Test, Interval: ih.Interval, Timeout: ih.Timeout, StartPeriod: ih.StartPeriod, Retries: ih.Retries}
		} else {
			h := *m.Healthcheck
			if len(h.Test) == 0 {
				h.Test = ih.Test
			}
			if h.Interval == 0 {
				h.Interval = ih.Interval
			}
			if h.Timeout == 0 {
				h.Timeout = ih.Timeout
			}
			if h.StartPeriod == 0 {
				h.StartPeriod = ih.StartPeriod
			}
			if h.Retries == 0 {
				h.Retries = ih.Retries
			}
			m.Healthcheck = &h
		}
	}
	return &m
}

// healthcheck turns Docker's healthcheck into the pod's; NONE or an empty
// test is none.
func healthcheck(h *container.HealthConfig) (*model.Healthcheck, error) {
	if h == nil || len(h.Test) == 0 || h.Test[0] == "NONE" {
		return nil, nil
	}
	switch h.Test[0] {
	case "CMD", "CMD-SHELL":
	default:
		return nil, errdefs.InvalidArgument("invalid healthcheck test %q: it must start with CMD, CMD-SHELL or NONE", h.Test[0])
	}
	if len(h.Test) < 2 {
		return nil, errdefs.InvalidArgument("healthcheck %s has no command", h.Test[0])
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Interval", h.Interval}, {"Timeout", h.Timeout}, {"StartPeriod", h.StartPeriod}, {"StartInterval", h.StartInterval}} {
		if d.v != 0 && d.v < container.MinimumDuration {
			return nil, errdefs.InvalidArgument("%s in Healthcheck cannot be less than %s", d.name, container.MinimumDuration)
		}
	}
	if h.Retries < 0 {
		return nil, errdefs.InvalidArgument("Retries in Healthcheck cannot be negative")
	}
	return &model.Healthcheck{Test: h.Test, Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod,
		StartInterval: h.StartInterval, Retries: h.Retries}, nil
}

// resources sizes the VM from --cpus and -m.
func resources(res container.Resources, out *model.Resources) error {
	if res.NanoCPUs < 0 {
		return errdefs.InvalidArgument("range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", spec.MaxCPUs, spec.MaxCPUs)
	}
	if res.NanoCPUs > 0 {
		cpus := int((res.NanoCPUs + 999_999_999) / 1_000_000_000)
		if cpus > spec.MaxCPUs {
			return errdefs.InvalidArgument("range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", spec.MaxCPUs, spec.MaxCPUs)
		}
		out.CPUs = cpus
	}
	if res.Memory < 0 {
		return errdefs.InvalidArgument("invalid memory limit %d", res.Memory)
	}
	if res.Memory > 0 {
		mib := int((res.Memory + (1<<20 - 1)) >> 20)
		if mib < spec.MinMemoryMiB {
			return errdefs.InvalidArgument("Minimum memory limit allowed is %dMB: every container is a VM", spec.MinMemoryMiB)
		}
		out.MemoryMiB = mib
	}
	return nil
}

// restartPolicy validates --restart as Docker does.
func restartPolicy(p container.RestartPolicy) (model.Restart, error) {
	r := model.Restart{Policy: string(p.Name), MaxRetries: p.MaximumRetryCount}
	switch p.Name {
	case "", container.RestartPolicyDisabled:
		r.Policy = model.RestartNo
	case container.RestartPolicyAlways, container.RestartPolicyUnlessStopped, container.RestartPolicyOnFailure:
	default:
		return r, errdefs.InvalidArgument("invalid restart policy: unknown policy '%s'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'", p.Name)
	}
	if p.MaximumRetryCount < 0 {
		return r, errdefs.InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
	}
	if p.MaximumRetryCount > 0 && p.Name != container.RestartPolicyOnFailure {
		return r, errdefs.InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
	}
	return r, nil
}

// mounts turns -v, --mount and --tmpfs into pod volumes, and gives each
// of anon's paths (-v /path, the image's VOLUMEs) that is not mounted
// otherwise an anonymous volume. Volumes are resolved later
// (volume.Manager.Attach). Only the admin may bind host paths: to a
// tenant the node's filesystem is not theirs to see.
func mounts(hc *container.HostConfig, ps *model.PodSpec, anon map[string]struct{}, allowBinds bool) error {
	c := &ps.Containers[0]
	targets := map[string]bool{}
	add := func(v model.Volume, target string, ro bool) error {
		if !path.IsAbs(target) {
			return errdefs.InvalidArgument("invalid mount config: mount path must be absolute: %s", target)
		}
		target = path.Clean(target)
		if target == "/" {
			return errdefs.InvalidArgument("invalid specification: destination can't be '/'")
		}
		if targets[target] {
			return errdefs.InvalidArgument("Duplicate mount point: %s", target)
		}
		targets[target] = true
		if v.Type == "volume" && v.Alias != "" {
			// A named volume mounted twice is one volume of the pod:
			// one disk, however many mount points.
			for _, have := range ps.Volumes {
				if have.Type == "volume" && have.Alias == v.Alias {
					c.Mounts = append(c.Mounts, model.Mount{Volume: have.Name, Target: target, ReadOnly: ro})
					return nil
				}
			}
		}
		v.Name = fmt.Sprintf("m%d", len(ps.Volumes))
		ps.Volumes = append(ps.Volumes, v)
		c.Mounts = append(c.Mounts, model.Mount{Volume: v.Name, Target: target, ReadOnly: ro})
		return nil
	}
	bind := func(src, target string, ro, create bool) error {
		if !allowBinds {
			return errdefs.PermissionDenied("bind mounts of host paths (%s) are for the cluster's admin: use a volume", src)
		}
		if !filepath.IsAbs(src) {
			return errdefs.InvalidArgument("invalid mount config for type \"bind\": invalid mount path: '%s' mount path must be absolute", src)
		}
		fi, err := os.Stat(src)
		if errors.Is(err, os.ErrNotExist) && create {
			// -v creates a missing host directory, as Docker does.
			if err = os.MkdirAll(src, 0o755); err == nil {
				fi, err = os.Stat(src)
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return errdefs.InvalidArgument("invalid mount config for type \"bind\": bind source path does not exist: %s", src)
			}
			return errdefs.InvalidArgument("invalid mount config for type \"bind\": %v", err)
		}
		switch {
		case fi.IsDir():
			return add(model.Volume{Type: "bind", Source: src}, target, ro)
		case fi.Mode().IsRegular():
			// A file: its directory is shared with the VM, and only the
			// file is bound into the container.
			if err := add(model.Volume{Type: "bind", Source: filepath.Dir(src)}, target, ro); err != nil {
				return err
			}
			c.Mounts[len(c.Mounts)-1].SubPath = filepath.Base(src)
			return nil
		default:
			return errdefs.InvalidArgument("bind mounts of %s (a device, socket or pipe) are not supported: a VM cannot share it", src)
		}
	}
	for _, b := range hc.Binds {
		parts := strings.Split(b, ":")
		if len(parts) == 1 {
			if err := add(model.Volume{Type: "volume"}, b, false); err != nil {
				return err
			}
			continue
		}
		if len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return errdefs.InvalidArgument("invalid volume specification: '%s'", b)
		}
		ro, nocopy := false, false
		if len(parts) == 3 {
			for _, o := range strings.Split(parts[2], ",") {
				switch o {
				case "ro":
					ro = true
				case "nocopy":
					nocopy = true
				case "rw", "z", "Z", "private", "rprivate", "", "consistent", "cached", "delegated":
					// SELinux relabelling and macOS consistency modes
					// mean nothing here, as with Docker on Linux.
				default:
					return errdefs.InvalidArgument("invalid mode: %s", parts[2])
				}
			}
		}
		if !strings.HasPrefix(parts[0], "/") {
			if err := validVolumeName(parts[0]); err != nil {
				return err
			}
			if err := add(model.Volume{Type: "volume", Alias: parts[0]}, parts[1], ro); err != nil {
				return err
			}
			c.Mounts[len(c.Mounts)-1].NoCopy = nocopy
			continue
		}
		if nocopy {
			return errdefs.InvalidArgument("invalid mode: %s: nocopy is for volumes", parts[2])
		}
		if err := bind(parts[0], parts[1], ro, true); err != nil {
			return err
		}
	}
	for _, m := range hc.Mounts {
		switch m.Type {
		case mount.TypeBind:
			if m.BindOptions != nil && (m.BindOptions.Propagation != "" || m.BindOptions.NonRecursive || m.BindOptions.CreateMountpoint) {
				return errdefs.InvalidArgument("bind options of --mount are not supported yet")
			}
			if err := bind(m.Source, m.Target, m.ReadOnly, false); err != nil {
				return err
			}
		case mount.TypeTmpfs:
			if m.Source != "" {
				return errdefs.InvalidArgument("invalid mount config for type \"tmpfs\": source must not be specified")
			}
			v := model.Volume{Type: "tmpfs"}
			if m.TmpfsOptions != nil {
				v.SizeBytes = m.TmpfsOptions.SizeBytes
			}
			if err := add(v, m.Target, m.ReadOnly); err != nil {
				return err
			}
		case mount.TypeVolume:
			o := m.VolumeOptions
			if o != nil && (o.Subpath != "" || (o.DriverConfig != nil && (o.DriverConfig.Name != "" && o.DriverConfig.Name != "local" || len(o.DriverConfig.Options) > 0)) || len(o.Labels) > 0) {
				return errdefs.InvalidArgument("invalid mount config for type \"volume\": volume-subpath, volume-driver, volume-opt and volume-label are not supported: create the volume first (docker volume create)")
			}
			if m.Source != "" {
				if err := validVolumeName(m.Source); err != nil {
					return err
				}
			}
			if err := add(model.Volume{Type: "volume", Alias: m.Source}, m.Target, m.ReadOnly); err != nil {
				return err
			}
			if o != nil && o.NoCopy {
				c.Mounts[len(c.Mounts)-1].NoCopy = true
			}
		default:
			return errdefs.InvalidArgument("invalid mount config: mount type %q is not supported", m.Type)
		}
	}
	var tmpfs []string
	for t := range hc.Tmpfs {
		tmpfs = append(tmpfs, t)
	}
	sort.Strings(tmpfs)
	for _, t := range tmpfs {
		v := model.Volume{Type: "tmpfs"}
		ro := false
		for _, o := range strings.Split(hc.Tmpfs[t], ",") {
			k, val, _ := strings.Cut(o, "=")
			switch k {
			case "size":
				n, err := units.RAMInBytes(val)
				if err != nil || n < 0 {
					return errdefs.InvalidArgument("invalid tmpfs option %q", o)
				}
				v.SizeBytes = n
			case "ro":
				ro = true
			case "", "rw", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "mode":
			default:
				return errdefs.InvalidArgument("invalid tmpfs option %q", o)
			}
		}
		if err := add(v, t, ro); err != nil {
			return err
		}
	}
	var paths []string
	for p := range anon {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if path.IsAbs(p) && targets[path.Clean(p)] {
			continue // mounted otherwise
		}
		if err := add(model.Volume{Type: "volume"}, p, false); err != nil {
			return err
		}
	}
	return nil
}

// options collects the names of the options a request may not use.
type options []string

func (o *options) flag(cond bool, name string) {
	if cond {
		*o = append(*o, name)
	}
}

// hostLevel names the options that would reach past a pod's VM and
// networks: privilege, the host's namespaces, devices and added
// capabilities. Tenants are refused them outright (refusedToTenants);
// Hearth supports none of them (unsupported).
func hostLevel(hc *container.HostConfig) options {
	var bad options
	flag := bad.flag
	flag(hc.Privileged, "--privileged")
	flag(hc.NetworkMode.IsHost(), "--network host")
	flag(hc.PidMode.IsHost(), "--pid host")
	flag(hc.IpcMode.IsHost(), "--ipc host")
	flag(hc.UTSMode.IsHost(), "--uts host")
	flag(hc.UsernsMode.IsHost(), "--userns host")
	flag(hc.CgroupnsMode.IsHost(), "--cgroupns host")
	flag(len(hc.CapAdd) > 0, "--cap-add")
	flag(len(hc.Devices) > 0, "--device")
	flag(len(hc.DeviceRequests) > 0, "--gpus")
	flag(len(hc.DeviceCgroupRules) > 0, "--device-cgroup-rule")
	flag(len(hc.SecurityOpt) > 0, "--security-opt")
	return bad
}

// refusedToTenants refuses a tenant the host-level options with a 403.
// (Bind mounts of host paths are refused where the mounts are made.)
func refusedToTenants(hc *container.HostConfig) error {
	if bad := hostLevel(hc); len(bad) > 0 {
		return errdefs.PermissionDenied("not allowed for tenants: %s", strings.Join(bad, ", "))
	}
	return nil
}

// unsupported refuses options Hearth does not honour, naming them, rather
// than ignoring them.
func unsupported(req *container.CreateRequest) error {
	cfg, hc := req.Config, req.HostConfig
	bad := hostLevel(hc)
	flag := bad.flag
	flag(hc.PidMode.IsContainer(), "--pid container:")
	flag(hc.IpcMode.IsContainer(), "--ipc container:")
	switch nm := string(hc.NetworkMode); {
	case nm == "none":
		bad = append(bad, "--network none")
	case strings.HasPrefix(nm, "container:"):
		bad = append(bad, "--network container:")
	}
	if req.NetworkingConfig != nil {
		for _, ep := range req.NetworkingConfig.EndpointsConfig {
			if ep != nil && ep.IPAMConfig != nil && ep.IPAMConfig.IPv6Address.IsValid() {
				bad = append(bad, "--ip6")
			}
		}
	}
	flag(len(hc.CapDrop) > 0, "--cap-drop")
	flag(len(hc.Sysctls) > 0, "--sysctl")
	flag(len(hc.VolumesFrom) > 0, "--volumes-from")
	flag(len(hc.Links) > 0, "--link")
	flag(len(hc.ExtraHosts) > 0, "--add-host")
	flag(len(hc.DNS) > 0, "--dns")
	flag(len(hc.DNSSearch) > 0, "--dns-search")
	flag(len(hc.DNSOptions) > 0, "--dns-option")
	flag(len(hc.GroupAdd) > 0, "--group-add")
	flag(len(hc.StorageOpt) > 0, "--storage-opt")
	flag(hc.OomScoreAdj != 0, "--oom-score-adj")
	flag(hc.ShmSize != 0, "--shm-size")
	flag(hc.CgroupParent != "", "--cgroup-parent")
	flag(hc.Runtime != "" && hc.Runtime != "runc" && hc.Runtime != "hearth", "--runtime "+hc.Runtime)
	flag(hc.VolumeDriver != "" && hc.VolumeDriver != "local", "--volume-driver")
	flag(hc.LogConfig.Type != "" && hc.LogConfig.Type != "json-file" && hc.LogConfig.Type != "local", "--log-driver "+hc.LogConfig.Type)
	flag(hc.CPUShares != 0, "--cpu-shares")
	flag(hc.CPUPeriod != 0, "--cpu-period")
	flag(hc.CPUQuota != 0, "--cpu-quota")
	flag(hc.CPURealtimePeriod != 0 || hc.CPURealtimeRuntime != 0, "--cpu-rt-period/--cpu-rt-runtime")
	flag(hc.CpusetCpus != "", "--cpuset-cpus")
	flag(hc.CpusetMems != "", "--cpuset-mems")
	flag(hc.BlkioWeight != 0 || len(hc.BlkioWeightDevice) > 0, "--blkio-weight")
	flag(len(hc.BlkioDeviceReadBps)+len(hc.BlkioDeviceWriteBps)+len(hc.BlkioDeviceReadIOps)+len(hc.BlkioDeviceWriteIOps) > 0, "--device-read-bps/--device-write-bps")
	flag(hc.MemoryReservation != 0, "--memory-reservation")
	flag(hc.MemorySwap > 0 && hc.MemorySwap != hc.Memory, "--memory-swap")
	flag(hc.MemorySwappiness != nil && *hc.MemorySwappiness != -1, "--memory-swappiness")
	flag(hc.OomKillDisable != nil && *hc.OomKillDisable, "--oom-kill-disable")
	flag(hc.PidsLimit != nil && *hc.PidsLimit > 0, "--pids-limit")
	flag(len(hc.Ulimits) > 0, "--ulimit")
	flag(hc.Umask != nil, "umask")
	flag(hc.Isolation != "" && hc.Isolation != "default", "--isolation")
	flag(cfg.Domainname != "", "--domainname")
	flag(cfg.NetworkDisabled, "network disabled")
	if len(bad) == 0 {
		return nil
	}
	return errdefs.InvalidArgument("unsupported option(s): %s: Hearth does not support them (yet)", strings.Join(bad, ", "))
}
