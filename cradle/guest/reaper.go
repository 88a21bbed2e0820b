package guest

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// reaper is PID 1's wait loop. Every child of init, and every orphan that
// the kernel reparents to it, is reaped here; processes that init started
// itself get their status delivered to whoever registered for them.
//
// init must not use os/exec, whose Wait would race with this loop.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan syscall.WaitStatus
}

func newReaper() *reaper {
	return &reaper{waiters: map[int]chan syscall.WaitStatus{}}
}

// run reaps until the process ends.
func (r *reaper) run() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD)
	for {
		r.reapAll()
		<-sigs
	}
}

func (r *reaper) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		// start holds mu from fork until it has registered the PID, so a
		// status reaped meanwhile waits here for its waiter. PIDs nobody
		// registered are orphans: reaping them is all they need.
		r.mu.Lock()
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- ws
		}
		r.mu.Unlock()
	}
}

// start runs fork under the reaper's lock and registers the new PID, so
// its exit cannot be reaped before anyone listens for it.
func (r *reaper) start(fork func() (int, error)) (int, <-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := fork()
	if err != nil {
		return 0, nil, err
	}
	ch := make(chan syscall.WaitStatus, 1)
	r.waiters[pid] = ch
	return pid, ch, nil
}

// exitCode turns a wait status into Docker's convention.
func exitCode(ws syscall.WaitStatus) (code, sig int) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), int(ws.Signal())
	}
	return ws.ExitStatus(), 0
}
