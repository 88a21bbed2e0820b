//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-cloud/hearth/internal/testcluster"
)

// poolSeq numbers the nodes' address pools.
var poolSeq atomic.Int32

// upNode is one `hearth up` with its own dirs and ports.
type upNode struct {
	*testcluster.Node
	t *testing.T
}

func newUpNode(t *testing.T, name string) *upNode {
	n, err := testcluster.NewNode(hearthB, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Cleanup)
	// A pool of its own, so that networks of the tests' clusters, which
	// run side by side on this host, never overlap.
	n.Up = []string{"--lease-ttl", "3s",
		"--default-address-pool", fmt.Sprintf("base=10.%d.0.0/16,size=24", 128+poolSeq.Add(1)%120),
		"--etcd-listen-client", fmt.Sprintf("https://127.0.0.1:%d", freePort(t)),
		"--etcd-listen-peer", fmt.Sprintf("https://127.0.0.1:%d", freePort(t))}
	return &upNode{Node: n, t: t}
}

// logOnFailure shows the tail of the node's log when the test fails.
func (n *upNode) logOnFailure() {
	n.t.Cleanup(func() {
		if n.t.Failed() {
			l := n.Log.String()
			if len(l) > 8000 {
				l = l[len(l)-8000:]
			}
			n.t.Logf("hearth up log (tail):\n%s", l)
		}
	})
}

// start runs `hearth up` and waits until it serves and leads.
func (n *upNode) start(extra ...string) {
	n.t.Helper()
	if err := n.Start(extra...); err != nil {
		n.t.Fatal(err)
	}
	eventually(n.t, time.Minute, n.Name+" to lead", n.Leads)
}

func (n *upNode) stop() {
	if err := n.Stop(); err != nil {
		n.t.Error(err)
	}
}

func (n *upNode) args(extra ...string) []string { return n.Args(extra...) }

func (n *upNode) hearth(args ...string) result {
	n.t.Helper()
	return hearthWith(n.t, cmdOpts{}, n.Args(args...)...)
}

func (n *upNode) must(args ...string) string {
	n.t.Helper()
	r := n.hearth(args...)
	if r.code != 0 {
		n.t.Fatalf("hearth %s: %s\nup log:\n%s", strings.Join(args, " "), r, n.Log)
	}
	return r.stdout
}

