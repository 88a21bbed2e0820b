package docker

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/moby/moby/api/types/network"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Networks. Until user-defined networks arrive, there is Docker's default
// network, "bridge", which every container is on: it can be listed and
// inspected, and the calls that would make or change networks are refused.
func (s *Server) networkRoutes(handle handleFunc) {
	handle("GET /networks", s.listNetworks)
	handle("GET /networks/{id}", func(w http.ResponseWriter, r *http.Request, tenant string) {
		if !s.isDefaultNetwork(r.PathValue("id")) {
			writeError(w, errdefs.NotFound("network %s not found", r.PathValue("id")))
			return
		}
		n, err := s.defaultNetwork(r.Context(), tenant, true)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, n)
	})
	notYet := func(w http.ResponseWriter, r *http.Request, tenant string) {
		writeError(w, errdefs.InvalidArgument("user-defined networks are not supported yet: containers use the default network, bridge"))
	}
	handle("POST /networks/create", notYet)
	handle("POST /networks/{id}/connect", notYet)
	handle("POST /networks/{id}/disconnect", notYet)
	handle("DELETE /networks/{id}", func(w http.ResponseWriter, r *http.Request, tenant string) {
		if s.isDefaultNetwork(r.PathValue("id")) {
			writeError(w, errdefs.PermissionDenied("%s is a pre-defined network and cannot be removed", defaultNetworkName))
			return
		}
		writeError(w, errdefs.NotFound("network %s not found", r.PathValue("id")))
	})
	handle("POST /networks/prune", func(w http.ResponseWriter, r *http.Request, tenant string) {
		if _, err := parseFilters(r, "until", "label", "label!"); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, network.PruneReport{NetworksDeleted: []string{}})
	})
}

// isDefaultNetwork matches the default network by name, ID or ID prefix.
func (s *Server) isDefaultNetwork(ref string) bool {
	return ref == defaultNetworkName || (ref != "" && strings.HasPrefix(defaultNetworkID, ref))
}

// listNetworks is GET /networks (docker network ls).
func (s *Server) listNetworks(w http.ResponseWriter, r *http.Request, tenant string) {
	f, err := parseFilters(r, "name", "id", "driver", "type", "scope", "label", "dangling")
	if err != nil {
		writeError(w, err)
		return
	}
	match := func(key string, fn func(string) bool) bool {
		return len(f[key]) == 0 || anyOf(f[key], fn)
	}
	ok := match("name", func(v string) bool { return strings.Contains(defaultNetworkName, v) }) &&
		match("id", func(v string) bool { return strings.HasPrefix(defaultNetworkID, v) }) &&
		match("driver", func(v string) bool { return v == "bridge" }) &&
		match("type", func(v string) bool { return v == "builtin" }) &&
		match("scope", func(v string) bool { return v == "local" }) &&
		match("dangling", func(v string) bool { return v == "false" || v == "0" }) &&
		f.matchLabels(nil)
	out := []network.Summary{}
	if ok {
		n, err := s.defaultNetwork(r.Context(), tenant, false)
		if err != nil {
			writeError(w, err)
			return
		}
		out = append(out, network.Summary{Network: n.Network})
	}
	writeJSON(w, http.StatusOK, out)
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
