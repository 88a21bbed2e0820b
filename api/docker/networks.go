package docker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Networks: Docker's default network, "bridge", which every container is
// on, and the tenant's user-defined networks, macro Network objects whose
// subnets network/ipam allocates cluster-wide. Containers join them when
// they are created (--network) or later (connect), running or not.
func (s *Server) networkRoutes(handle handleFunc) {
	handle("GET /networks", s.listNetworks)
	handle("GET /networks/{id}", s.inspectNetwork)
	handle("POST /networks/create", s.createNetwork)
	handle("DELETE /networks/{id}", s.removeNetwork)
	handle("POST /networks/prune", s.pruneNetworks)
	handle("POST /networks/{id}/connect", s.connectNetwork)
	handle("POST /networks/{id}/disconnect", s.disconnectNetwork)
}

// predefined are the names Docker reserves for its own networks.
var predefined = map[string]bool{defaultNetworkName: true, "host": true, "none": true}

// isDefaultNetwork matches the default network by name, ID or ID prefix.
func isDefaultNetwork(ref string) bool {
	return ref == defaultNetworkName || (ref != "" && strings.HasPrefix(defaultNetworkID, ref))
}

// resolveNetwork finds a tenant's network by name, full ID or unique ID
// prefix; nil is the default network.
func (s *Server) resolveNetwork(ctx context.Context, tenant, ref string) (*model.Network, error) {
	notFound := errdefs.NotFound("network %s not found", ref)
	if ref == "" {
		return nil, notFound
	}
	if isDefaultNetwork(ref) {
		return nil, nil
	}
	if n, err := store.GetByAlias[model.Network](ctx, s.Store, model.KindNetwork, tenant, ref); err == nil {
		return n, nil
	} else if !errdefs.IsNotFound(err) {
		return nil, err
	}
	nets, _, err := store.List[model.Network](ctx, s.Store, model.KindNetwork, tenant)
	if err != nil {
		return nil, err
	}
	var found []*model.Network
	for _, n := range nets {
		switch {
		case n.Name == ref:
			return n, nil
		case strings.HasPrefix(n.Name, ref):
			found = append(found, n)
		}
	}
	switch len(found) {
	case 0:
		return nil, notFound
	case 1:
		return found[0], nil
	}
	return nil, errdefs.InvalidArgument("network %s is ambiguous (%d matches found based on ID prefix)", ref, len(found))
}

// createNetwork is POST /networks/create.
func (s *Server) createNetwork(w http.ResponseWriter, r *http.Request, tenant string) {
	// The addresses are read as text, so that a bad one gets Docker's
	// message rather than a JSON error.
	var req struct {
		network.CreateRequest
		IPAM *struct {
			Driver string
			Config []struct {
				Subnet, IPRange, Gateway string
				AuxAddress               map[string]string `json:"AuxiliaryAddresses"`
			}
		}
	}
	if err := readJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	var spec model.NetworkSpec
	if ipam := req.IPAM; ipam != nil {
		if ipam.Driver != "" && ipam.Driver != "default" {
			writeError(w, errdefs.InvalidArgument("IPAM driver %q is not supported", ipam.Driver))
			return
		}
		switch {
		case len(ipam.Config) > 1:
			writeError(w, errdefs.InvalidArgument("a network has one IPv4 subnet here: %d given", len(ipam.Config)))
			return
		case len(ipam.Config) == 1 && len(ipam.Config[0].AuxAddress) > 0:
			writeError(w, errdefs.InvalidArgument("auxiliary addresses are not supported"))
			return
		case len(ipam.Config) == 1:
			c := ipam.Config[0]
			spec.Subnet, spec.Gateway, spec.IPRange = c.Subnet, c.Gateway, c.IPRange
		}
	}
	n, err := s.networkFor(tenant, &req.CreateRequest, spec)
	if err != nil {
		writeError(w, err)
		return
	}
	if s.Networks == nil {
		writeError(w, errdefs.Unavailable("networks are not served here"))
		return
	}
	if err := s.Networks.Create(r.Context(), n); err != nil {
		var inUse *store.AliasInUseError
		if errors.As(err, &inUse) {
			err = errdefs.Conflict("network with name %s already exists", req.Name)
		}
		writeError(w, err)
		return
	}
	s.emit(tenant, events.NetworkEventType, events.ActionCreate, n.Name, map[string]string{"name": n.Alias, "type": "bridge"})
	writeJSON(w, http.StatusCreated, network.CreateResponse{ID: n.Name})
}

