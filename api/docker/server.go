// Package docker is the Docker Engine API frontend: the docker CLI, docker
// compose and moby's Go client talk to it as to a Docker daemon. Every
// container is a macro pod with one container, created, scheduled and run
// through macro and the node agent; its streams (logs, attach, exec,
// copies, stats) go through the data path to the pod's supervisor, on
// whichever node it runs. The JSON is moby's own API types, and errors
// carry Docker's messages and HTTP codes.
package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/datapath"
	"github.com/hearth-cloud/hearth/macro/store"
	"github.com/hearth-cloud/hearth/network/ipam"
	"github.com/hearth-cloud/hearth/tenancy"
	"github.com/hearth-cloud/hearth/volume"
)

// API versions served. The docker CLI 28.x speaks 1.50 and negotiates
// down to what /_ping reports.
const (
	APIVersion    = "1.50"
	MinAPIVersion = "1.24"
)

// maxBody bounds a JSON request body.
const maxBody = 4 << 20

// AdminTenant owns what the admin's socket creates.
const AdminTenant = tenancy.Admin

// Server serves the Docker Engine API.
type Server struct {
	Store  *store.Store
	Images *image.Service
	// Pods reaches pods' supervisors, on this node or another.
	Pods *datapath.Locator
	// Node is this node's name, and NCPU/MemTotal its size, for /info.
	Node     string
	NCPU     int
	MemTotal int64
	// DataDir is the node's data directory, Docker's root dir in /info.
	DataDir string
	// Networks creates user-defined networks with their subnets.
	Networks *ipam.Allocator
	// Volumes keeps the tenants' named volumes.
	Volumes *volume.Manager
	// Bridge is the node's default network, Docker's "bridge".
	Bridge struct {
		Subnet  netip.Prefix
		Gateway netip.Addr
	}
	Log *slog.Logger
	// Tenant names the tenant a request acts for.
	Tenant func(r *http.Request) (string, error)
	// Audit logs every call; nil logs none.
	Audit *tenancy.Audit
	// ConnState, when set, is the HTTP servers' connection hook.
	ConnState func(net.Conn, http.ConnState)

	gate    attachGate
	events  *eventBus
	execs   execTable
	streams streamTable

	mu   sync.Mutex
	srvs []*http.Server
}

// Handler is the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	if s.events == nil {
		s.events = newEventBus()
	}
	mux := http.NewServeMux()
	handle := func(pattern string, h func(w http.ResponseWriter, r *http.Request, tenant string)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if s.Log != nil {
				s.Log.Debug("docker API", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery)
			}
			tenant, err := AdminTenant, error(nil)
			if s.Tenant != nil {
				tenant, err = s.Tenant(r)
			}
			s.Audit.Call("docker", tenant, w, r, func(w http.ResponseWriter) {
				if err != nil {
					writeError(w, err)
					return
				}
				h(w, r, tenant)
			})
		})
	}
	s.systemRoutes(handle)
	s.containerRoutes(handle)
	s.vmRoutes(handle)
	s.streamRoutes(handle)
	s.imageRoutes(handle)
	s.networkRoutes(handle)
	s.volumeRoutes(handle)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errdefs.NotFound("page not found"))
	})
	return withVersion(mux)
}

var versionRE = regexp.MustCompile(`^/v([0-9]+\.[0-9]+)(/.*)$`)

type versionKey struct{}

// withVersion strips the /vX.Y prefix, refuses versions out of range, and
// sets the headers every Docker answer carries.
func withVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Api-Version", APIVersion)
		h.Set("Docker-Experimental", "false")
		h.Set("Ostype", "linux")
		h.Set("Server", "Hearth (linux)")
		version := APIVersion
		if m := versionRE.FindStringSubmatch(r.URL.Path); m != nil {
			version = m[1]
			r.URL.Path = m[2]
			r.URL.RawPath = ""
			switch {
			case versionLess(APIVersion, version):
				writeError(w, errdefs.InvalidArgument("client version %s is too new. Maximum supported API version is %s", version, APIVersion))
				return
			case versionLess(version, MinAPIVersion):
				writeError(w, errdefs.InvalidArgument("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", version, MinAPIVersion))
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), versionKey{}, version)))
	})
}

