package guest

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/cradle/spec"
)

// proc is a process init started, seen from init's side: its PID in the
// VM, its exit, and init's ends of its stdio.
type proc struct {
	pid  int
	wait <-chan syscall.WaitStatus
	// tty is the pseudo-terminal master when the process has a terminal;
	// then stdout and stderr are nil.
	tty    *os.File
	stdin  *os.File // nil when stdin is /dev/null
	stdout *os.File
	stderr *os.File
	// startErr, when set, yields the reason the process never ran (read
	// from the stub's status pipe), or nil once it has exec'd.
	startErr <-chan *spec.ExitStatus
	// drain bounds how long output is read after the process has exited:
	// background children of an exec may hold its pipes open.
	drain time.Duration

	stdinMu sync.Mutex
	log     *slog.Logger
}

// stdio is the child's side, built by newStdio.
type stdio struct {
	files  [3]*os.File
	parent *proc
}

// newStdio makes pipes (or, given a pty pair, the terminal) for a process.
// The parent's ends are non-blocking so reads can be abandoned.
func newStdio(openStdin bool, ptmx, pts *os.File) (*stdio, error) {
	s := &stdio{parent: &proc{}}
	if ptmx != nil {
		s.files = [3]*os.File{pts, pts, pts}
		s.parent.tty = ptmx
		if openStdin {
			s.parent.stdin = ptmx
		}
		return s, nil
	}
	fail := func(err error) (*stdio, error) {
		s.closeChild()
		s.parent.closeAll()
		return nil, err
	}
	if openStdin {
		r, w, err := pipe()
		if err != nil {
			return fail(err)
		}
		s.files[0], s.parent.stdin = r, w
	} else {
		null, err := os.OpenFile("/dev/null", os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(err)
		}
		s.files[0] = null
	}
	r, w, err := pipe()
	if err != nil {
		return fail(err)
	}
	s.parent.stdout, s.files[1] = r, w
	r, w, err = pipe()
	if err != nil {
		return fail(err)
	}
	s.parent.stderr, s.files[2] = r, w
	return s, nil
}

// pipe returns a blocking pipe; finish makes init's end pollable once the
// child holds its own.
func pipe() (r, w *os.File, err error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, fmt.Errorf("pipe: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "pipe-r"), os.NewFile(uintptr(fds[1]), "pipe-w"), nil
}

// pollable re-wraps f as a non-blocking file served by Go's poller.
func pollable(f *os.File) *os.File {
	if f == nil {
		return nil
	}
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		return f
	}
	f.Close()
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		return os.NewFile(uintptr(fd), f.Name())
	}
	return os.NewFile(uintptr(fd), f.Name())
}

func (s *stdio) closeChild() {
	seen := map[*os.File]bool{}
	for _, f := range s.files {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
}

// finish is called once the child exists: the child's ends are closed in
// init, and the parent's ends become pollable.
func (s *stdio) finish() *proc {
	s.closeChild()
	p := s.parent
	if p.tty != nil {
		p.tty = pollable(p.tty)
		if p.stdin != nil {
			p.stdin = p.tty
		}
		return p
	}
	p.stdin = pollable(p.stdin)
	p.stdout = pollable(p.stdout)
	p.stderr = pollable(p.stderr)
	return p
}

func (p *proc) closeAll() {
	for _, f := range []*os.File{p.tty, p.stdin, p.stdout, p.stderr} {
		if f != nil {
			f.Close()
		}
	}
}

func (p *proc) closeStdin() {
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	if p.stdin == nil {
		return
	}
	if p.tty != nil {
		// A terminal has no half-close; send EOF (^D) as a terminal would.
		p.tty.Write([]byte{4})
	} else {
		p.stdin.Close()
	}
	p.stdin = nil
}

func (p *proc) writeStdin(b []byte) {
	p.stdinMu.Lock()
	f := p.stdin
	p.stdinMu.Unlock()
	if f != nil {
		f.Write(b)
	}
}

// serve streams a process over a control stream until it exits: output
// frames out, stdin, resize and signal frames in, and FrameExit last.
func (p *proc) serve(st io.ReadWriter, onExit func(*spec.ExitStatus)) {
	var wmu sync.Mutex
	var hostGone atomic.Bool
	send := func(kind spec.FrameKind, b []byte) error {
		if hostGone.Load() {
			return nil
		}
		wmu.Lock()
		defer wmu.Unlock()
		err := spec.WriteFrame(st, kind, b)
		if err != nil {
			// Keep draining, so the process never blocks on a full pipe.
			hostGone.Store(true)
		}
		return err
	}

	var out sync.WaitGroup
	copyOut := func(f *os.File, kind spec.FrameKind) {
		defer out.Done()
		buf := make([]byte, 32<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				send(kind, buf[:n])
			}
			if err != nil {
				return
			}
		}
	}
	if p.tty != nil {
		out.Add(1)
		go copyOut(p.tty, spec.FrameStdout)
	} else {
		out.Add(2)
		go copyOut(p.stdout, spec.FrameStdout)
		go copyOut(p.stderr, spec.FrameStderr)
	}

	go func() {
		for {
			kind, b, err := spec.ReadFrame(st)
			if err != nil {
				p.closeStdin()
				return
			}
			switch kind {
			case spec.FrameStdin:
				if len(b) == 0 {
					p.closeStdin()
				} else {
					p.writeStdin(b)
				}
			case spec.FrameResize:
				var ws spec.WindowSize
				if json.Unmarshal(b, &ws) == nil && p.tty != nil {
					setWinsize(p.tty, ws)
				}
			case spec.FrameSignal:
				var s spec.Signal
				if json.Unmarshal(b, &s) == nil && s.Signal > 0 {
					unix.Kill(p.pid, syscall.Signal(s.Signal))
				}
			}
		}
	}()

	ws := <-p.wait
	if p.log != nil {
		p.log.Debug("process exited", "pid", p.pid)
	}
	st1 := spec.ExitStatus{FinishedAt: time.Now()}
	st1.Code, st1.Signal = exitCode(ws)
	if p.startErr != nil {
		if e := <-p.startErr; e != nil {
			st1.Code, st1.Error = e.Code, e.Error
		}
	}

	done := make(chan struct{})
	go func() { out.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.drain):
		// Something else holds the output open; stop reading.
		for _, f := range []*os.File{p.tty, p.stdout, p.stderr} {
			if f != nil {
				f.SetReadDeadline(time.Now())
			}
		}
		<-done
	}
	if onExit != nil {
		onExit(&st1)
	}
	p.closeAll()
	b, _ := json.Marshal(st1)
	send(spec.FrameExit, b)
}

func setWinsize(f *os.File, ws spec.WindowSize) error {
	return unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
}

// openPty opens a new pseudo-terminal on the devpts instance mounted at
// dir, as seen from the calling thread.
func openPty(dir string) (ptmx, pts *os.File, err error) {
	ptmx, err = os.OpenFile(dir+"/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		ptmx.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		ptmx.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	pts, err = os.OpenFile(fmt.Sprintf("%s/%d", dir, n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		ptmx.Close()
		return nil, nil, fmt.Errorf("open pty %d: %w", n, err)
	}
	return ptmx, pts, nil
}