// networkFor checks a create request and makes its Network object.
func (s *Server) networkFor(tenant string, req *network.CreateRequest, spec model.NetworkSpec) (*model.Network, error) {
	switch {
	case req.Name == "":
		return nil, errdefs.InvalidArgument("network name is required")
	case predefined[req.Name]:
		return nil, errdefs.Conflict("network with name %s already exists", req.Name)
	case !store.ValidAlias(req.Name) || strings.ContainsAny(req.Name, " \t"):
		return nil, errdefs.InvalidArgument("invalid network name %q", req.Name)
	case req.Driver != "" && req.Driver != "bridge":
		return nil, errdefs.InvalidArgument("network driver %q is not supported: Hearth's networks are bridge networks", req.Driver)
	case req.EnableIPv6 != nil && *req.EnableIPv6:
		return nil, errdefs.InvalidArgument("IPv6 networks are not supported")
	case req.EnableIPv4 != nil && !*req.EnableIPv4:
		return nil, errdefs.InvalidArgument("a network without IPv4 is not supported")
	case req.Ingress || req.ConfigOnly || req.ConfigFrom != nil || (req.Scope != "" && req.Scope != "local"):
		return nil, errdefs.InvalidArgument("swarm-scoped, ingress and config-only networks are not supported")
	}
	spec.Internal, spec.Driver = req.Internal, "bridge"
	return &model.Network{
		Meta: model.Meta{Kind: model.KindNetwork, Tenant: tenant, Name: newID(), Alias: req.Name, Labels: req.Labels},
		Spec: spec,
	}, nil
}

