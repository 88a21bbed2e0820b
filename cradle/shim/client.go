package shim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/hearth-cloud/hearth/cradle/spec"
)

// Client calls a pod's supervisor. Each call is a connection of its own.
type Client struct {
	Socket string
	// Dial, when set, makes the connections instead of dialing Socket:
	// the data path reaches supervisors on other nodes through it.
	Dial func() (net.Conn, error)
}

// ErrGone means the supervisor is not there (the pod has exited or its
// supervisor died).
var ErrGone = errors.New("pod supervisor is not running")

func (c *Client) dial() (net.Conn, error) {
	if c.Dial != nil {
		return c.Dial()
	}
	conn, err := net.DialTimeout("unix", c.Socket, 5*time.Second)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, ErrGone
		}
		return nil, fmt.Errorf("dial %s: %w", c.Socket, err)
	}
	return conn, nil
}

func (c *Client) call(req *spec.Request) (*spec.Response, error) {
	conn, err := c.dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return spec.Call(conn, req)
}

// State returns the pod's current state.
func (c *Client) State() (*spec.PodState, error) {
	r, err := c.call(&spec.Request{Op: spec.OpState})
	if err != nil {
		return nil, err
	}
	return r.State, nil
}

// Wait blocks until the pod has exited and returns its final state.
func (c *Client) Wait() (*spec.PodState, error) {
	r, err := c.call(&spec.Request{Op: spec.OpWait})
	if err != nil {
		return nil, err
	}
	return r.State, nil
}

// Plug puts one of the pod's spare NICs on ifc's network while it runs;
// it returns the pod's state with the NIC.
func (c *Client) Plug(ifc spec.Interface, dns []string) (*spec.PodState, error) {
	r, err := c.call(&spec.Request{Op: spec.OpPlug, Interface: &ifc, DNS: dns})
	if err != nil {
		return nil, err
	}
	return r.State, nil
}

// Unplug takes the NIC named name off its network; dns, when given,
// becomes the containers' resolvers.
func (c *Client) Unplug(name string, dns []string) (*spec.PodState, error) {
	r, err := c.call(&spec.Request{Op: spec.OpUnplug, Interface: &spec.Interface{Name: name}, DNS: dns})
	if err != nil {
		return nil, err
	}
	return r.State, nil
}

// StartPod starts the containers of a pod created without autostart.
func (c *Client) StartPod() error {
	_, err := c.call(&spec.Request{Op: spec.OpStartPod})
	return err
}

// Stop stops the pod: the stop signal, then SIGKILL after timeout. It
// returns once the pod has exited.
func (c *Client) Stop(timeout time.Duration) error {
	_, err := c.call(&spec.Request{Op: spec.OpStop, Timeout: spec.Duration(timeout)})
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		// The supervisor exits right after answering.
		return nil
	}
	return err
}

// Pause freezes the pod's VM.
func (c *Client) Pause() error {
	_, err := c.call(&spec.Request{Op: spec.OpPause})
	return err
}

// Resume thaws a paused VM.
func (c *Client) Resume() error {
	_, err := c.call(&spec.Request{Op: spec.OpResume})
	return err
}

// Top lists a container's processes.
func (c *Client) Top(container string) (*spec.ProcessList, error) {
	r, err := c.call(&spec.Request{Op: spec.OpTop, Container: container})
	if err != nil {
		return nil, err
	}
	if r.Top == nil {
		return nil, errors.New("top: empty answer")
	}
	return r.Top, nil
}

// Signal sends sig to a container's PID 1.
func (c *Client) Signal(container string, sig syscall.Signal) error {
	_, err := c.call(&spec.Request{Op: spec.OpSignal, Container: container, Signal: int(sig)})
	return err
}

// AttachOptions choose what an attach does.
type AttachOptions struct {
	// Stdin sends the stream's input to the container.
	Stdin bool
	// Owner stops and removes the pod when this client goes away first.
	Owner bool
	// Start starts the pod once attached.
	Start bool
}

// Attach streams a container's live output.
func (c *Client) Attach(container string, o AttachOptions) (*Stream, error) {
	return c.stream(&spec.Request{Op: spec.OpAttach, Container: container, Stdin: o.Stdin, Owner: o.Owner, Start: o.Start})
}

// Exec runs a process in a container.
func (c *Client) Exec(container string, p spec.Process, size *spec.WindowSize) (*Stream, error) {
	return c.stream(&spec.Request{Op: spec.OpExec, Container: container, Process: &p, Size: size})
}

