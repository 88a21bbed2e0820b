package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/hearth-cloud/hearth/cradle/shim"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
)

func (s *Server) copyRoutes(handle handleFunc) {
	handle("HEAD /containers/{id}/archive", s.statPath)
	handle("GET /containers/{id}/archive", s.getArchive)
	handle("PUT /containers/{id}/archive", s.putArchive)
	handle("GET /containers/{id}/stats", s.containerStats)
}

// runningFor resolves a container for a call into its running VM.
func (s *Server) runningFor(ctx context.Context, tenant, ref, what string) (*ctr, error) {
	c, err := s.resolve(ctx, tenant, ref)
	if err != nil {
		return nil, err
	}
	if c.pod.Status.Phase != model.PhaseRunning {
		return nil, errdefs.Conflict("%s a stopped container is not supported yet: container %s is not running", what, c.ID())
	}
	return c, nil
}

// copyError turns a supervisor's answer about a path into Docker's.
func copyError(err error, c *ctr, path string) error {
	var ce *spec.CallError
	if errors.As(err, &ce) {
		switch ce.Kind {
		case spec.ErrNotFound:
			return errdefs.NotFound("Could not find the file %s in container %s", path, c.pod.Alias)
		case spec.ErrInvalid:
			return errdefs.InvalidArgument("%s", ce.Message)
		case spec.ErrConflict:
			return errdefs.Conflict("%s", ce.Message)
		}
	}
	return err
}

// pathStatHeader is the header Docker puts a path's stat in.
const pathStatHeader = "X-Docker-Container-Path-Stat"

func setStat(w http.ResponseWriter, st *spec.PathStat) error {
	b, err := json.Marshal(container.PathStat{Name: st.Name, Size: st.Size, Mode: os.FileMode(st.Mode), Mtime: st.Mtime, LinkTarget: st.LinkTarget})
	if err != nil {
		return err
	}
	w.Header().Set(pathStatHeader, base64.StdEncoding.EncodeToString(b))
	return nil
}

func archivePath(r *http.Request) (string, error) {
	p := r.URL.Query().Get("path")
	if p == "" {
		return "", errdefs.InvalidArgument("path is required")
	}
	return p, nil
}

// archiveTarget is what the archive calls start from: the path asked for,
// the running container, its supervisor and the path's stat.
type archiveTarget struct {
	path string
	c    *ctr
	cl   *shim.Client
	st   *spec.PathStat
}

func (s *Server) archiveTarget(r *http.Request, tenant, verb string) (*archiveTarget, error) {
	path, err := archivePath(r)
	if err != nil {
		return nil, err
	}
	c, err := s.runningFor(r.Context(), tenant, r.PathValue("id"), verb)
	if err != nil {
		return nil, err
	}
	cl := s.Pods.Client(r.Context(), tenant, c.ID())
	st, err := cl.PathStat(mainContainer, path)
	if err != nil {
		return nil, copyError(err, c, path)
	}
	return &archiveTarget{path: path, c: c, cl: cl, st: st}, nil
}

// statPath is HEAD /containers/{id}/archive.
func (s *Server) statPath(w http.ResponseWriter, r *http.Request, tenant string) {
	a, err := s.archiveTarget(r, tenant, "copying from")
	if err != nil {
		writeError(w, err)
		return
	}
	if err := setStat(w, a.st); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// getArchive is GET /containers/{id}/archive: a tar of the path.
func (s *Server) getArchive(w http.ResponseWriter, r *http.Request, tenant string) {
	a, err := s.archiveTarget(r, tenant, "copying from")
	if err != nil {
		writeError(w, err)
		return
	}
	if err := setStat(w, a.st); err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	if _, err := a.cl.ArchiveGet(mainContainer, a.path, w); err != nil {
		// The head has gone: all that is left is to cut the tar short.
		s.Log.Warn("copy from container", "container", a.c.ID()[:12], "path", a.path, "err", err)
		panic(http.ErrAbortHandler)
	}
	s.emit(tenant, "container", "archive-path", a.c.ID(), map[string]string{"name": a.c.pod.Alias, "path": a.path})
}

// putArchive is PUT /containers/{id}/archive: extract a tar into a
// directory.
func (s *Server) putArchive(w http.ResponseWriter, r *http.Request, tenant string) {
	a, err := s.archiveTarget(r, tenant, "copying to")
	if err != nil {
		writeError(w, err)
		return
	}
	if !os.FileMode(a.st.Mode).IsDir() {
		writeError(w, errdefs.InvalidArgument("extraction point is not a directory"))
		return
	}
	if err := a.cl.ArchivePut(mainContainer, a.path, r.Body); err != nil {
		writeError(w, copyError(err, a.c, a.path))
		return
	}
	s.emit(tenant, "container", "extract-to-dir", a.c.ID(), map[string]string{"name": a.c.pod.Alias, "path": a.path})
	w.WriteHeader(http.StatusOK)
}

// containerStats is GET /containers/{id}/stats: one sample, or one a
// second until the client leaves.
func (s *Server) containerStats(w http.ResponseWriter, r *http.Request, tenant string) {
	ctx := r.Context()
	c, err := s.resolve(ctx, tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	stream := r.URL.Query().Get("stream") == "" || boolParam(r, "stream")
	oneShot := boolParam(r, "one-shot")
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	var prev *container.StatsResponse
	sample := func() *container.StatsResponse {
		out := &container.StatsResponse{ID: c.ID(), Name: c.Name(), OSType: "linux", Read: time.Now().UTC()}
		if p := prev; p != nil {
			out.PreRead, out.PreCPUStats = p.Read, p.CPUStats
		}
		if c.pod.Status.Phase != model.PhaseRunning {
			return out
		}
		st, err := s.Pods.Client(ctx, tenant, c.ID()).Stats()
		if err != nil || len(st.Containers) == 0 {
			return out
		}
		cs := st.Containers[0]
		out.Read = st.Read.UTC()
		out.CPUStats = container.CPUStats{
			CPUUsage: container.CPUUsage{TotalUsage: cs.CPUNanos},
			// The VM's CPU time available: wall time across its vCPUs,
			// so that the CLI's percentage is of one CPU, as Docker's.
			SystemUsage: uint64(st.Read.Sub(c.pod.Status.StartedAt).Nanoseconds()) * uint64(st.CPUs),
			OnlineCPUs:  uint32(st.CPUs),
		}
		out.MemoryStats = container.MemoryStats{Usage: uint64(cs.MemoryBytes), Limit: uint64(cs.MemoryLimit), Stats: map[string]uint64{}}
		out.PidsStats = container.PidsStats{Current: uint64(cs.Pids)}
		out.NumProcs = uint32(cs.Pids)
		out.Networks = map[string]container.NetworkStats{"eth0": {
			RxBytes: st.Network.RxBytes, TxBytes: st.Network.TxBytes, RxPackets: st.Network.RxPackets, TxPackets: st.Network.TxPackets,
		}}
		return out
	}
	w.WriteHeader(http.StatusOK)
	if !stream {
		cur := sample()
		if !oneShot {
			prev = cur
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return
			}
			cur = sample()
		}
		enc.Encode(cur)
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		cur := sample()
		if enc.Encode(cur) != nil {
			return
		}
		flush(w)
		prev = cur
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
		// Follow the container: it may stop (zeros) or start again.
		if nc, err := s.resolve(ctx, tenant, c.ID()); err == nil {
			c = nc
		} else {
			return
		}
	}
}
