// Package admin is the admin API: HTTP with JSON bodies on the node's unix
// socket (<run-dir>/hearth.sock), which only the admin can reach. It
// serves the cluster view of all tenants (nodes, pods, services) over
// macro's object model, and the `hearth node` and `hearth pod` commands
// are its client.
package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/errhttp"
	"github.com/hearth-cloud/hearth/macro/datapath"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
	"github.com/hearth-cloud/hearth/tenancy"
)

// maxBody bounds a request body.
const maxBody = 4 << 20

// Server serves the admin API.
type Server struct {
	Store *store.Store
	Log   *slog.Logger
	// JoinToken, when set, answers `hearth join-token`.
	JoinToken func() (string, error)
	// Pods reaches running pods' supervisors, on this node or another.
	Pods *datapath.Locator
	// Tenants manages tenants; DockerHost and KubeServer are where
	// tenants reach this cluster's APIs.
	Tenants    *tenancy.Manager
	DockerHost string
	KubeServer string
	// Audit logs every call; nil logs none.
	Audit *tenancy.Audit

	srv *http.Server
}

// Handler is the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if _, _, err := store.List[model.Node](ctx, s.Store, model.KindNode, ""); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		nodes, _, err := store.List[model.Node](r.Context(), s.Store, model.KindNode, "")
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, nodes)
	})
	mux.HandleFunc("GET /v1/nodes/{name}", func(w http.ResponseWriter, r *http.Request) {
		n, err := store.Get[model.Node](r.Context(), s.Store, model.KindNode, "", r.PathValue("name"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, n)
	})
	mux.HandleFunc("POST /v1/nodes/{name}/drain", func(w http.ResponseWriter, r *http.Request) {
		s.drain(w, r, r.PathValue("name"))
	})
	mux.HandleFunc("GET /v1/pods", func(w http.ResponseWriter, r *http.Request) {
		pods, _, err := store.List[model.Pod](r.Context(), s.Store, model.KindPod, r.URL.Query().Get("tenant"))
		if err != nil {
			writeError(w, err)
			return
		}
		sort.Slice(pods, func(i, j int) bool { return pods[i].CreatedAt.After(pods[j].CreatedAt) })
		writeJSON(w, http.StatusOK, pods)
	})
	mux.HandleFunc("POST /v1/pods", func(w http.ResponseWriter, r *http.Request) {
		var p model.Pod
		if !readJSON(w, r, &p) {
			return
		}
		p.Kind = model.KindPod
		defaults(&p.Spec)
		p.Spec.NodeName = ""
		p.Status = model.PodStatus{Phase: model.PhasePending}
		if err := p.Validate(); err != nil {
			writeError(w, errdefs.InvalidArgument("%v", err))
			return
		}
		if err := s.createPod(r.Context(), &p); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, &p)
	})
	mux.HandleFunc("GET /v1/pods/{tenant}/{name}", func(w http.ResponseWriter, r *http.Request) {
		p, err := store.Get[model.Pod](r.Context(), s.Store, model.KindPod, r.PathValue("tenant"), r.PathValue("name"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, p)
	})
	mux.HandleFunc("DELETE /v1/pods/{tenant}/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Store.Delete(r.Context(), model.KindPod, r.PathValue("tenant"), r.PathValue("name"), 0); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/pods/{tenant}/{name}/shim", func(w http.ResponseWriter, r *http.Request) {
		if s.Pods == nil {
			writeError(w, errdefs.FailedPrecondition("this node serves no pod streams"))
			return
		}
		conn, err := s.Pods.Conn(r.Context(), r.PathValue("tenant"), r.PathValue("name"))
		if err != nil {
			writeError(w, err)
			return
		}
		datapath.Splice(w, conn)
	})
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) {
		svcs, _, err := store.List[model.Service](r.Context(), s.Store, model.KindService, r.URL.Query().Get("tenant"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, svcs)
	})
	mux.HandleFunc("POST /v1/services", func(w http.ResponseWriter, r *http.Request) {
		var svc model.Service
		if !readJSON(w, r, &svc) {
			return
		}
		svc.Kind = model.KindService
		defaults(&svc.Spec.Template)
		if err := validateService(&svc); err != nil {
			writeError(w, errdefs.InvalidArgument("%v", err))
			return
		}
		if err := s.Store.Create(r.Context(), &svc); err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, &svc)
	})
	mux.HandleFunc("PUT /v1/services/{tenant}/{name}/replicas", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Replicas int }
		if !readJSON(w, r, &body) {
			return
		}
		if body.Replicas < 0 {
			writeError(w, errdefs.InvalidArgument("replicas must not be negative"))
			return
		}
		svc, err := store.Modify[model.Service](r.Context(), s.Store, model.KindService, r.PathValue("tenant"), r.PathValue("name"), func(svc *model.Service) (bool, error) {
			svc.Spec.Replicas = body.Replicas
			return false, nil
		})
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, svc)
	})
	mux.HandleFunc("DELETE /v1/services/{tenant}/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Store.Delete(r.Context(), model.KindService, r.PathValue("tenant"), r.PathValue("name"), 0); err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if s.Tenants != nil {
		s.tenantRoutes(mux)
	}
	mux.HandleFunc("GET /v1/join-token", func(w http.ResponseWriter, r *http.Request) {
		if s.JoinToken == nil {
			writeError(w, errdefs.FailedPrecondition("this node cannot issue join tokens"))
			return
		}
		tok, err := s.JoinToken()
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"token": tok})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.Audit.Call("admin", tenancy.Admin, w, r, func(w http.ResponseWriter) { mux.ServeHTTP(w, r) })
	})
}

