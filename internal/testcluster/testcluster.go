// Package testcluster runs `hearth up` processes on loopback, each with
// data and run dirs and ports of its own, for the end-to-end tests and the
// benchmarks: single nodes, and clusters of several.
package testcluster

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hearth-cloud/hearth/api/admin"
	"github.com/hearth-cloud/hearth/cradle/host"
)

// Ports hands out free loopback ports, each once: a node that has not
// started yet holds none of its ports, so the system cannot tell they are
// taken.
type Ports struct {
	mu       sync.Mutex
	reserved map[int]bool
}

func free() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// One returns a free port.
func (p *Ports) One() (int, error) {
	for {
		n, err := free()
		if err != nil {
			return 0, err
		}
		p.mu.Lock()
		if p.reserved == nil {
			p.reserved = map[int]bool{}
		}
		taken := p.reserved[n]
		p.reserved[n] = true
		p.mu.Unlock()
		if !taken {
			return n, nil
		}
	}
}

// Three returns a port n with n+1 and n+2 free too: a node API and the
// etcd client and peer ports that follow it.
func (p *Ports) Three() (int, error) {
	for i := 0; i < 100; i++ {
		n, err := p.One()
		if err != nil {
			return 0, err
		}
		p.mu.Lock()
		ok := !p.reserved[n+1] && !p.reserved[n+2]
		for _, q := range []int{n + 1, n + 2} {
			if !ok {
				break
			}
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				ok = false
				break
			}
			ln.Close()
		}
		if ok {
			p.reserved[n+1], p.reserved[n+2] = true, true
		}
		p.mu.Unlock()
		if ok {
			return n, nil
		}
	}
	return 0, fmt.Errorf("no three free ports in a row")
}

// Buffer is a bytes.Buffer safe for one writer and readers.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Node is one `hearth up`.
type Node struct {
	Hearth    string // the binary
	Name      string
	Data, Run string
	// Up are the flags `up` gets besides --name.
	Up  []string
	Log *Buffer
	dir string
	cmd *exec.Cmd
}

// NewNode makes a node's dirs; it does not start it.
func NewNode(hearth, name string) (*Node, error) {
	dir, err := os.MkdirTemp("/tmp", "hn")
	if err != nil {
		return nil, err
	}
	return &Node{Hearth: hearth, Name: name, Data: filepath.Join(dir, "d"), Run: filepath.Join(dir, "r"), dir: dir}, nil
}

// Args prefixes a command's arguments with the node's dirs.
func (n *Node) Args(args ...string) []string {
	return append([]string{"--data-dir", n.Data, "--run-dir", n.Run}, args...)
}

// Command is hearth with the node's dirs.
func (n *Node) Command(args ...string) *exec.Cmd { return exec.Command(n.Hearth, n.Args(args...)...) }

// Start runs `hearth up` and waits until it serves, or says why not.
func (n *Node) Start(extra ...string) error {
	// The Docker API over TLS is off unless asked for: its default port
	// is one per host, and test nodes run side by side.
	n.cmd = n.Command(append(append([]string{"up", "--name", n.Name, "--docker-listen", ""}, n.Up...), extra...)...)
	n.Log = &Buffer{}
	n.cmd.Stdout, n.cmd.Stderr = n.Log, n.Log
	if err := n.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { n.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(n.Log.String(), "hearth is up") {
		select {
		case <-exited:
			return fmt.Errorf("%s exited:\n%s", n.Name, n.Log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not come up:\n%s", n.Name, n.Log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// Running reports whether the node's process runs.
func (n *Node) Running() bool {
	return n.cmd != nil && n.cmd.ProcessState == nil && n.cmd.Process != nil && alive(n.cmd.Process.Pid)
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// Kill sends SIGKILL and waits.
func (n *Node) Kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	waitGone(n.cmd.Process.Pid, 30*time.Second)
}

// Stop sends SIGTERM and waits; it reports a node that did not stop.
func (n *Node) Stop() error {
	if n.cmd == nil || n.cmd.Process == nil || !alive(n.cmd.Process.Pid) {
		return nil
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	if !waitGone(n.cmd.Process.Pid, 30*time.Second) {
		n.cmd.Process.Kill()
		return fmt.Errorf("%s did not stop within 30s of SIGTERM", n.Name)
	}
	return nil
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if s := string(b); strings.LastIndexByte(s, ')')+2 < len(s) && s[strings.LastIndexByte(s, ')')+2] == 'Z' {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// Cleanup stops the node, removes the pods it leaves running (they outlive
// hearth by design) and its dirs.
func (n *Node) Cleanup() {
	n.Stop()
	out, _ := n.Command("cradle", "ls", "-q").Output()
	for _, id := range strings.Fields(string(out)) {
		n.Command("cradle", "rm", "-f", id).Run()
	}
	// The node's tenants' network namespaces, which its pods held.
	if nets, err := host.OwnedNets("hearth:" + n.Data); err == nil {
		for uplink, owner := range nets {
			host.NetOfUplink(uplink, owner).Remove()
		}
	}
	os.RemoveAll(n.dir)
}

// Admin is a client of the node's admin API.
func (n *Node) Admin() *admin.Client { return admin.NewClient(filepath.Join(n.Run, "hearth.sock")) }

// Leads reports whether the node's log says it leads now.
func (n *Node) Leads() bool {
	l := n.Log.String()
	return strings.LastIndex(l, "leading the cluster") > strings.LastIndex(l, "lost leadership")
}