// Logs streams a container's recorded output, and with follow its new
// output until it exits.
func (c *Client) Logs(container string, follow bool) (*Stream, error) {
	return c.stream(&spec.Request{Op: spec.OpLogs, Container: container, Follow: follow})
}

// LogsWith is Logs with docker logs' choices of entries and form.
func (c *Client) LogsWith(container string, follow bool, o spec.LogOptions) (*Stream, error) {
	return c.stream(&spec.Request{Op: spec.OpLogs, Container: container, Follow: follow, Log: &o})
}

func (c *Client) stream(req *spec.Request) (*Stream, error) {
	conn, err := c.dial()
	if err != nil {
		return nil, err
	}
	if _, err := spec.Call(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	return &Stream{conn: conn}, nil
}

// Stream is a process's stdio over a call.
type Stream struct {
	conn net.Conn
	wmu  sync.Mutex
}

func (s *Stream) send(kind spec.FrameKind, b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return spec.WriteFrame(s.conn, kind, b)
}

// Resize sets the process's terminal size.
func (s *Stream) Resize(rows, cols uint16) error {
	b, _ := json.Marshal(spec.WindowSize{Rows: rows, Cols: cols})
	return s.send(spec.FrameResize, b)
}

// Signal sends sig to the process.
func (s *Stream) Signal(sig syscall.Signal) error {
	b, _ := json.Marshal(spec.Signal{Signal: int(sig)})
	return s.send(spec.FrameSignal, b)
}

// Close ends the call.
func (s *Stream) Close() error { return s.conn.Close() }

// Relay copies stdin (when not nil) to the process, and its output to
// stdout and stderr, until the process exits; it returns the exit status.
func (s *Stream) Relay(stdin io.Reader, stdout, stderr io.Writer) (*spec.ExitStatus, error) {
	if stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := stdin.Read(buf)
				if n > 0 {
					if s.send(spec.FrameStdin, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					s.send(spec.FrameStdin, nil)
					return
				}
			}
		}()
	}
	for {
		kind, b, err := spec.ReadFrame(s.conn)
		if err != nil {
			return nil, fmt.Errorf("stream ended: %w", err)
		}
		switch kind {
		case spec.FrameStdout:
			stdout.Write(b)
		case spec.FrameStderr:
			stderr.Write(b)
		case spec.FrameExit:
			var es spec.ExitStatus
			if err := json.Unmarshal(b, &es); err != nil {
				return nil, fmt.Errorf("exit frame: %w", err)
			}
			return &es, nil
		}
	}
}

// PathStat describes a path in a container.
func (c *Client) PathStat(container, path string) (*spec.PathStat, error) {
	r, err := c.call(&spec.Request{Op: spec.OpPathStat, Container: container, Path: path})
	if err != nil {
		return nil, err
	}
	return r.Stat, nil
}

// Stats reads the pod's resource use.
func (c *Client) Stats() (*spec.Stats, error) {
	r, err := c.call(&spec.Request{Op: spec.OpStats})
	if err != nil {
		return nil, err
	}
	return r.Stats, nil
}

// ArchiveGet streams a tar of path in a container into w, and returns the
// path's stat.
func (c *Client) ArchiveGet(container, path string, w io.Writer) (*spec.PathStat, error) {
	conn, err := c.dial()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	resp, err := spec.Call(conn, &spec.Request{Op: spec.OpArchiveGet, Container: container, Path: path})
	if err != nil {
		return nil, err
	}
	st := &Stream{conn: conn}
	es, err := st.Relay(nil, w, io.Discard)
	if err != nil {
		return nil, err
	}
	if es.Error != "" {
		return nil, fmt.Errorf("copy from %s: %s", path, es.Error)
	}
	return resp.Stat, nil
}

// ArchivePut extracts the tar r into directory path of a container.
func (c *Client) ArchivePut(container, path string, r io.Reader) error {
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := spec.Call(conn, &spec.Request{Op: spec.OpArchivePut, Container: container, Path: path}); err != nil {
		return err
	}
	st := &Stream{conn: conn}
	es, err := st.Relay(r, io.Discard, io.Discard)
	if err != nil {
		return err
	}
	if es.Error != "" {
		return fmt.Errorf("copy to %s: %s", path, es.Error)
	}
	return nil
}
