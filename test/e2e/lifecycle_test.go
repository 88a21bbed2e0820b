//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// startCLI starts hearth with stdout piped, for tests that signal or kill
// the CLI itself.
func startCLI(t *testing.T, args ...string) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := hearthCmd(ctx, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewReader(out), &stderr
}

func readLine(t *testing.T, r *bufio.Reader, want string) {
	t.Helper()
	done := make(chan string, 1)
	go func() {
		var got strings.Builder
		for {
			line, err := r.ReadString('\n')
			got.WriteString(line)
			if strings.TrimSpace(line) == want || err != nil {
				done <- got.String()
				return
			}
		}
	}()
	select {
	case got := <-done:
		if !strings.Contains(got, want) {
			t.Fatalf("waiting for %q, got %q", want, got)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("timed out waiting for %q", want)
	}
}

func TestSignalsReachTheContainer(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd, out, stderr := startCLI(t, "cradle", "run", img.busybox, "sh", "-c",
			`trap 'echo got-TERM; exit 7' TERM; trap 'echo got-INT; exit 8' INT; echo ready; while :; do sleep 0.1; done`)
		readLine(t, out, "ready")
		cmd.Process.Signal(sig)
		rest, _ := io.ReadAll(out)
		err := cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		want, wantCode := "got-TERM", 7
		if sig == syscall.SIGINT {
			want, wantCode = "got-INT", 8
		}
		if strings.TrimSpace(string(rest)) != want || code != wantCode {
			t.Fatalf("%v: output %q, exit %d (%v), stderr %q", sig, rest, code, err, stderr)
		}
	}
}

func TestTTY(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := hearthCmd(ctx, "cradle", "run", "-it", img.busybox, "sh")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	var out syncBuffer
	go io.Copy(&out, ptmx)
	waitFor := func(s string) {
		t.Helper()
		eventually(t, 2*time.Minute, "terminal output "+s, func() bool { return strings.Contains(out.String(), s) })
	}
	ptmx.Write([]byte("tty; stty size; echo T$TERM\r"))
	waitFor("40 100")
	waitFor("Txterm")
	if !strings.Contains(out.String(), "/dev/pts/0") {
		t.Fatalf("tty: %q", out.String())
	}
	// A window change reaches the container's terminal.
	pty.Setsize(ptmx, &pty.Winsize{Rows: 25, Cols: 81})
	// SIGWINCH reaches the CLI asynchronously: ask until the new size shows.
	eventually(t, time.Minute, "the new window size", func() bool {
		ptmx.Write([]byte("stty size\r"))
		time.Sleep(300 * time.Millisecond)
		return strings.Contains(out.String(), "25 81")
	})
	// ^C is the terminal's: it interrupts the foreground job, not the pod.
	ptmx.Write([]byte("sleep 30\r"))
	time.Sleep(500 * time.Millisecond)
	ptmx.Write([]byte{3})
	ptmx.Write([]byte("echo after-int\r"))
	waitFor("after-int")
	ptmx.Write([]byte("exit 5\r"))
	cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 5 {
		t.Fatalf("exit code %d, output %q", code, out.String())
	}
}

