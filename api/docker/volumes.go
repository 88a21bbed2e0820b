package docker

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/events"
	dvolume "github.com/moby/moby/api/types/volume"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
	"github.com/hearth-cloud/hearth/volume"
)

// Volumes: each Docker volume is a macro VolumeObject whose alias is its
// name, kept by package volume; containers refer to them by pod volumes
// of type "volume".
func (s *Server) volumeRoutes(handle handleFunc) {
	handle("GET /volumes", s.listVolumes)
	handle("POST /volumes/create", s.createVolume)
	handle("GET /volumes/{name}", s.inspectVolume)
	handle("PUT /volumes/{name}", func(w http.ResponseWriter, r *http.Request, tenant string) {
		vm, err := s.volumes()
		if err == nil {
			_, err = vm.Get(r.Context(), tenant, r.PathValue("name"))
		}
		if err == nil {
			err = errdefs.InvalidArgument("volume update is only supported for cluster volumes")
		}
		writeError(w, err)
	})
	handle("DELETE /volumes/{name}", s.removeVolume)
	handle("POST /volumes/prune", s.pruneVolumes)
}

// volumeNameRE is what Docker's local driver accepts as a volume name.
var volumeNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func validVolumeName(name string) error {
	if !volumeNameRE.MatchString(name) || len(name) > 253 {
		return errdefs.InvalidArgument("create %s: %q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path", name, name)
	}
	return nil
}

func (s *Server) volumes() (*volume.Manager, error) {
	if s.Volumes == nil {
		return nil, errdefs.Unavailable("volumes are not served here")
	}
	return s.Volumes, nil
}

// createVolume is POST /volumes/create. As Docker, a name in use
// answers with the existing volume.
func (s *Server) createVolume(w http.ResponseWriter, r *http.Request, tenant string) {
	vm, err := s.volumes()
	if err != nil {
		writeError(w, err)
		return
	}
	var req dvolume.CreateRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody)).Decode(&req); err != nil {
		writeError(w, errdefs.InvalidArgument("invalid JSON: %v", err))
		return
	}
	switch {
	case req.ClusterVolumeSpec != nil:
		writeError(w, errdefs.InvalidArgument("cluster volumes are not supported"))
		return
	case req.Driver != "" && req.Driver != "local":
		writeError(w, errdefs.NotFound("error looking up volume plugin %s: plugin %q not found", req.Driver, req.Driver))
		return
	}
	if req.Name == "" {
		req.Name = volume.NewName()
	}
	if err := validVolumeName(req.Name); err != nil {
		writeError(w, err)
		return
	}
	for k := range req.Labels {
		if k == "" {
			writeError(w, errdefs.InvalidArgument("invalid label: empty key"))
			return
		}
	}
	v, err := vm.New(tenant, req.Name, req.Labels, req.DriverOpts)
	if err != nil {
		writeError(w, err)
		return
	}
	err = vm.Create(r.Context(), v)
	if errdefs.IsAlreadyExists(err) {
		if v, err = vm.Get(r.Context(), tenant, req.Name); err == nil {
			writeJSON(w, http.StatusCreated, s.volumeJSON(v))
			return
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	s.emit(tenant, events.VolumeEventType, events.ActionCreate, v.Alias, map[string]string{"driver": "local"})
	writeJSON(w, http.StatusCreated, s.volumeJSON(v))
}

// volumeJSON is Docker's view of a volume.
func (s *Server) volumeJSON(v *model.VolumeObject) dvolume.Volume {
	labels := v.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	opts := v.Spec.Options
	if opts == nil {
		opts = map[string]string{}
	}
	kind := "disk"
	if v.Spec.Shared {
		kind = "shared"
	}
	return dvolume.Volume{
		Name: v.Alias, Driver: "local", Scope: "local", Labels: labels, Options: opts,
		CreatedAt:  v.CreatedAt.UTC().Format(time.RFC3339),
		Mountpoint: volume.Path(s.DataDir, v.Tenant, v.Name, v.Spec.Shared),
		Status: map[string]any{
			"Node": v.Spec.Node, "Size": v.Spec.SizeBytes, "Type": kind,
			// A disk has one writer; a shared directory may have many.
			"SharedWriters": v.Spec.Shared,
		},
	}
}

// inspectVolume is GET /volumes/{name}.
func (s *Server) inspectVolume(w http.ResponseWriter, r *http.Request, tenant string) {
	vm, err := s.volumes()
	if err != nil {
		writeError(w, err)
		return
	}
	v, err := vm.Get(r.Context(), tenant, r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s.volumeJSON(v))
}

// tenantVolumes lists the tenant's volumes with the pods that use them.
func (s *Server) tenantVolumes(ctx context.Context, tenant string) ([]*model.VolumeObject, map[string]int, error) {
	vols, _, err := store.List[model.VolumeObject](ctx, s.Store, model.KindVolume, tenant)
	if err != nil {
		return nil, nil, err
	}
	pods, _, err := store.List[model.Pod](ctx, s.Store, model.KindPod, tenant)
	if err != nil {
		return nil, nil, err
	}
	refs := map[string]int{}
	for _, v := range vols {
		refs[v.Name] = len(volume.Users(pods, v.Name))
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].Alias < vols[j].Alias })
	return vols, refs, nil
}

