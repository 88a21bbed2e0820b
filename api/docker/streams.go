package docker

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/cradle/shim"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

func (s *Server) streamRoutes(handle handleFunc) {
	handle("POST /containers/{id}/attach", s.attachContainer)
	handle("GET /containers/{id}/logs", s.containerLogs)
	handle("POST /containers/{id}/resize", s.resizeContainer)
	s.execRoutes(handle)
	s.copyRoutes(handle)
}

// Stream framing: a container without a TTY has its stdout and stderr
// multiplexed on one connection, each chunk behind an 8-byte header (the
// stream, then the length, big-endian); with a TTY the bytes go raw.

// muxWriter writes one stream of a multiplexed connection.
type muxWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	stream stdcopy.StdType
}

func (m *muxWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var hdr [8]byte
	hdr[0] = byte(m.stream)
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(p)))
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, err := m.w.Write(hdr[:]); err != nil {
		return 0, err
	}
	return m.w.Write(p)
}

// outputs are the writers for a stream's stdout and stderr: framed, or
// raw for a TTY.
func outputs(w io.Writer, tty bool) (stdout, stderr io.Writer) {
	if tty {
		return w, w
	}
	mu := &sync.Mutex{}
	return &muxWriter{mu: mu, w: w, stream: stdcopy.Stdout}, &muxWriter{mu: mu, w: w, stream: stdcopy.Stderr}
}

// hijack takes over the connection of an attach or exec start, answering
// as Docker does (101 to a client that asked to upgrade).
func hijack(w http.ResponseWriter, r *http.Request, tty bool) (net.Conn, *bufio.Reader, error) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the connection cannot be taken over")
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	ct := "application/vnd.docker.raw-stream"
	if !tty && !versionLess(requestVersion(r), "1.42") {
		ct = "application/vnd.docker.multiplexed-stream"
	}
	head := "HTTP/1.1 200 OK\r\nContent-Type: " + ct + "\r\n\r\n"
	if strings.EqualFold(r.Header.Get("Upgrade"), "tcp") {
		head = "HTTP/1.1 101 UPGRADED\r\nContent-Type: " + ct + "\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
	}
	if _, err := io.WriteString(conn, head); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, brw.Reader, nil
}

// closeWriter half-closes a hijacked connection, so the client reads EOF.
func closeWriter(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// attachGate lets a start wait until the clients attaching to the same
// container are attached: `docker run` attaches before it starts, and the
// container's first output must reach it.
type attachGate struct {
	mu      sync.Mutex
	pending map[string]int
	changed chan struct{}
}

func (g *attachGate) add(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pending == nil {
		g.pending = map[string]int{}
	}
	g.pending[key]++
}

func (g *attachGate) done(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.pending[key]--
	if g.pending[key] <= 0 {
		delete(g.pending, key)
	}
	if g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
}

// wait returns once no attach to key is pending, or after limit.
func (g *attachGate) wait(ctx context.Context, key string, limit time.Duration) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		g.mu.Lock()
		if g.pending[key] == 0 {
			g.mu.Unlock()
			return
		}
		if g.changed == nil {
			g.changed = make(chan struct{})
		}
		ch := g.changed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		}
	}
}

// streamTable holds the live attach streams of containers, so that a
// resize reaches their TTY.
type streamTable struct {
	mu sync.Mutex
	m  map[string]map[*shim.Stream]bool
}

func (t *streamTable) add(key string, st *shim.Stream) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]map[*shim.Stream]bool{}
	}
	if t.m[key] == nil {
		t.m[key] = map[*shim.Stream]bool{}
	}
	t.m[key][st] = true
}

func (t *streamTable) remove(key string, st *shim.Stream) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.m[key], st)
	if len(t.m[key]) == 0 {
		delete(t.m, key)
	}
}

func (t *streamTable) get(key string) []*shim.Stream {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*shim.Stream
	for st := range t.m[key] {
		out = append(out, st)
	}
	return out
}