// requestVersion is the API version a request speaks.
func requestVersion(r *http.Request) string {
	if v, ok := r.Context().Value(versionKey{}).(string); ok {
		return v
	}
	return APIVersion
}

// versionLess compares API versions "1.24" < "1.50".
func versionLess(a, b string) bool {
	pa, pb := strings.SplitN(a, ".", 2), strings.SplitN(b, ".", 2)
	for i := 0; i < 2; i++ {
		x, _ := strconv.Atoi(at(pa, i))
		y, _ := strconv.Atoi(at(pb, i))
		if x != y {
			return x < y
		}
	}
	return false
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

// Serve listens on a unix socket (replacing a stale one) and serves
// until Close.
func (s *Server) Serve(path string) error {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("docker API: %w", err)
	}
	os.Chmod(path, 0o660)
	s.ServeListener(ln)
	return nil
}

// ServeListener serves on ln until Close.
func (s *Server) ServeListener(ln net.Listener) {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 30 * time.Second, ConnState: s.ConnState}
	s.mu.Lock()
	s.srvs = append(s.srvs, srv)
	s.mu.Unlock()
	go srv.Serve(ln)
}

// Close stops serving, and ends the streams in flight.
func (s *Server) Close() {
	s.mu.Lock()
	srvs := s.srvs
	s.srvs = nil
	s.mu.Unlock()
	for _, srv := range srvs {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		srv.Shutdown(ctx)
		cancel()
		srv.Close()
	}
	if s.events != nil {
		s.events.close()
	}
}

// Docker's answers.

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// notModified answers 304, Docker's "already in that state".
type notModified struct{}

func (notModified) Error() string { return "not modified" }

var errNotModified error = notModified{}

// writeError answers with Docker's status for err and its message.
func writeError(w http.ResponseWriter, err error) {
	if errors.Is(err, errNotModified) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	code := statusOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"message": err.Error()})
}

// statusOf maps an error class to Docker's HTTP status.
func statusOf(err error) int {
	var ce *spec.CallError
	if errors.As(err, &ce) {
		switch ce.Kind {
		case spec.ErrNotFound:
			return http.StatusNotFound
		case spec.ErrInvalid:
			return http.StatusBadRequest
		case spec.ErrConflict:
			return http.StatusConflict
		case spec.ErrUnavailable:
			return http.StatusServiceUnavailable
		}
	}
	switch {
	case errdefs.IsNotFound(err):
		return http.StatusNotFound
	case errdefs.IsAlreadyExists(err), errdefs.IsConflict(err), errors.Is(err, errdefs.ErrFailedPrecondition):
		return http.StatusConflict
	case errors.Is(err, errdefs.ErrInvalidArgument):
		return http.StatusBadRequest
	case errors.Is(err, errdefs.ErrPermissionDenied):
		return http.StatusForbidden
	case errdefs.IsUnauthenticated(err):
		return http.StatusUnauthorized
	case errors.Is(err, errdefs.ErrUnavailable):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// readJSON decodes a request body into v; an empty body leaves v as it is.
func readJSON(r *http.Request, v any) error {
	body := http.MaxBytesReader(nil, r.Body, maxBody)
	dec := json.NewDecoder(body)
	if err := dec.Decode(v); err != nil {
		if err == io.EOF {
			return nil
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errdefs.InvalidArgument("request body is larger than %d bytes", maxBody)
		}
		return errdefs.InvalidArgument("invalid JSON: %v", err)
	}
	return nil
}

// boolParam reads a Docker boolean query parameter ("1", "true", "True").
func boolParam(r *http.Request, name string) bool {
	v := strings.ToLower(r.URL.Query().Get(name))
	return v == "1" || v == "true" || v == "yes"
}

// intParam reads an integer query parameter, def when absent.
func intParam(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errdefs.InvalidArgument("invalid value for %s: %q is not an integer", name, v)
	}
	return n, nil
}

// flush sends what is buffered, for streaming answers.
func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}