// listVolumes is GET /volumes.
func (s *Server) listVolumes(w http.ResponseWriter, r *http.Request, tenant string) {
	f, err := parseFilters(r, "dangling", "driver", "label", "label!", "name")
	if err != nil {
		writeError(w, err)
		return
	}
	for _, d := range f["dangling"] {
		if _, err := strconv.ParseBool(d); err != nil {
			writeError(w, errdefs.InvalidArgument("invalid filter 'dangling=%s'", d))
			return
		}
	}
	vols, refs, err := s.tenantVolumes(r.Context(), tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	out := dvolume.ListResponse{Volumes: []dvolume.Volume{}, Warnings: []string{}}
	for _, v := range vols {
		match := f.match
		ok := match("name", func(n string) bool { return strings.Contains(v.Alias, n) }) &&
			match("driver", func(d string) bool { return d == "local" }) &&
			match("dangling", func(d string) bool { b, _ := strconv.ParseBool(d); return b == (refs[v.Name] == 0) }) &&
			f.matchLabels(v.Labels)
		if ok {
			out.Volumes = append(out.Volumes, s.volumeJSON(v))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// removeVolume is DELETE /volumes/{name}; force makes a missing volume
// no error, but never removes one in use.
func (s *Server) removeVolume(w http.ResponseWriter, r *http.Request, tenant string) {
	vm, err := s.volumes()
	if err != nil {
		writeError(w, err)
		return
	}
	v, err := vm.Get(r.Context(), tenant, r.PathValue("name"))
	if err == nil {
		err = s.deleteVolume(r.Context(), v)
	}
	if err != nil && !(errdefs.IsNotFound(err) && boolParam(r, "force")) {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) deleteVolume(ctx context.Context, v *model.VolumeObject) error {
	if err := s.Volumes.Delete(ctx, v); err != nil {
		return err
	}
	s.emit(v.Tenant, events.VolumeEventType, events.ActionDestroy, v.Alias, map[string]string{"driver": "local"})
	return nil
}

// pruneVolumes is POST /volumes/prune: the volumes no container uses,
// only anonymous ones unless the filter all is true (API 1.42 and
// later, as Docker).
func (s *Server) pruneVolumes(w http.ResponseWriter, r *http.Request, tenant string) {
	if _, err := s.volumes(); err != nil {
		writeError(w, err)
		return
	}
	f, err := parseFilters(r, "label", "label!", "all")
	if err != nil {
		writeError(w, err)
		return
	}
	all := versionLess(requestVersion(r), "1.42")
	for _, a := range f["all"] {
		b, err := strconv.ParseBool(a)
		if err != nil {
			writeError(w, errdefs.InvalidArgument("invalid filter 'all=%s': invalid value", a))
			return
		}
		all = b
	}
	vols, refs, err := s.tenantVolumes(r.Context(), tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	report := dvolume.PruneReport{VolumesDeleted: []string{}}
	for _, v := range vols {
		_, anon := v.Labels[volume.LabelAnonymous]
		if refs[v.Name] > 0 || (!all && !anon) || !f.matchLabels(v.Labels) {
			continue
		}
		size := volume.Usage(s.DataDir, v)
		if err := s.deleteVolume(r.Context(), v); err == nil {
			report.VolumesDeleted = append(report.VolumesDeleted, v.Alias)
			if size > 0 {
				report.SpaceReclaimed += uint64(size)
			}
		} else if !errdefs.IsConflict(err) && !errdefs.IsNotFound(err) {
			writeError(w, err)
			return
		}
	}
	s.emit(tenant, events.VolumeEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(report.SpaceReclaimed, 10)})
	writeJSON(w, http.StatusOK, report)
}

// volumeUsage is the volumes part of /system/df.
func (s *Server) volumeUsage(ctx context.Context, tenant string) ([]dvolume.Volume, error) {
	out := []dvolume.Volume{}
	if s.Volumes == nil {
		return out, nil
	}
	vols, refs, err := s.tenantVolumes(ctx, tenant)
	if err != nil {
		return nil, err
	}
	for _, v := range vols {
		j := s.volumeJSON(v)
		size := int64(-1)
		if v.Spec.Node == s.Node {
			size = volume.Usage(s.DataDir, v)
			if size < 0 {
				size = 0 // not used yet: no file
			}
		}
		j.UsageData = &dvolume.UsageData{Size: size, RefCount: int64(refs[v.Name])}
		out = append(out, j)
	}
	return out, nil
}