// inspectNetwork is GET /networks/{id}.
func (s *Server) inspectNetwork(w http.ResponseWriter, r *http.Request, tenant string) {
	n, err := s.resolveNetwork(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if n == nil {
		out, err := s.defaultNetwork(r.Context(), tenant, true)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	out := networkView(n)
	cs, err := s.containers(r.Context(), tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	for _, c := range cs {
		if ep := c.networks()[n.Alias]; ep != nil && ep.NetworkID == n.Name && ep.IPAddress.IsValid() {
			out.Containers[c.ID()] = network.EndpointResource{Name: c.pod.Alias, EndpointID: ep.EndpointID,
				IPv4Address: netip.PrefixFrom(ep.IPAddress, ep.IPPrefixLen)}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// networkView is a user-defined network as Docker shows it.
func networkView(n *model.Network) *network.Inspect {
	out := &network.Inspect{
		Network: network.Network{
			Name: n.Alias, ID: n.Name, Created: n.CreatedAt.UTC(), Scope: "local", Driver: "bridge",
			EnableIPv4: true, Internal: n.Spec.Internal,
			IPAM:    network.IPAM{Driver: "default", Options: map[string]string{}},
			Options: map[string]string{}, Labels: n.Labels,
		},
		Containers: map[string]network.EndpointResource{},
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	var c network.IPAMConfig
	c.Subnet, _ = netip.ParsePrefix(n.Spec.Subnet)
	c.Gateway, _ = netip.ParseAddr(n.Spec.Gateway)
	c.IPRange, _ = netip.ParsePrefix(n.Spec.IPRange)
	out.IPAM.Config = []network.IPAMConfig{c}
	return out
}

// listNetworks is GET /networks (docker network ls).
func (s *Server) listNetworks(w http.ResponseWriter, r *http.Request, tenant string) {
	f, err := parseFilters(r, "name", "id", "driver", "type", "scope", "label", "label!", "dangling")
	if err != nil {
		writeError(w, err)
		return
	}
	nets, _, err := store.List[model.Network](r.Context(), s.Store, model.KindNetwork, tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	def, err := s.defaultNetwork(r.Context(), tenant, false)
	if err != nil {
		writeError(w, err)
		return
	}
	all := []*network.Inspect{def}
	for _, n := range nets {
		all = append(all, networkView(n))
	}
	// A user network dangles when no container is attached to it.
	inUse := map[string]bool{}
	if len(f["dangling"]) > 0 {
		pods, _, err := store.List[model.Pod](r.Context(), s.Store, model.KindPod, tenant)
		if err != nil {
			writeError(w, err)
			return
		}
		for _, p := range pods {
			for _, at := range p.Spec.Attachments {
				inUse[at.Network] = true
			}
		}
	}
	match := f.match
	out := []network.Summary{}
	for _, n := range all {
		builtin := n.ID == defaultNetworkID
		ok := match("name", func(v string) bool { return strings.Contains(n.Name, v) }) &&
			match("id", func(v string) bool { return strings.HasPrefix(n.ID, v) }) &&
			match("driver", func(v string) bool { return v == n.Driver }) &&
			match("type", func(v string) bool { return (v == "builtin") == builtin }) &&
			match("scope", func(v string) bool { return v == n.Scope }) &&
			match("dangling", func(v string) bool { return (v == "true" || v == "1") == (!builtin && !inUse[n.ID]) }) &&
			f.matchLabels(n.Labels)
		if ok {
			out = append(out, network.Summary{Network: n.Network})
		}
	}
	// The default network first, then by name.
	sort.SliceStable(out, func(i, j int) bool {
		if bi, bj := out[i].ID == defaultNetworkID, out[j].ID == defaultNetworkID; bi != bj {
			return bi
		}
		return out[i].Name < out[j].Name
	})
	writeJSON(w, http.StatusOK, out)
}

// removeNetwork is DELETE /networks/{id}.
func (s *Server) removeNetwork(w http.ResponseWriter, r *http.Request, tenant string) {
	n, err := s.resolveNetwork(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if n == nil {
		writeError(w, errdefs.PermissionDenied("%s is a pre-defined network and cannot be removed", defaultNetworkName))
		return
	}
	if err := s.deleteNetwork(r.Context(), n); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteNetwork removes a network no pod uses.
func (s *Server) deleteNetwork(ctx context.Context, n *model.Network) error {
	if s.Networks == nil {
		return errdefs.Unavailable("networks are not served here")
	}
	if err := s.Networks.DeleteNetwork(ctx, n); err != nil {
		if errdefs.IsNotFound(err) {
			return errdefs.NotFound("network %s not found", n.Alias)
		}
		return err
	}
	s.emit(n.Tenant, events.NetworkEventType, events.ActionDestroy, n.Name, map[string]string{"name": n.Alias, "type": "bridge"})
	return nil
}

// pruneNetworks is POST /networks/prune: every user-defined network no
// container uses.
func (s *Server) pruneNetworks(w http.ResponseWriter, r *http.Request, tenant string) {
	f, err := parseFilters(r, "until", "label", "label!")
	if err != nil {
		writeError(w, err)
		return
	}
	until, err := f.until(time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	nets, _, err := store.List[model.Network](r.Context(), s.Store, model.KindNetwork, tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	report := network.PruneReport{NetworksDeleted: []string{}}
	for _, n := range nets {
		if (!until.IsZero() && !n.CreatedAt.Before(until)) || !f.matchLabels(n.Labels) {
			continue
		}
		if err := s.deleteNetwork(r.Context(), n); err == nil {
			report.NetworksDeleted = append(report.NetworksDeleted, n.Alias)
		} else if !errdefs.IsConflict(err) {
			writeError(w, err)
			return
		}
	}
	s.emit(tenant, events.NetworkEventType, events.ActionPrune, "", map[string]string{"reclaimed": "0"})
	writeJSON(w, http.StatusOK, report)
}

// defaultNetwork describes the bridge, with the tenant's running
// containers on it when withContainers.
func (s *Server) defaultNetwork(ctx context.Context, tenant string, withContainers bool) (*network.Inspect, error) {
	n := &network.Inspect{
		Network: network.Network{
			Name: defaultNetworkName, ID: defaultNetworkID, Created: time.Unix(0, 0).UTC(),
			Scope: "local", Driver: "bridge", EnableIPv4: true,
			IPAM:    network.IPAM{Driver: "default", Options: map[string]string{}},
			Options: map[string]string{}, Labels: map[string]string{},
		},
		Containers: map[string]network.EndpointResource{},
	}
	if s.Bridge.Subnet.IsValid() {
		n.IPAM.Config = []network.IPAMConfig{{Subnet: s.Bridge.Subnet, Gateway: s.Bridge.Gateway}}
	}
	if !withContainers {
		return n, nil
	}
	cs, err := s.containers(ctx, tenant)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		ep := c.networks()[defaultNetworkName]
		if !ep.IPAddress.IsValid() {
			continue
		}
		n.Containers[c.ID()] = network.EndpointResource{
			Name: c.pod.Alias, EndpointID: ep.EndpointID,
			IPv4Address: netip.PrefixFrom(ep.IPAddress, ep.IPPrefixLen),
		}
	}
	return n, nil
}

// connectNetwork is POST /networks/{id}/connect. A running container
// joins at once: its pod's node plugs one of the VM's spare NICs.
func (s *Server) connectNetwork(w http.ResponseWriter, r *http.Request, tenant string) {
	var req network.ConnectRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		writeError(w, errdefs.InvalidArgument("invalid JSON: %v", err))
		return
	}
	at := model.Attachment{}
	if ep := req.EndpointConfig; ep != nil {
		if ep.IPAMConfig != nil && ep.IPAMConfig.IPv4Address.IsValid() {
			at.IP = ep.IPAMConfig.IPv4Address.String()
		}
		for _, a := range ep.Aliases {
			if !store.ValidAlias(a) || strings.ContainsAny(a, " \t") {
				writeError(w, errdefs.InvalidArgument("invalid network alias %q", a))
				return
			}
			at.Aliases = append(at.Aliases, a)
		}
	}
	err := s.changeNetworks(r.Context(), tenant, r.PathValue("id"), req.Container, func(c *ctr, n *model.Network, p *model.Pod) error {
		for _, have := range p.Spec.Attachments {
			if have.Network == n.Name {
				return errdefs.PermissionDenied("endpoint with name %s already exists in network %s", p.Alias, n.Alias)
			}
		}
		at.Network = n.Name
		p.Spec.Attachments = append(p.Spec.Attachments, at)
		// Its address, checked against the tenant's other pods.
		return s.Networks.Assign(context.WithoutCancel(r.Context()), p)
	})
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// disconnectNetwork is POST /networks/{id}/disconnect.
func (s *Server) disconnectNetwork(w http.ResponseWriter, r *http.Request, tenant string) {
	var req network.DisconnectRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		writeError(w, errdefs.InvalidArgument("invalid JSON: %v", err))
		return
	}
	err := s.changeNetworks(r.Context(), tenant, r.PathValue("id"), req.Container, func(c *ctr, n *model.Network, p *model.Pod) error {
		i := slices.IndexFunc(p.Spec.Attachments, func(at model.Attachment) bool { return at.Network == n.Name })
		if i < 0 {
			return errdefs.InvalidArgument("container %s is not connected to network %s", c.ID(), n.Alias)
		}
		if len(p.Spec.Attachments) == 1 {
			return errdefs.InvalidArgument("container %s would be on no network: a container here keeps at least one (connect it to another first)", c.Name())
		}
		p.Spec.Attachments = slices.Delete(p.Spec.Attachments, i, i+1)
		return nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// networkChangeTimeout bounds the wait for a running pod's node to plug
// or unplug its NIC.
const networkChangeTimeout = time.Minute

// changeNetworks applies change to the attachments of a container's pod
// under its tenant's lock, keeps the names of its networks for Docker,
// and, when the pod runs, waits until its node has changed its NICs
// (undoing the change when it could not).
func (s *Server) changeNetworks(ctx context.Context, tenant, netRef, ctrRef string, change func(*ctr, *model.Network, *model.Pod) error) error {
	if s.Networks == nil {
		return errdefs.Unavailable("networks are not served here")
	}
	n, err := s.resolveNetwork(ctx, tenant, netRef)
	if err != nil {
		return err
	}
	c, err := s.resolve(ctx, tenant, ctrRef)
	if err != nil {
		return err
	}
	if n == nil || len(c.pod.Spec.Attachments) == 0 {
		return errdefs.InvalidArgument("container %s and the default network %s: a container joins or leaves it only when it is created (docker run --network)", c.Name(), defaultNetworkName)
	}
	var before []model.Attachment
	var updated *model.Pod
	// apply changes the pod's attachments under the tenant's lock and
	// keeps the names Docker shows of its networks.
	apply := func(change func(p *model.Pod) error) (*model.Pod, error) {
		var out *model.Pod
		err := s.Store.Locked(ctx, store.TenantLock(tenant), func() (err error) {
			out, err = store.Modify[model.Pod](ctx, s.Store, model.KindPod, tenant, c.ID(), func(p *model.Pod) (bool, error) {
				if err := change(p); err != nil {
					return false, err
				}
				nets := map[string]netInfo{}
				for _, at := range p.Spec.Attachments {
					info, ok := c.nets[at.Network]
					if at.Network == n.Name {
						info, ok = netInfo{Name: n.Alias, Subnet: n.Spec.Subnet, Gateway: n.Spec.Gateway}, true
					}
					if ok {
						nets[at.Network] = info
					}
				}
				b, err := json.Marshal(nets)
				if err != nil {
					return false, err
				}
				p.Annotations[annNetworks] = string(b)
				return true, nil
			})
			return err
		})
		return out, err
	}
	updated, err = apply(func(p *model.Pod) error {
		before = slices.Clone(p.Spec.Attachments)
		return change(c, n, p)
	})
	if err != nil {
		return err
	}
	joined := len(updated.Spec.Attachments) > len(before)
	action := events.ActionDisconnect
	if joined {
		action = events.ActionConnect
	}
	if updated.Status.Phase == model.PhaseRunning && updated.Status.CradleID != "" {
		wctx, cancel := context.WithTimeout(ctx, networkChangeTimeout)
		p, err := store.WaitFor[model.Pod](wctx, s.Store, model.KindPod, tenant, c.ID(), func(p *model.Pod) bool {
			return p == nil || p.Status.NetworksSynced >= updated.Generation || p.Status.Phase != model.PhaseRunning
		})
		cancel()
		switch {
		case err != nil:
			return errdefs.Unavailable("container %s did not change networks within %s: its node may be busy or gone", c.Name(), networkChangeTimeout)
		case p != nil && p.Status.NetworksSynced >= updated.Generation && p.Status.NetworksError != "":
			// Undo just this change, so that the spec says what the VM
			// has: a network joined is left, one left is joined again
			// (with its address, unless another pod took it since).
			i := slices.IndexFunc(before, func(at model.Attachment) bool { return at.Network == n.Name })
			_, uerr := apply(func(p *model.Pod) error {
				p.Spec.Attachments = slices.DeleteFunc(p.Spec.Attachments, func(at model.Attachment) bool { return at.Network == n.Name })
				if !joined && i >= 0 {
					p.Spec.Attachments = append(p.Spec.Attachments, before[i])
					return s.Networks.Assign(context.WithoutCancel(ctx), p)
				}
				return nil
			})
			if uerr != nil && s.Log != nil {
				s.Log.Warn("undo a network change that failed", "container", c.ID(), "network", n.Alias, "err", uerr)
			}
			return errdefs.Conflict("%s", p.Status.NetworksError)
		}
	}
	s.emit(tenant, events.NetworkEventType, action, n.Name, map[string]string{"container": c.ID(), "name": n.Alias, "type": "bridge"})
	return nil
}
