package docker

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/hearth-cloud/hearth/cradle/shim"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
)

// execRecord is one `docker exec` instance: created, then started once.
type execRecord struct {
	id     string
	tenant string
	ctrID  string
	cfg    container.ExecCreateRequest
	keys   []byte

	mu      sync.Mutex
	started bool
	running bool
	exit    *int
	stream  *shim.Stream
	ended   time.Time
}

// execTable keeps exec instances in memory, as Docker does; ended ones
// are dropped after a while.
type execTable struct {
	mu sync.Mutex
	m  map[string]*execRecord
}

// execKeep is how long an ended exec stays inspectable.
const execKeep = 10 * time.Minute

func (t *execTable) add(e *execRecord) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]*execRecord{}
	}
	now := time.Now()
	for id, old := range t.m {
		old.mu.Lock()
		gone := !old.ended.IsZero() && now.Sub(old.ended) > execKeep
		old.mu.Unlock()
		if gone {
			delete(t.m, id)
		}
	}
	t.m[e.id] = e
}

func (t *execTable) get(tenant, id string) (*execRecord, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.m[id]
	if e == nil || e.tenant != tenant {
		return nil, errdefs.NotFound("No such exec instance: %s", id)
	}
	return e, nil
}

// forContainer lists a container's exec IDs.
func (t *execTable) forContainer(tenant, ctrID string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for id, e := range t.m {
		if e.tenant == tenant && e.ctrID == ctrID {
			out = append(out, id)
		}
	}
	return out
}