// attachContainer is POST /containers/{id}/attach.
func (s *Server) attachContainer(w http.ResponseWriter, r *http.Request, tenant string) {
	ctx := r.Context()
	c, err := s.resolve(ctx, tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if !boolParam(r, "stream") && !boolParam(r, "logs") {
		writeError(w, errdefs.InvalidArgument("bad parameter: either logs or stream must be set"))
		return
	}
	st := c.state()
	if st == stateExited || st == stateDead {
		if !boolParam(r, "logs") {
			writeError(w, errdefs.Conflict("You cannot attach to a stopped container, start it first"))
			return
		}
	}
	keys, err := detachKeys(r.URL.Query().Get("detachKeys"))
	if err != nil {
		writeError(w, err)
		return
	}
	key := tenant + "/" + c.ID()
	waiting := st == stateCreated || st == stateRestarting
	if waiting {
		s.gate.add(key)
	}
	gated := waiting
	release := func() {
		if gated {
			gated = false
			s.gate.done(key)
		}
	}
	defer release()
	tty := c.cfg.Tty
	conn, buffered, err := hijack(w, r, tty)
	if err != nil {
		return
	}
	defer conn.Close()
	var closeStream func()
	out := &watchWriter{w: conn, onErr: func() {
		if closeStream != nil {
			closeStream()
		}
	}}
	stdout, stderr := outputs(out, tty)
	if !boolParam(r, "stdout") {
		stdout = io.Discard
	}
	if !boolParam(r, "stderr") {
		stderr = io.Discard
	}
	s.emit(tenant, "container", "attach", c.ID(), map[string]string{"name": c.pod.Alias})

	// The connection's context ends when the client goes; a client that
	// only half-closed (stdin done) is still reading.
	actx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if boolParam(r, "logs") {
		if lst, err := s.Pods.Client(actx, tenant, c.ID()).Logs(mainContainer, false); err == nil {
			lst.Relay(nil, stdout, stderr)
			lst.Close()
		}
	}
	if !boolParam(r, "stream") {
		return
	}
	if waiting {
		// Created, not started yet: follow the pod until it runs.
		p, err := store.WaitFor[model.Pod](actx, s.Store, model.KindPod, tenant, c.ID(), func(p *model.Pod) bool {
			return p == nil || (p.Status.Phase == model.PhaseRunning && p.Status.CradleID != "") ||
				(model.Terminal(p.Status.Phase) && p.Spec.Desired == model.DesiredStopped)
		})
		if err != nil || p == nil || p.Status.Phase != model.PhaseRunning {
			return
		}
	}
	stdin := boolParam(r, "stdin") && c.cfg.OpenStdin
	stream, err := s.Pods.Client(actx, tenant, c.ID()).Attach(mainContainer, shim.AttachOptions{Stdin: stdin})
	release()
	if err != nil {
		fmt.Fprintf(stderr, "attach: %v\n", err)
		return
	}
	defer stream.Close()
	closeStream = func() { stream.Close() }
	s.streams.add(key, stream)
	defer s.streams.remove(key, stream)

	var in io.Reader
	if stdin {
		in = io.MultiReader(buffered, conn)
		if len(keys) > 0 && tty {
			in = &detachReader{r: in, keys: keys, onDetach: func() { stream.Close() }}
		}
	}
	done := make(chan struct{})
	defer close(done)
	go watchHangup(conn, done, func() { stream.Close() })
	stream.Relay(in, stdout, stderr)
	closeWriter(conn)
}

// hangupEvery is how often an attached stream checks that its client is
// still there: a client that closed only its sending side (the docker CLI
// does once its input ends) still reads, so only a hangup tells.
const hangupEvery = 2 * time.Second

// watchHangup calls fn once the client has hung up entirely, until done.
func watchHangup(conn net.Conn, done <-chan struct{}, fn func()) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	t := time.NewTicker(hangupEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		hup := false
		raw.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLHUP}}
			if n, err := unix.Poll(fds, 0); err == nil && n > 0 && fds[0].Revents&(unix.POLLHUP|unix.POLLERR) != 0 {
				hup = true
			}
		})
		if hup {
			fn()
			return
		}
	}
}

// detachKeys parses Docker's detach sequence ("ctrl-p,ctrl-q" by
// default).
func detachKeys(spec string) ([]byte, error) {
	if spec == "" {
		spec = "ctrl-p,ctrl-q"
	}
	var out []byte
	for _, k := range strings.Split(spec, ",") {
		k = strings.TrimSpace(k)
		switch {
		case len(k) == 1:
			out = append(out, k[0])
		case k == "DEL":
			out = append(out, 127)
		case strings.HasPrefix(k, "ctrl-") && len(k) == 6:
			c := k[5]
			switch {
			case c >= 'a' && c <= 'z':
				out = append(out, c-'a'+1)
			case c == '@':
				out = append(out, 0)
			case c >= '[' && c <= '_':
				out = append(out, c-'['+27)
			default:
				return nil, errdefs.InvalidArgument("Invalid escape keys (%s) provided", spec)
			}
		default:
			return nil, errdefs.InvalidArgument("Invalid escape keys (%s) provided", spec)
		}
	}
	return out, nil
}

// detachReader passes input through until the detach sequence, which ends
// the attach and leaves the container running. Keys of a sequence that
// breaks off are input after all, so output can outgrow a read: it waits
// in pending.
type detachReader struct {
	r        io.Reader
	keys     []byte
	onDetach func()

	matched int
	pending []byte
	buf     []byte
	done    bool
	err     error
}