func TestDetachedLifecycle(t *testing.T) {
	t.Parallel()
	id := startPod(t, "--name", "life", "--stop-timeout", "1", img.busybox, "sh", "-c",
		`trap 'echo stopping; exit 0' TERM; echo started; while :; do sleep 0.1; done`)
	waitLog(t, id, "started")
	p := inspect(t, id)
	if p.State.Status != "running" || p.Launch.Name != "life" || p.State.Kernel == "" {
		t.Fatalf("inspect: %+v", p)
	}
	ls := must(t, "cradle", "ls")
	if !strings.Contains(ls, id[:12]) || !strings.Contains(ls, "Up ") || !strings.Contains(ls, "life") || !strings.Contains(ls, podIP(t, id)) {
		t.Fatalf("ls:\n%s", ls)
	}

	// exec: stdio, exit codes, env, user, working dir, stdin.
	r := hearth(t, "cradle", "exec", "-e", "X=1", "-u", "alice", "-w", "/tmp", id, "sh", "-c", `echo "$X $(id -un) $(pwd)"; echo err >&2; exit 3`)
	if r.code != 3 || r.stdout != "1 alice /tmp\n" || r.stderr != "err\n" {
		t.Fatalf("exec: %s", r)
	}
	r = hearthWith(t, cmdOpts{stdin: strings.NewReader("a\nb\nc\n")}, "cradle", "exec", "-i", "life", "wc", "-l")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "3" {
		t.Fatalf("exec -i: %s", r)
	}
	r = hearth(t, "cradle", "exec", id, "nope")
	if r.code != 127 {
		t.Fatalf("exec of a missing command: %s", r)
	}
	// exec shares the container's namespaces: it sees PID 1 and the rootfs.
	r = hearth(t, "cradle", "exec", id, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; hostname")
	if !strings.HasPrefix(r.stdout, "sh -c trap") || !strings.HasSuffix(r.stdout, id[:12]+"\n") {
		t.Fatalf("exec namespaces: %s", r)
	}

	// logs, and logs -f until the container exits.
	if got := must(t, "cradle", "logs", id); got != "started\n" {
		t.Fatalf("logs: %q", got)
	}
	cmd, out, _ := startCLI(t, "cradle", "logs", "-f", id)
	readLine(t, out, "started")
	must(t, "cradle", "stop", "-t", "5", id)
	rest, _ := io.ReadAll(out)
	cmd.Wait()
	if strings.TrimSpace(string(rest)) != "stopping" {
		t.Fatalf("logs -f after stop: %q", rest)
	}
	p = inspect(t, id)
	if p.State.Status != "exited" || p.State.Containers[0].Exit == nil || p.State.Containers[0].Exit.Code != 0 {
		t.Fatalf("after stop: %+v", p.State)
	}
	if !strings.Contains(must(t, "cradle", "ls"), "Exited (0)") {
		t.Fatal("ls does not show the exit")
	}
	// The pod's VM and tap are gone; its record stays until rm.
	if len(qemuOf(id)) > 0 || linkExists(tapOf(id)) {
		t.Fatal("stopped pod still has its VM or tap")
	}
	if got := must(t, "cradle", "logs", id); got != "started\nstopping\n" {
		t.Fatalf("logs of an exited pod: %q", got)
	}
	r = hearth(t, "cradle", "exec", id, "true")
	if r.code == 0 || !strings.Contains(r.stderr, "is not running") {
		t.Fatalf("exec into an exited pod: %s", r)
	}
	must(t, "cradle", "rm", id)
	assertGone(t, id)
}

func TestStopKillsAfterTimeout(t *testing.T) {
	t.Parallel()
	// sleep as PID 1 has no handler for SIGTERM, so stop must kill it.
	id := startPod(t, img.busybox, "sleep", "600")
	must(t, "cradle", "stop", "-t", "1", id)
	if p := inspect(t, id); p.State.Containers[0].Exit == nil || p.State.Containers[0].Exit.Code != 137 {
		t.Fatalf("after stop: %+v", p.State)
	}
	// kill sends any signal to the container.
	id2 := startPod(t, img.busybox, "sh", "-c", `trap 'exit 12' USR1; echo ready; while :; do sleep 0.1; done`)
	waitLog(t, id2, "ready")
	must(t, "cradle", "kill", "-s", "USR1", id2)
	r := hearth(t, "cradle", "wait", id2)
	if r.stdout != "main 12\n" {
		t.Fatalf("wait after kill -s USR1: %s", r)
	}
	r = hearth(t, "cradle", "rm", id2)
	if r.code != 0 {
		t.Fatal(r)
	}
	assertGone(t, id2)
}

func TestRemoveRunningNeedsForce(t *testing.T) {
	t.Parallel()
	id := startPod(t, img.busybox, "sleep", "600")
	r := hearth(t, "cradle", "rm", id)
	if r.code == 0 || !strings.Contains(r.stderr, "is running") {
		t.Fatalf("rm of a running pod: %s", r)
	}
	must(t, "cradle", "rm", "-f", id[:12])
	assertGone(t, id)
}

func TestKilledCLIRemovesItsPod(t *testing.T) {
	t.Parallel()
	cmd, out, _ := startCLI(t, "cradle", "run", "--name", "orphan", "--stop-timeout", "1", img.busybox, "sh", "-c", "echo up; sleep 600")
	readLine(t, out, "up")
	p := inspect(t, "orphan")
	cmd.Process.Kill()
	cmd.Wait()
	assertGone(t, p.Launch.ID)
	if processAlive(p.State.ShimPID) {
		t.Fatal("the pod's supervisor outlived the pod")
	}
}

func TestKilledSupervisorTakesQEMUAlong(t *testing.T) {
	t.Parallel()
	id := startPod(t, img.busybox, "sleep", "600")
	p := inspect(t, id)
	if !processAlive(p.State.VMPID) {
		t.Fatalf("no QEMU for pod: %+v", p.State)
	}
	syscall.Kill(p.State.ShimPID, syscall.SIGKILL)
	eventually(t, 30*time.Second, "QEMU to die with its supervisor", func() bool {
		return !processAlive(p.State.VMPID) && !linkExists(tapOf(id))
	})
	if !strings.Contains(must(t, "cradle", "ls"), "Dead") {
		t.Fatal("ls does not report the pod dead")
	}
	must(t, "cradle", "rm", id)
	assertGone(t, id)
}

func TestDetachedPodOutlivesCLI(t *testing.T) {
	t.Parallel()
	// The CLI that started it has exited; the pod serves on, and a new
	// CLI process finds it.
	id := startPod(t, img.busybox, "sh", "-c", "echo $$ > /tmp/pid; echo ready; sleep 600")
	waitLog(t, id, "ready")
	r := hearth(t, "cradle", "exec", id, "cat", "/tmp/pid")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "1" {
		t.Fatalf("exec: %s", r)
	}
	data, _ := os.ReadFile(filepath.Join(dataDir, "cradle", "pods", id, "state.json"))
	if !bytes.Contains(data, []byte(`"running"`)) {
		t.Fatalf("state: %s", data)
	}
}