func (s *Server) execRoutes(handle handleFunc) {
	handle("POST /containers/{id}/exec", s.createExec)
	handle("POST /exec/{id}/start", s.startExec)
	handle("GET /exec/{id}/json", s.inspectExec)
	handle("POST /exec/{id}/resize", func(w http.ResponseWriter, r *http.Request, tenant string) {
		e, err := s.execs.get(tenant, r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		h, wd, err := windowSize(r)
		if err != nil {
			writeError(w, err)
			return
		}
		e.mu.Lock()
		st := e.stream
		e.mu.Unlock()
		if st == nil {
			writeError(w, errdefs.Conflict("exec %s is not running", e.id))
			return
		}
		st.Resize(h, wd)
		w.WriteHeader(http.StatusOK)
	})
}

// createExec is POST /containers/{id}/exec.
func (s *Server) createExec(w http.ResponseWriter, r *http.Request, tenant string) {
	var req container.ExecCreateRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	c, err := s.resolve(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	switch {
	case len(req.Cmd) == 0:
		err = errdefs.InvalidArgument("No exec command specified")
	case req.Privileged:
		err = errdefs.InvalidArgument("unsupported option(s): --privileged: Hearth does not support them (yet)")
	case c.state() == statePaused:
		err = errdefs.Conflict("Container %s is paused, unpause the container before exec", c.ID())
	case c.pod.Status.Phase != model.PhaseRunning:
		err = errdefs.Conflict("container %s is not running", c.ID())
	}
	if err != nil {
		writeError(w, err)
		return
	}
	for _, a := range append(append([]string(nil), req.Cmd...), req.Env...) {
		if strings.ContainsRune(a, 0) {
			writeError(w, errdefs.InvalidArgument("invalid exec argument %q", a))
			return
		}
	}
	keys, err := detachKeys(req.DetachKeys)
	if err != nil {
		writeError(w, err)
		return
	}
	e := &execRecord{id: newID(), tenant: tenant, ctrID: c.ID(), cfg: req, keys: keys}
	s.execs.add(e)
	s.emit(tenant, events.ContainerEventType, events.Action("exec_create: "+strings.Join(req.Cmd, " ")), c.ID(),
		map[string]string{"name": c.pod.Alias, "execID": e.id})
	writeJSON(w, http.StatusCreated, container.ExecCreateResponse{ID: e.id})
}

// startExec is POST /exec/{id}/start.
func (s *Server) startExec(w http.ResponseWriter, r *http.Request, tenant string) {
	var req container.ExecStartRequest
	if err := readJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	e, err := s.execs.get(tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	c, err := s.resolve(r.Context(), tenant, e.ctrID)
	if err != nil {
		writeError(w, err)
		return
	}
	if c.pod.Status.Phase != model.PhaseRunning {
		writeError(w, errdefs.Conflict("container %s is not running", c.ID()))
		return
	}
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		writeError(w, errdefs.Conflict("Error: Exec command %s has already run", e.id))
		return
	}
	e.started, e.running = true, true
	e.mu.Unlock()

	cfg := e.cfg
	tty := cfg.Tty || req.Tty
	proc := spec.Process{
		Args:      cfg.Cmd,
		Env:       image.MergeEnv(c.cfg.Env, cfg.Env),
		Cwd:       cfg.WorkingDir,
		User:      cfg.User,
		Terminal:  tty,
		OpenStdin: cfg.AttachStdin && !req.Detach,
	}
	if proc.Cwd == "" {
		proc.Cwd = c.cfg.WorkingDir
	}
	if proc.User == "" {
		proc.User = c.cfg.User
	}
	var size *spec.WindowSize
	if cs := req.ConsoleSize; cs != nil {
		size = &spec.WindowSize{Rows: uint16(cs[0]), Cols: uint16(cs[1])}
	} else if cs := cfg.ConsoleSize; cs != nil {
		size = &spec.WindowSize{Rows: uint16(cs[0]), Cols: uint16(cs[1])}
	}
	// The exec outlives this request when detached.
	ctx := context.Background()
	stream, err := s.Pods.Client(ctx, tenant, c.ID()).Exec(mainContainer, proc, size)
	if err != nil {
		e.finish(-1)
		writeError(w, err)
		return
	}
	e.mu.Lock()
	e.stream = stream
	e.mu.Unlock()
	s.emit(tenant, events.ContainerEventType, events.Action("exec_start: "+strings.Join(cfg.Cmd, " ")), c.ID(),
		map[string]string{"name": c.pod.Alias, "execID": e.id})
	done := func(es *spec.ExitStatus, err error) {
		code := -1
		if es != nil {
			code = es.Code
		}
		e.finish(code)
		stream.Close()
		s.emit(tenant, events.ContainerEventType, events.ActionExecDie, c.ID(),
			map[string]string{"name": c.pod.Alias, "execID": e.id, "exitCode": strconv.Itoa(code)})
	}
	if req.Detach {
		go func() { done(stream.Relay(nil, io.Discard, io.Discard)) }()
		w.WriteHeader(http.StatusOK)
		return
	}
	conn, buffered, err := hijack(w, r, tty)
	if err != nil {
		stream.Close()
		done(nil, err)
		return
	}
	defer conn.Close()
	out := &watchWriter{w: conn, onErr: func() { stream.Close() }}
	stdout, stderr := outputs(out, tty)
	if !cfg.AttachStdout {
		stdout = io.Discard
	}
	if !cfg.AttachStderr {
		stderr = io.Discard
	}
	var in io.Reader
	if proc.OpenStdin {
		in = io.MultiReader(buffered, conn)
		if len(e.keys) > 0 && tty {
			in = &detachReader{r: in, keys: e.keys, onDetach: func() { stream.Close() }}
		}
	}
	hung := make(chan struct{})
	defer close(hung)
	go watchHangup(conn, hung, func() { stream.Close() })
	es, err := stream.Relay(in, stdout, stderr)
	if es != nil && es.Error != "" {
		// A command that could not run: Docker says why on the stream,
		// and the CLI takes the code from inspect.
		fmt.Fprintf(stdout, "OCI runtime exec failed: exec failed: unable to start container process: %s: unknown\r\n", es.Error)
	}
	done(es, err)
	closeWriter(conn)
}

func (e *execRecord) finish(code int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.running = false
	e.exit = &code
	e.stream = nil
	e.ended = time.Now()
}

// inspectExec is GET /exec/{id}/json.
func (s *Server) inspectExec(w http.ResponseWriter, r *http.Request, tenant string) {
	e, err := s.execs.get(tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var args []string
	if len(e.cfg.Cmd) > 1 {
		args = e.cfg.Cmd[1:]
	}
	priv := e.cfg.Privileged
	writeJSON(w, http.StatusOK, container.ExecInspectResponse{
		ID: e.id, Running: e.running, ExitCode: e.exit,
		ProcessConfig: &container.ExecProcessConfig{Tty: e.cfg.Tty, Entrypoint: e.cfg.Cmd[0], Arguments: args, Privileged: &priv, User: e.cfg.User},
		OpenStdin:     e.cfg.AttachStdin, OpenStdout: e.cfg.AttachStdout, OpenStderr: e.cfg.AttachStderr,
		CanRemove: !e.running && e.started, ContainerID: e.ctrID, DetachKeys: e.keys,
	})
}

// watchWriter calls onErr once its writer fails: the client has gone.
type watchWriter struct {
	w     io.Writer
	onErr func()
	once  sync.Once
}

func (w *watchWriter) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		w.once.Do(w.onErr)
	}
	return n, err
}