// createPod stores a pod, within its tenant's quota: the admin places
// pods for tenants, and they count as the tenant's own.
func (s *Server) createPod(ctx context.Context, p *model.Pod) error {
	return tenancy.Admitted(ctx, s.Store, p.Tenant, tenancy.PodUsage(p, p.Spec.Desired == model.DesiredRunning),
		func() error { return s.Store.Create(ctx, p) })
}

// defaults fills what a pod spec may leave out.
func defaults(s *model.PodSpec) {
	if s.Resources.CPUs == 0 {
		s.Resources.CPUs = 1
	}
	if s.Resources.MemoryMiB == 0 {
		s.Resources.MemoryMiB = 512
	}
	if s.Restart.Policy == "" {
		s.Restart.Policy = model.RestartNo
	}
	if s.Desired == "" {
		s.Desired = model.DesiredRunning
	}
	for i := range s.Containers {
		if s.Containers[i].Name == "" {
			s.Containers[i].Name = fmt.Sprintf("c%d", i)
		}
	}
}

func validateService(svc *model.Service) error {
	if err := svc.Meta.Validate(model.KindService); err != nil {
		return err
	}
	if svc.Spec.Replicas < 0 {
		return fmt.Errorf("replicas must not be negative")
	}
	p := model.Pod{Meta: model.Meta{Kind: model.KindPod, Tenant: svc.Tenant, Name: svc.Name}, Spec: svc.Spec.Template}
	return p.Validate()
}

// drain marks a node unschedulable and sends its pods back to the
// scheduler, which places them elsewhere.
func (s *Server) drain(w http.ResponseWriter, r *http.Request, name string) {
	ctx := r.Context()
	if _, err := store.Modify[model.Node](ctx, s.Store, model.KindNode, "", name, func(n *model.Node) (bool, error) {
		n.Spec.Unschedulable = true
		return true, nil
	}); err != nil {
		writeError(w, err)
		return
	}
	pods, _, err := store.List[model.Pod](ctx, s.Store, model.KindPod, "")
	if err != nil {
		writeError(w, err)
		return
	}
	moved := 0
	for _, p := range pods {
		// Stopped pods stay where they are; the scheduler places only
		// pods that should run.
		if p.Spec.NodeName != name || model.Terminal(p.Status.Phase) || p.Spec.Desired != model.DesiredRunning {
			continue
		}
		_, err := store.Modify[model.Pod](ctx, s.Store, model.KindPod, p.Tenant, p.Name, func(p *model.Pod) (bool, error) {
			if p.Spec.NodeName != name {
				return false, store.ErrSkip
			}
			p.Unbind("Drained", "node "+name+" was drained")
			return true, nil
		})
		if err != nil {
			writeError(w, err)
			return
		}
		moved++
	}
	writeJSON(w, http.StatusOK, map[string]int{"moved": moved})
}

// Status maps an error class to an HTTP status.
func Status(err error) int {
	code, _ := errhttp.Status(err)
	return code
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) { errhttp.Write(w, err) }

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, errdefs.InvalidArgument("invalid JSON: %v", err))
		return false
	}
	return true
}

// Serve listens on the unix socket path (replacing a stale one) and
// serves until Close.
func (s *Server) Serve(path string) error {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	os.Chmod(path, 0o600)
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return nil
}

// Close stops serving.
func (s *Server) Close() {
	if s.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.srv.Shutdown(ctx)
	}
}
