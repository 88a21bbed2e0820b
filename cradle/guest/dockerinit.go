package guest

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// DockerInit is the container init of `docker run --init`: PID 1 of the
// container, it runs the command as its child, forwards the signals it
// gets to it, reaps every orphan the command leaves, and exits with the
// command's status once the command has exited. Init runs it when invoked
// as docker-init; the guest binds this very binary into the container.
func DockerInit(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "docker-init: no command to run")
		return 2
	}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
	// The child gets its own process group and, on a terminal, the
	// foreground: the terminal's ^C goes to it, not to its init.
	tty := isTerminal(0)
	attr := &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Foreground: tty, Ctty: 0},
	}
	// exec resets the handlers Go installed; nothing leaks into the command.
	pid, err := syscall.ForkExec(args[0], args, attr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "docker-init: exec %s: %v\n", args[0], err)
		if errors.Is(err, syscall.ENOENT) {
			return 127
		}
		return 126
	}
	if code, done := reapAll(pid); done {
		return code
	}
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			if code, done := reapAll(pid); done {
				return code
			}
		case syscall.SIGURG:
			// Go's runtime preempts goroutines with it; not the user's.
		default:
			syscall.Kill(pid, sig.(syscall.Signal))
		}
	}
	return 0
}

// reapAll reaps every child that has exited; done is set, with the exit
// code in Docker's terms, once the command itself has.
func reapAll(cmd int) (code int, done bool) {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return code, done
		}
		if pid == cmd {
			done = true
			code = ws.ExitStatus()
			if ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		}
	}
}

func isTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}
