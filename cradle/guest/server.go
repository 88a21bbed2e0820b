package guest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/cradle/spec"
)

// callError is an error with the protocol's classification.
type callError struct {
	kind spec.ErrorKind
	msg  string
}

func (e *callError) Error() string { return e.msg }

// YamuxConfig is the session configuration both ends of the control
// channel use. Keepalives are off: an idle pod must not wake the host.
func YamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.LogOutput = io.Discard
	c.ConnectionWriteTimeout = time.Minute
	c.StreamCloseTimeout = time.Minute
	return c
}

// openPort finds the virtio-serial port by name; without udev there is no
// /dev/virtio-ports, so sysfs is the map.
func openPort(name string) (*os.File, error) {
	ents, err := filepath.Glob("/sys/class/virtio-ports/*/name")
	if err != nil {
		return nil, err
	}
	for _, p := range ents {
		b, err := os.ReadFile(p)
		if err != nil || strings.TrimSpace(string(b)) != name {
			continue
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(p))
		return os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
	}
	return nil, fmt.Errorf("no virtio-serial port named %s", name)
}

func (g *Guest) serve() error {
	port, err := openPort(PortName)
	if err != nil {
		return err
	}
	g.log.Debug("control port open")
	sess, err := yamux.Server(port, YamuxConfig())
	if err != nil {
		return fmt.Errorf("control session: %w", err)
	}
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			return fmt.Errorf("control session: %w", err)
		}
		go g.handle(st)
	}
}

func reply(st io.Writer, err error) error {
	var resp spec.Response
	if err != nil {
		resp.Error = err.Error()
		resp.Kind = spec.ErrInternal
		var ce *callError
		if errors.As(err, &ce) {
			resp.Kind = ce.kind
		}
	}
	return spec.WriteJSON(st, spec.FrameResponse, &resp)
}

func (g *Guest) handle(st net.Conn) {
	defer st.Close()
	var req spec.Request
	if err := spec.ReadJSON(st, spec.FrameRequest, &req); err != nil {
		return
	}
	g.log.Debug("call", "op", req.Op, "container", req.Container)
	switch req.Op {
	case spec.OpHello:
		if req.Version != spec.ProtocolVersion {
			reply(st, &callError{spec.ErrInvalid, fmt.Sprintf("guest speaks control protocol %d, host %d", spec.ProtocolVersion, req.Version)})
			return
		}
		var uts unix.Utsname
		unix.Uname(&uts)
		spec.WriteJSON(st, spec.FrameResponse, &spec.Response{Info: &spec.GuestInfo{
			Protocol:      spec.ProtocolVersion,
			KernelRelease: unix.ByteSliceToString(uts.Release[:]),
		}})

	case spec.OpSetup:
		if req.Launch == nil {
			reply(st, &callError{spec.ErrInvalid, "setup without a launch spec"})
			return
		}
		if err := req.Launch.Validate(); err != nil {
			reply(st, &callError{spec.ErrInvalid, err.Error()})
			return
		}
		reply(st, g.setup(req.Launch, req.Time))

	case spec.OpPlug, spec.OpUnplug:
		if req.Interface == nil {
			reply(st, &callError{spec.ErrInvalid, string(req.Op) + " without an interface"})
			return
		}
		if req.Op == spec.OpPlug {
			reply(st, g.plug(*req.Interface, req.MAC, req.DNS))
		} else {
			err := g.unplug(*req.Interface)
			if err == nil && len(req.DNS) > 0 {
				err = g.setDNS(req.DNS)
			}
			reply(st, err)
		}

	case spec.OpStart:
		c, err := g.container(req.Container)
		if err != nil {
			reply(st, err)
			return
		}
		p, err := g.startContainer(c)
		g.log.Debug("container forked", "container", c.spec.Name, "err", err)
		var ce *callError
		if errors.As(err, &ce) && ce.kind == spec.ErrConflict {
			// Already started: nothing about it changes.
			reply(st, err)
			return
		}
		if err != nil {
			// A container that cannot start has exited. A command that
			// cannot run is the process's exit, as with Docker; anything
			// else fails the call.
			es := spec.ExitStatus{Code: 125, Error: err.Error(), FinishedAt: time.Now()}
			var ee *execError
			if errors.As(err, &ee) {
				// Answered at once, so that whoever starts the
				// container learns it never ran.
				es.Code, es.Error = ee.Code, ee.Msg
				spec.WriteJSON(st, spec.FrameResponse, &spec.Response{Exit: &es})
			} else {
				reply(st, err)
			}
			c.mu.Lock()
			c.exit = es
			c.mu.Unlock()
			close(c.exited)
			close(c.reported)
			return
		}
		// Even when nobody reads the answer, the process runs and is served.
		reply(st, nil)
		p.serve(st, func(s *spec.ExitStatus) {
			if s.Signal == int(unix.SIGKILL) && oomKilled(c.cgroup) {
				s.OOMKilled = true
			}
			c.mu.Lock()
			c.exit = *s
			c.mu.Unlock()
			close(c.exited)
		})
		close(c.reported)

	case spec.OpExec:
		c, err := g.container(req.Container)
		if err != nil {
			reply(st, err)
			return
		}
		if req.Process == nil {
			reply(st, &callError{spec.ErrInvalid, "exec without a process"})
			return
		}
		if err := req.Process.Validate(); err != nil {
			reply(st, &callError{spec.ErrInvalid, err.Error()})
			return
		}
		p, err := g.execInContainer(c, *req.Process)
		var ee *execError
		if errors.As(err, &ee) {
			// The exec was accepted but its command cannot run: report
			// it as the process's exit, as Docker does.
			reply(st, nil)
			spec.WriteJSON(st, spec.FrameExit, &spec.ExitStatus{Code: ee.Code, Error: ee.Msg, FinishedAt: time.Now()})
			return
		}
		if err != nil {
			reply(st, err)
			return
		}
		if req.Size != nil && p.tty != nil {
			setWinsize(p.tty, *req.Size)
		}
		reply(st, nil)
		p.serve(st, nil)

	case spec.OpSignal:
		c, err := g.container(req.Container)
		if err != nil {
			reply(st, err)
			return
		}
		c.mu.Lock()
		pid := c.pid
		c.mu.Unlock()
		if pid == 0 || isClosed(c.exited) {
			reply(st, &callError{spec.ErrConflict, fmt.Sprintf("container %s is not running", req.Container)})
			return
		}
		if req.Signal <= 0 || req.Signal > 64 {
			reply(st, &callError{spec.ErrInvalid, fmt.Sprintf("invalid signal %d", req.Signal)})
			return
		}
		reply(st, unix.Kill(pid, unix.Signal(req.Signal)))

	case spec.OpPathStat, spec.OpArchiveGet, spec.OpArchivePut:
		c, err := g.container(req.Container)
		if err != nil {
			reply(st, err)
			return
		}
		g.archive(st, c, &req)

	case spec.OpStats:
		spec.WriteJSON(st, spec.FrameResponse, &spec.Response{Stats: g.stats()})

	case spec.OpTop:
		c, err := g.container(req.Container)
		if err != nil {
			reply(st, err)
			return
		}
		top, err := g.top(c)
		if err != nil {
			reply(st, err)
			return
		}
		spec.WriteJSON(st, spec.FrameResponse, &spec.Response{Top: top})

	case spec.OpShutdown:
		g.stopAll(time.Duration(req.Timeout))
		g.unmountVolumes()
		// The host takes QEMU's exit as the end of the call too, so the
		// answer may or may not make it out before the VM is gone.
		reply(st, nil)
		powerOff()

	default:
		reply(st, &callError{spec.ErrInvalid, fmt.Sprintf("unknown call %q", req.Op)})
	}
}