func (d *detachReader) Read(p []byte) (int, error) {
	for len(d.pending) == 0 {
		switch {
		case d.done:
			return 0, io.EOF
		case d.err != nil && d.matched > 0:
			// Input ended inside a sequence: hand the keys back.
			d.pending = append(d.pending, d.keys[:d.matched]...)
			d.matched = 0
			continue
		case d.err != nil:
			return 0, d.err
		}
		if len(d.buf) < len(p) {
			d.buf = make([]byte, len(p))
		}
		n, err := d.r.Read(d.buf[:len(p)])
		d.scan(d.buf[:n])
		d.err = err
	}
	n := copy(p, d.pending)
	d.pending = d.pending[n:]
	return n, nil
}

func (d *detachReader) scan(in []byte) {
	for _, b := range in {
		if b != d.keys[d.matched] && d.matched > 0 {
			d.pending = append(d.pending, d.keys[:d.matched]...)
			d.matched = 0
		}
		if b != d.keys[d.matched] {
			d.pending = append(d.pending, b)
			continue
		}
		d.matched++
		if d.matched == len(d.keys) {
			d.done = true
			d.onDetach()
			return
		}
	}
}

// windowSize reads the h and w of a resize.
func windowSize(r *http.Request) (rows, cols uint16, err error) {
	q := r.URL.Query()
	h, errH := strconv.ParseUint(q.Get("h"), 10, 16)
	w, errW := strconv.ParseUint(q.Get("w"), 10, 16)
	if errH != nil || errW != nil {
		return 0, 0, errdefs.InvalidArgument("invalid resize parameters h=%q w=%q", q.Get("h"), q.Get("w"))
	}
	return uint16(h), uint16(w), nil
}

// resizeContainer is POST /containers/{id}/resize.
func (s *Server) resizeContainer(w http.ResponseWriter, r *http.Request, tenant string) {
	c, err := s.resolve(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	h, wd, err := windowSize(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if c.pod.Status.Phase != model.PhaseRunning {
		writeError(w, errdefs.Conflict("Container %s is not running", c.ID()))
		return
	}
	streams := s.streams.get(tenant + "/" + c.ID())
	for _, st := range streams {
		st.Resize(h, wd)
	}
	if len(streams) == 0 && c.cfg.Tty {
		st, err := s.Pods.Client(r.Context(), tenant, c.ID()).Attach(mainContainer, shim.AttachOptions{})
		if err == nil {
			st.Resize(h, wd)
			st.Close()
		}
	}
	w.WriteHeader(http.StatusOK)
}

// containerLogs is GET /containers/{id}/logs.
func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request, tenant string) {
	ctx := r.Context()
	q := r.URL.Query()
	if !boolParam(r, "stdout") && !boolParam(r, "stderr") {
		writeError(w, errdefs.InvalidArgument("Bad parameters: you must choose at least one stream"))
		return
	}
	c, err := s.resolve(ctx, tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	o := spec.LogOptions{Timestamps: boolParam(r, "timestamps"), Tail: -1}
	now := time.Now()
	if v := q.Get("since"); v != "" && v != "0" {
		if o.Since, err = parseTime(v, now); err != nil {
			writeError(w, err)
			return
		}
	}
	if v := q.Get("until"); v != "" && v != "0" {
		if o.Until, err = parseTime(v, now); err != nil {
			writeError(w, err)
			return
		}
	}
	if v := q.Get("tail"); v != "" && v != "all" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, errdefs.InvalidArgument("invalid value for tail: %s", v))
			return
		}
		o.Tail = n
	}
	follow := boolParam(r, "follow") && c.pod.Status.Phase == model.PhaseRunning
	ct := "application/vnd.docker.raw-stream"
	if !c.cfg.Tty && !versionLess(requestVersion(r), "1.42") {
		ct = "application/vnd.docker.multiplexed-stream"
	}
	if c.pod.Status.Node == "" || c.pod.Status.CradleID == "" && c.pod.Status.StartedAt.IsZero() {
		// Never ran: no output.
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(http.StatusOK)
		return
	}
	st, err := s.Pods.Client(ctx, tenant, c.ID()).LogsWith(mainContainer, follow, o)
	if err != nil {
		writeError(w, err)
		return
	}
	defer st.Close()
	go func() {
		<-ctx.Done()
		st.Close()
	}()
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(http.StatusOK)
	flush(w)
	fw := &flushWriter{w: w}
	stdout, stderr := outputs(fw, c.cfg.Tty)
	if !boolParam(r, "stdout") {
		stdout = io.Discard
	}
	if !boolParam(r, "stderr") {
		stderr = io.Discard
	}
	st.Relay(nil, stdout, stderr)
}

// flushWriter flushes each write of a streaming answer.
type flushWriter struct{ w http.ResponseWriter }

func (f *flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	flush(f.w)
	return n, err
}
