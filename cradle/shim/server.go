package shim

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/hearth-cloud/hearth/cradle/podlog"
	"github.com/hearth-cloud/hearth/cradle/spec"
)

// serveClients serves the pod's API: one call per connection.
func (s *Shim) serveClients(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.clients.Add(1)
		go func() {
			defer s.clients.Done()
			defer c.Close()
			s.handle(c)
		}()
	}
}

func respond(w io.Writer, err error) error {
	var r spec.Response
	if err != nil {
		r.Error = err.Error()
		r.Kind = spec.ErrInternal
		var ce *spec.CallError
		if errors.As(err, &ce) {
			r.Kind = ce.Kind
		}
	}
	return spec.WriteJSON(w, spec.FrameResponse, &r)
}

func callErr(kind spec.ErrorKind, format string, args ...any) error {
	return &spec.CallError{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

func (s *Shim) handle(conn net.Conn) {
	var req spec.Request
	if err := spec.ReadJSON(conn, spec.FrameRequest, &req); err != nil {
		return
	}
	switch req.Op {
	case spec.OpState:
		st := s.snapshot()
		spec.WriteJSON(conn, spec.FrameResponse, &spec.Response{State: &st})

	case spec.OpWait:
		<-s.exited
		st := s.snapshot()
		spec.WriteJSON(conn, spec.FrameResponse, &spec.Response{State: &st})

	case spec.OpStartPod:
		if isClosed(s.exited) {
			respond(conn, callErr(spec.ErrConflict, "pod %s has exited", s.launch.ID[:12]))
			return
		}
		respond(conn, s.startAll())

	case spec.OpStop:
		if !isClosed(s.exited) {
			s.requestStop(time.Duration(req.Timeout), false)
		}
		<-s.exited
		respond(conn, nil)

	case spec.OpPause, spec.OpResume:
		respond(conn, s.setPaused(req.Op == spec.OpPause))

	case spec.OpPlug, spec.OpUnplug:
		var err error
		if req.Interface == nil {
			err = callErr(spec.ErrInvalid, "%s: no interface", req.Op)
		} else if req.Op == spec.OpPlug {
			err = s.plug(*req.Interface, req.DNS)
		} else {
			err = s.unplug(req.Interface.Name, req.DNS)
		}
		if err != nil {
			respond(conn, err)
			return
		}
		st := s.snapshot()
		spec.WriteJSON(conn, spec.FrameResponse, &spec.Response{State: &st})

	case spec.OpSignal:
		c, err := s.runningContainer(req.Container)
		if err != nil {
			respond(conn, err)
			return
		}
		if req.Signal == int(syscall.SIGKILL) {
			// As with Docker, a kill reaches a paused container.
			s.resumeVM()
		} else if err := s.refuseIfPaused(); err != nil {
			respond(conn, err)
			return
		}
		req.Container = c.name
		_, err = s.call(&req)
		respond(conn, err)

	case spec.OpTop:
		c, err := s.runningContainer(req.Container)
		if err == nil {
			err = s.refuseIfPaused()
		}
		if err != nil {
			respond(conn, err)
			return
		}
		req.Container = c.name
		resp, err := s.call(&req)
		if err != nil {
			respond(conn, err)
			return
		}
		spec.WriteJSON(conn, spec.FrameResponse, resp)

	case spec.OpAttach:
		s.attach(conn, &req)

	case spec.OpExec, spec.OpArchiveGet, spec.OpArchivePut, spec.OpPathStat:
		if err := s.refuseIfPaused(); err != nil {
			respond(conn, err)
			return
		}
		s.relay(conn, &req)

	case spec.OpStats:
		if isClosed(s.exited) {
			respond(conn, callErr(spec.ErrConflict, "pod %s is not running", s.launch.ID[:12]))
			return
		}
		if err := s.refuseIfPaused(); err != nil {
			respond(conn, err)
			return
		}
		resp, err := s.call(&req)
		if err != nil {
			respond(conn, err)
			return
		}
		spec.WriteJSON(conn, spec.FrameResponse, resp)

	case spec.OpLogs:
		s.logs(conn, &req)

	default:
		respond(conn, callErr(spec.ErrInvalid, "unknown call %q", req.Op))
	}
}

// container finds a container by name; an empty name means the first.
func (s *Shim) container(name string) (*ctr, error) {
	if name == "" {
		return s.order[0], nil
	}
	c, ok := s.ctrs[name]
	if !ok {
		return nil, callErr(spec.ErrNotFound, "no such container in pod %s: %s", s.launch.ID[:12], name)
	}
	return c, nil
}

// runningContainer is container, for calls that need it running.
func (s *Shim) runningContainer(name string) (*ctr, error) {
	c, err := s.container(name)
	if err != nil {
		return nil, err
	}
	if c.exitStatus() != nil || isClosed(s.exited) {
		return nil, callErr(spec.ErrConflict, "container %s is not running", c.name)
	}
	return c, nil
}

// attach streams a container's live output to the client, and the client's
// stdin, resizes and signals to the container.
func (s *Shim) attach(conn net.Conn, req *spec.Request) {
	c, err := s.container(req.Container)
	if err != nil {
		respond(conn, err)
		return
	}
	a := c.attach()
	if req.Start && a != nil {
		// A container that fails to start has exited: its exit reaches
		// this client like any other.
		s.startAll()
	}
	if respond(conn, nil) != nil {
		if a != nil {
			c.detach(a)
		}
		return
	}
	if a == nil {
		if es := c.exitStatus(); es != nil {
			spec.WriteJSON(conn, spec.FrameExit, es)
		}
		return
	}

	clientGone := make(chan struct{})
	go func() {
		defer close(clientGone)
		for {
			kind, b, err := spec.ReadFrame(conn)
			if err != nil {
				return
			}
			switch kind {
			case spec.FrameStdin:
				if req.Stdin {
					// Input that comes before the container runs (a
					// client attached first) waits for it.
					select {
					case <-c.started:
					case <-s.exited:
						return
					}
					c.send(kind, b)
				}
			case spec.FrameResize, spec.FrameSignal:
				c.send(kind, b)
			}
		}
	}()

	for {
		select {
		case f, ok := <-a.ch:
			if !ok {
				return
			}
			if spec.WriteFrame(conn, f.kind, f.data) != nil {
				c.detach(a)
				s.clientLeft(c, req)
				return
			}
		case <-clientGone:
			c.detach(a)
			s.clientLeft(c, req)
			return
		}
	}
}

// clientLeft handles an attached client going away before its container
// exited: stdin closes (Docker's StdinOnce), and when the client owned the
// pod (a foreground `cradle run`), the pod is stopped and removed.
func (s *Shim) clientLeft(c *ctr, req *spec.Request) {
	if c.exitStatus() != nil {
		return
	}
	if req.Stdin {
		c.send(spec.FrameStdin, nil)
	}
	if req.Owner {
		s.log.Info("owner went away; stopping the pod")
		s.requestStop(s.stopTimeout(), true)
	}
}

// relay passes a call about a running container (exec, copies) to the
// guest, and its answer and stream back, verbatim.
func (s *Shim) relay(conn net.Conn, req *spec.Request) {
	c, err := s.runningContainer(req.Container)
	if err != nil {
		respond(conn, err)
		return
	}
	st, err := s.openStream()
	if err != nil {
		respond(conn, callErr(spec.ErrConflict, "pod is not running: %v", err))
		return
	}
	defer st.Close()
	fwd := *req
	fwd.Container = c.name
	resp, err := spec.Call(st, &fwd)
	if err != nil {
		respond(conn, err)
		return
	}
	if spec.WriteJSON(conn, spec.FrameResponse, resp) != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		io.Copy(st, conn)
		close(done)
	}()
	io.Copy(conn, st)
	conn.Close()
	<-done
}

// logs streams a container's recorded output, then, with Follow, its new
// output until it exits. FrameExit ends the stream.
func (s *Shim) logs(conn net.Conn, req *spec.Request) {
	c, err := s.container(req.Container)
	if err != nil {
		respond(conn, err)
		return
	}
	if respond(conn, nil) != nil {
		return
	}
	r, err := podlog.Open(c.logPath)
	if err != nil {
		spec.WriteJSON(conn, spec.FrameExit, &spec.ExitStatus{Code: -1, Error: err.Error()})
		return
	}
	defer r.Close()
	o := req.Log
	for {
		// Take the growth signal before draining: an append after this
		// point wakes us; one before it is read by the drain.
		grow, exited := c.growth()
		err := r.SendWith(conn, o)
		if o != nil && o.Tail >= 0 {
			// The tail is of what was there; what follows comes whole.
			tail := *o
			tail.Tail = -1
			o = &tail
		}
		if err != nil {
			spec.WriteJSON(conn, spec.FrameExit, &spec.ExitStatus{Code: -1, Error: err.Error()})
			return
		}
		if exited || !req.Follow {
			spec.WriteJSON(conn, spec.FrameExit, exitOrEmpty(c))
			return
		}
		<-grow
	}
}

func exitOrEmpty(c *ctr) *spec.ExitStatus {
	if es := c.exitStatus(); es != nil {
		return es
	}
	return &spec.ExitStatus{}
}