type podView struct {
	Name string `json:"name"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase        string `json:"phase"`
		Reason       string `json:"reason"`
		Message      string `json:"message"`
		IP           string `json:"ip"`
		CradleID     string `json:"cradleId"`
		ExitCode     int    `json:"exitCode"`
		RestartCount int    `json:"restartCount"`
	} `json:"status"`
}

func (n *upNode) pod(name string) podView {
	n.t.Helper()
	var p podView
	if err := json.Unmarshal([]byte(n.must("pod", "inspect", name)), &p); err != nil {
		n.t.Fatal(err)
	}
	return p
}

func (n *upNode) createPod(spec string) {
	n.t.Helper()
	f := filepath.Join(n.t.TempDir(), "pod.json")
	os.WriteFile(f, []byte(spec), 0o644)
	n.must("pod", "create", "-f", f)
}

func (n *upNode) waitPod(name string, what string, cond func(p podView) bool) podView {
	n.t.Helper()
	var p podView
	eventually(n.t, 2*time.Minute, "pod "+name+" "+what, func() bool {
		p = n.pod(name)
		return cond(p)
	})
	return p
}

func TestUpSingleNode(t *testing.T) {
	t.Parallel()
	n := newUpNode(t, "n1")
	n.start()
	n.must("image", "load", "-q", "-i", img.busybox)

	ls := n.must("node", "ls")
	if !strings.Contains(ls, "n1") || !strings.Contains(ls, "control") || !strings.Contains(ls, "Ready") {
		t.Fatalf("node ls:\n%s", ls)
	}

	// A server pod: Running, with an address, reached through its
	// published port (its address is in its tenant's namespace).
	port := freePort(t)
	n.createPod(fmt.Sprintf(`{"name": "web", "spec": {"containers": [{"name": "main", "image": "hearth.test/busybox",
		"command": ["sh", "-c", "mkdir /www && echo served-by-macro > /www/index.html && exec httpd -f -p 8080 -h /www"]}],
		"ports": [{"hostIP": "127.0.0.1", "hostPort": %d, "containerPort": 8080, "protocol": "tcp"}],
		"restart": {"policy": "always"}, "resources": {"cpus": 1, "memoryMiB": 128}}}`, port))
	web := n.waitPod("web", "running", func(p podView) bool { return p.Status.Phase == "Running" })
	if web.Spec.NodeName != "n1" || web.Status.CradleID == "" {
		t.Fatalf("web: %+v", web)
	}
	if ip, _, _ := strings.Cut(web.Status.IP, "/"); !strings.HasPrefix(ip, "10.88.") {
		t.Errorf("web's address: %q", web.Status.IP)
	}
	eventually(t, time.Minute, "the pod's server", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return b.String() == "served-by-macro\n"
	})

	// exec and logs through the admin API's data path.
	r := n.hearth("pod", "exec", "web", "cat", "/www/index.html")
	if r.code != 0 || r.stdout != "served-by-macro\n" {
		t.Fatalf("pod exec: %s", r)
	}
	r = hearthWith(t, cmdOpts{stdin: strings.NewReader("a\nb\n")}, n.args("pod", "exec", "-i", "web", "wc", "-l")...)
	if strings.TrimSpace(r.stdout) != "2" {
		t.Fatalf("pod exec -i: %s", r)
	}

	// Exit codes and restart policies.
	n.createPod(`{"name": "fails", "spec": {"containers": [{"name": "main", "image": "hearth.test/busybox",
		"command": ["sh", "-c", "exit 3"]}], "restart": {"policy": "on-failure", "maxRetries": 2}, "resources": {"cpus": 1, "memoryMiB": 96}}}`)
	p := n.waitPod("fails", "exited after its retries", func(p podView) bool {
		return p.Status.Phase == "Exited" && p.Status.RestartCount == 2
	})
	if p.Status.ExitCode != 3 {
		t.Fatalf("fails: %+v", p)
	}

	// A pod that fits nowhere waits, and says why.
	n.createPod(`{"name": "huge", "spec": {"containers": [{"name": "main", "image": "hearth.test/busybox", "command": ["true"]}],
		"resources": {"cpus": 1, "memoryMiB": 100000000}}}`)
	p = n.waitPod("huge", "unschedulable", func(p podView) bool { return p.Status.Reason == "Unschedulable" })
	if p.Status.Phase != "Pending" || !strings.Contains(p.Status.Message, "insufficient memory") {
		t.Fatalf("huge: %+v", p)
	}
	n.must("pod", "rm", "huge")

	// A service keeps its replicas.
	f := filepath.Join(t.TempDir(), "svc.json")
	os.WriteFile(f, []byte(`{"name": "sleepers", "spec": {"replicas": 2, "template": {"containers": [{"name": "main",
		"image": "hearth.test/busybox", "command": ["sleep", "600"]}], "resources": {"cpus": 1, "memoryMiB": 96}}}}`), 0o644)
	n.must("service", "create", "-f", f)
	n.waitPod("sleepers-1", "running", func(p podView) bool { return p.Status.Phase == "Running" })
	n.waitPod("sleepers-2", "running", func(p podView) bool { return p.Status.Phase == "Running" })
	n.must("service", "scale", "sleepers", "0")
	eventually(t, time.Minute, "the service's pods to go", func() bool {
		return !strings.Contains(n.must("pod", "ls"), "sleepers-")
	})

	// A second hearth on the same data dir is refused.
	second := n.hearth("up", "--name", "n1", "--etcd-listen-client", "http://127.0.0.1:1", "--etcd-listen-peer", "http://127.0.0.1:2")
	if second.code == 0 || !strings.Contains(second.stderr, "another hearth is running") {
		t.Fatalf("second hearth up: %s", second)
	}

	// Restarting hearth does not stop pods: they are adopted.
	qemu := qemuOfRun(n.Run, web.Status.CradleID)
	if len(qemu) != 1 {
		t.Fatalf("QEMU of web: %v", qemu)
	}
	n.stop()
	if !processAlive(qemu[0]) {
		t.Fatal("stopping hearth stopped a pod")
	}
	n.start()
	eventually(t, time.Minute, "the running pod to be adopted", func() bool {
		return strings.Contains(n.Log.String(), "adopted running pod")
	})
	after := n.waitPod("web", "running again", func(p podView) bool { return p.Status.Phase == "Running" })
	if after.Status.CradleID != web.Status.CradleID || after.Status.RestartCount != web.Status.RestartCount || !processAlive(qemu[0]) {
		t.Fatalf("after restart: %+v (before %+v)", after, web)
	}

	// Deleting a pod stops its VM.
	n.must("pod", "rm", "web")
	eventually(t, time.Minute, "web's VM to go", func() bool { return !processAlive(qemu[0]) })
}

// qemuOfRun lists QEMU processes of one run dir's pod.
func qemuOfRun(run, id string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		cl := string(b)
		if strings.Contains(cl, "qemu-system") && strings.Contains(cl, run) && strings.Contains(cl, "hearth-"+id[:12]) {
			out = append(out, pid)
		}
	}
	return out
}

func TestUpBadInput(t *testing.T) {
	t.Parallel()
	n := newUpNode(t, "n1")
	// No hearth running yet.
	r := n.hearth("node", "ls")
	if r.code == 0 || !strings.Contains(r.stderr, "hearth is not running") {
		t.Fatalf("node ls without hearth: %s", r)
	}
	etcdPeer := n.Up[len(n.Up)-1]
	// An etcd port in use.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, hearthB, n.args("up", "--name", "n1", "--etcd-listen-client", "https://"+ln.Addr().String(), "--etcd-listen-peer", etcdPeer)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "address already in use") {
		t.Fatalf("up with a port in use: %v\n%s", err, out)
	}
	for _, bad := range [][]string{
		{"up", "--name", "Bad_Name"},
		{"up", "--role", "boss"},
		{"up", "--lease-ttl", "10ms"},
		{"up", "--label", "novalue"},
	} {
		r := n.hearth(bad...)
		if r.code == 0 || strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
			t.Errorf("hearth %v: %s", bad, r)
		}
	}

	n.start()
	for _, c := range []struct {
		body, want string
	}{
		{`{"name": "x"`, "unexpected EOF"},
		{`{"name": "x", "bogus": 1}`, "unknown field"},
		{`{"name": "Bad_Name", "spec": {"containers": [{"image": "busybox"}]}}`, "invalid pods name"},
		{`{"name": "empty", "spec": {}}`, "no containers"},
		{`{"name": "norestart", "spec": {"containers": [{"image": "busybox"}], "restart": {"policy": "sometimes"}}}`, "unknown restart policy"},
	} {
		f := filepath.Join(t.TempDir(), "pod.json")
		os.WriteFile(f, []byte(c.body), 0o644)
		r := n.hearth("pod", "create", "-f", f)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("pod create %s: want %q, got %s", c.body, c.want, r)
		}
	}
	n.createPod(`{"name": "dup", "spec": {"containers": [{"image": "hearth.test/nosuchimage"}]}}`)
	f := filepath.Join(t.TempDir(), "pod.json")
	os.WriteFile(f, []byte(`{"name": "dup", "spec": {"containers": [{"image": "busybox"}]}}`), 0o644)
	if r := n.hearth("pod", "create", "-f", f); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Fatalf("duplicate pod: %s", r)
	}
	// A missing image fails the pod with the reason.
	p := n.waitPod("dup", "failed", func(p podView) bool { return p.Status.Phase == "Failed" })
	if p.Status.Reason != "StartError" || !strings.Contains(p.Status.Message, "nosuchimage") {
		t.Fatalf("pod of a missing image: %+v", p)
	}
	if r := n.hearth("pod", "inspect", "nosuch"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("inspect unknown: %s", r)
	}
	if r := n.hearth("pod", "rm", "nosuch"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("rm unknown: %s", r)
	}
}

// TestUpExternalEtcd: hearth up on an etcd cluster of its own (Debian's
// etcd-server here), not the embedded member.
func TestUpExternalEtcd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	etcd := exec.Command("etcd", "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "default="+peer)
	if err := etcd.Start(); err != nil {
		t.Fatalf("start etcd (apt-get install etcd-server): %v", err)
	}
	t.Cleanup(func() { etcd.Process.Kill(); etcd.Wait() })
	n := newUpNode(t, "ext1")
	// A pool of its own, so that networks of the tests' clusters, which
	// run side by side on this host, never overlap.
	n.Up = []string{"--lease-ttl", "3s",
		"--default-address-pool", fmt.Sprintf("base=10.%d.0.0/16,size=24", 128+poolSeq.Add(1)%120), "--etcd-endpoints", client}
	eventually(t, time.Minute, "etcd to serve", func() bool {
		resp, err := http.Get(client + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	n.start()
	n.must("image", "load", "-q", "-i", img.busybox)
	n.createPod(`{"name": "on-external", "spec": {"containers": [{"name": "main", "image": "hearth.test/busybox", "command": ["sh", "-c", "exit 9"]}],
		"resources": {"cpus": 1, "memoryMiB": 96}}}`)
	p := n.waitPod("on-external", "exited", func(p podView) bool { return p.Status.Phase == "Exited" })
	if p.Status.ExitCode != 9 {
		t.Fatalf("pod on an external etcd: %+v", p)
	}
}