// archive serves the copy calls: stat, get (a tar out) and put (a tar in).
func (g *Guest) archive(st net.Conn, c *container, req *spec.Request) {
	switch req.Op {
	case spec.OpPathStat:
		ps, err := g.statPath(c, req.Path)
		if err != nil {
			reply(st, err)
			return
		}
		spec.WriteJSON(st, spec.FrameResponse, &spec.Response{Stat: ps})
	case spec.OpArchiveGet:
		ps, err := g.statPath(c, req.Path)
		if err != nil {
			reply(st, err)
			return
		}
		root, err := g.containerRoot(c)
		if err != nil {
			reply(st, err)
			return
		}
		full, err := inRoot(root, req.Path)
		if err != nil {
			reply(st, err)
			return
		}
		if spec.WriteJSON(st, spec.FrameResponse, &spec.Response{Stat: ps}) != nil {
			return
		}
		es := spec.ExitStatus{FinishedAt: time.Now()}
		if err := writeArchive(frameWriter{st}, full, filepath.Base(req.Path)); err != nil {
			es.Code, es.Error = 1, err.Error()
		}
		spec.WriteJSON(st, spec.FrameExit, &es)
	case spec.OpArchivePut:
		// The destination must be a directory, checked before any byte of
		// the archive is taken.
		ps, err := g.statPath(c, req.Path)
		if err == nil && os.FileMode(ps.Mode)&os.ModeDir == 0 {
			err = &callError{spec.ErrInvalid, fmt.Sprintf("extraction point is not a directory: %s", req.Path)}
		}
		if err != nil {
			reply(st, err)
			return
		}
		root, err := g.containerRoot(c)
		if err != nil {
			reply(st, err)
			return
		}
		if reply(st, nil) != nil {
			return
		}
		es := spec.ExitStatus{FinishedAt: time.Now()}
		fr := &frameReader{r: st}
		if err := extractArchive(fr, root, req.Path); err != nil {
			es.Code, es.Error = 1, err.Error()
		}
		// Read what is left, so the caller's writes complete.
		io.Copy(io.Discard, fr)
		spec.WriteJSON(st, spec.FrameExit, &es)
	}
}
