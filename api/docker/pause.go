package docker

import (
	"net/http"

	"github.com/moby/moby/api/types/container"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

func (s *Server) vmRoutes(handle handleFunc) {
	handle("POST /containers/{id}/pause", func(w http.ResponseWriter, r *http.Request, tenant string) {
		s.setPaused(w, r, tenant, true)
	})
	handle("POST /containers/{id}/unpause", func(w http.ResponseWriter, r *http.Request, tenant string) {
		s.setPaused(w, r, tenant, false)
	})
	handle("GET /containers/{id}/top", s.top)
}

// setPaused freezes or thaws the container's VM: its QEMU process stops,
// which is what pausing a whole microVM means. The pod's status carries
// the pause, so that every frontend shows it.
func (s *Server) setPaused(w http.ResponseWriter, r *http.Request, tenant string, pause bool) {
	ctx := r.Context()
	c, err := s.resolve(ctx, tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	switch st := c.state(); {
	case st != stateRunning && st != statePaused:
		writeError(w, errdefs.Conflict("Container %s is not running", c.ID()))
		return
	case pause && st == statePaused:
		writeError(w, errdefs.Conflict("Container %s is already paused", c.ID()))
		return
	case !pause && st != statePaused:
		writeError(w, errdefs.Conflict("Container %s is not paused", c.ID()))
		return
	}
	cl := s.Pods.Client(ctx, tenant, c.ID())
	if pause {
		err = cl.Pause()
	} else {
		err = cl.Resume()
	}
	if err != nil {
		writeError(w, err)
		return
	}
	uid := c.pod.UID
	_, err = store.Modify[model.Pod](ctx, s.Store, model.KindPod, tenant, c.ID(), func(p *model.Pod) (bool, error) {
		if p.UID != uid || p.Status.Phase != model.PhaseRunning {
			return false, store.ErrSkip
		}
		p.Status.Reason = ""
		if pause {
			p.Status.Reason = reasonPaused
		}
		return false, nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// top is GET /containers/{id}/top. The guest lists the container's
// processes as `ps -ef` does; other ps arguments have no ps to run them.
func (s *Server) top(w http.ResponseWriter, r *http.Request, tenant string) {
	ctx := r.Context()
	c, err := s.resolve(ctx, tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if a := r.URL.Query().Get("ps_args"); a != "" && a != "-ef" {
		writeError(w, errdefs.InvalidArgument("ps_args %q are not supported: Hearth lists processes as `ps -ef` does", a))
		return
	}
	switch c.state() {
	case stateRunning:
	case statePaused:
		writeError(w, errdefs.Conflict("Container %s is paused, unpause the container to list its processes", c.ID()))
		return
	default:
		writeError(w, errdefs.Conflict("Container %s is not running", c.ID()))
		return
	}
	pl, err := s.Pods.Client(ctx, tenant, c.ID()).Top(mainContainer)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, container.TopResponse{Titles: pl.Titles, Processes: pl.Processes})
}
