//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-cloud/hearth/macro/model"
)

// clusterNode is a node of a multi-node cluster on loopback.
type clusterNode struct {
	*upNode
	listen string
}

func newClusterNode(t *testing.T, name string, subnet int, extra ...string) *clusterNode {
	n := newUpNode(t, name)
	p, err := ports.Three()
	if err != nil {
		t.Fatal(err)
	}
	c := &clusterNode{upNode: n, listen: fmt.Sprintf("127.0.0.1:%d", p)}
	// A node's etcd URLs follow from --listen.
	n.Up = append([]string{"--lease-ttl", "3s", "--listen", c.listen, "--pod-bridge", "hth-e2e-" + name,
		"--pod-cidr", fmt.Sprintf("10.91.%d.0/24", subnet)}, extra...)
	return c
}

// boot starts the node and waits until it serves.
func (c *clusterNode) boot() {
	c.t.Helper()
	if err := c.Start(); err != nil {
		c.t.Fatal(err)
	}
}

func TestCluster(t *testing.T) {
	reg := startRegistry(t, noAuth)
	image := pushArchive(t, img.busybox, reg.Host+"/e2e/busybox:1")

	n1 := newClusterNode(t, "n1", 1)
	n1.boot()
	token := strings.TrimSpace(n1.must("join-token"))
	join := []string{"--join", n1.listen, "--token", token}
	n2 := newClusterNode(t, "n2", 2, join...)
	n3 := newClusterNode(t, "n3", 3, join...)
	w1 := newClusterNode(t, "w1", 4, append(join, "--role", "worker", "--label", "pool=workers")...)
	w2 := newClusterNode(t, "w2", 5, append(join, "--role", "worker", "--label", "pool=workers")...)
	for _, n := range []*clusterNode{n2, n3, w1, w2} {
		n.boot()
	}
	ls := n3.must("node", "ls")
	for _, want := range []string{"n1", "n2", "n3", "w1", "w2"} {
		if !strings.Contains(ls, want) {
			t.Fatalf("node ls lacks %s:\n%s", want, ls)
		}
	}
	// A node that has just joined is Ready once the leader has seen its
	// first lease renewal.
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(ls, "Ready") != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("not all nodes ready:\n%s", ls)
		}
		time.Sleep(200 * time.Millisecond)
		ls = n3.must("node", "ls")
	}

	// Joining twice under one name, or with another cluster's token, is
	// refused, and changes nothing.
	dup := newClusterNode(t, "w1", 6, append(join, "--role", "worker")...)
	if r := dup.hearth(append([]string{"up", "--name", "w1"}, dup.Up...)...); r.code == 0 || !strings.Contains(r.stderr, "already in the cluster") {
		t.Fatalf("a second w1: %s", r)
	}
	bad := newClusterNode(t, "x1", 7, "--join", n1.listen, "--token", "hearth1."+strings.Repeat("0", 64)+"."+strings.Repeat("1", 32))
	if r := bad.hearth(append([]string{"up", "--name", "x1"}, bad.Up...)...); r.code == 0 || !strings.Contains(r.stderr, "does not match the join token") {
		t.Fatalf("a foreign token: %s", r)
	}

	// A service pinned to the workers spreads over both.
	svc := `{"name": "spread", "spec": {"replicas": 2, "template": {"containers": [{"name": "main", "image": "` + image + `",
		"command": ["sleep", "600"]}], "nodeSelector": {"pool": "workers"}, "resources": {"cpus": 1, "memoryMiB": 96}}}}`
	f := filepath.Join(t.TempDir(), "svc.json")
	writeFile(t, f, svc)
	n2.must("service", "create", "-f", f)
	var onW1 string
	eventually(t, 3*time.Minute, "the service's pods to run on both workers", func() bool {
		pods, err := n2.Admin().Pods(context.Background(), "admin")
		if err != nil {
			return false
		}
		nodes := map[string]string{}
		for _, p := range pods {
			if strings.HasPrefix(p.Name, "spread-") && p.Status.Phase == model.PhaseRunning {
				nodes[p.Spec.NodeName] = p.Name
			}
		}
		onW1 = nodes["w1"]
		return nodes["w1"] != "" && nodes["w2"] != ""
	})

	// The data path: a command and the logs of a pod on w1, from n3,
	// through n3's admin socket and w1's node API (mutual TLS).
	r := n3.hearth("pod", "exec", onW1, "sh", "-c", "echo out-from-$(hostname); echo err >&2; exit 7")
	if r.code != 7 || r.stdout != "out-from-"+onW1+"\n" || r.stderr != "err\n" {
		t.Fatalf("pod exec across nodes: %s", r)
	}
	if r := n3.hearth("pod", "logs", onW1); r.code != 0 {
		t.Fatalf("pod logs across nodes: %s", r)
	}
	if r := n3.hearth("pod", "exec", "nosuch", "true"); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("exec into an unknown pod: %s", r)
	}

	// Writes while the leader dies: every acknowledged one survives, and
	// the scheduler resumes under a new leader.
	if !n1.Leads() {
		t.Fatalf("n1 does not lead:\n%s", n1.Log)
	}
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl := n3.Admin()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p := &model.Pod{Meta: model.Meta{Tenant: "admin", Name: fmt.Sprintf("write-%d", i)}, Spec: model.PodSpec{
				Containers:   []model.Container{{Name: "main", Image: image, Command: []string{"true"}}},
				NodeSelector: map[string]string{"pool": "nowhere"},
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := cl.CreatePod(ctx, p)
			cancel()
			if err == nil {
				mu.Lock()
				acked = append(acked, p.Name)
				mu.Unlock()
			}
		}
	}()
	time.Sleep(time.Second)
	n1.Kill()
	eventually(t, time.Minute, "a new leader", func() bool { return n2.Leads() || n3.Leads() })
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	pods, err := n3.Admin().Pods(context.Background(), "admin")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range pods {
		have[p.Name] = true
	}
	for _, name := range acked {
		if !have[name] {
			t.Errorf("acknowledged write %s is lost", name)
		}
	}
	if len(acked) < 10 {
		t.Fatalf("only %d writes were acknowledged", len(acked))
	}
	fresh := `{"name": "after-failover", "spec": {"containers": [{"name": "main", "image": "` + image + `", "command": ["sleep", "600"]}],
		"resources": {"cpus": 1, "memoryMiB": 96}}}`
	f2 := filepath.Join(t.TempDir(), "pod.json")
	writeFile(t, f2, fresh)
	n2.must("pod", "create", "-f", f2)
	eventually(t, 2*time.Minute, "the scheduler to bind after the failover", func() bool {
		p, err := n2.Admin().Pod(context.Background(), "admin", "after-failover")
		return err == nil && p.Spec.NodeName != ""
	})

	// Node loss: w1's hearth dies; its service pod runs on w2; when w1
	// comes back, it stops its stale copy.
	w1vms := strings.Fields(w1.must("cradle", "ls", "-q"))
	w1.Kill()
	eventually(t, time.Minute, onW1+" to run on w2", func() bool {
		p, err := n2.Admin().Pod(context.Background(), "admin", onW1)
		return err == nil && p.Spec.NodeName == "w2" && p.Status.Phase == model.PhaseRunning
	})
	if len(w1vms) == 0 {
		t.Fatal("w1 ran no VM")
	}
	w1.boot()
	eventually(t, time.Minute, "w1 to stop its duplicate", func() bool {
		out := w1.must("cradle", "ls", "-q")
		for _, id := range w1vms {
			if strings.Contains(out, id) {
				return false
			}
		}
		return true
	})
	n2.must("service", "rm", "spread")

	// Two of three control nodes gone: a clear "no quorum", not a hang;
	// and back to work when one returns.
	n3.Kill()
	start := time.Now()
	r = n2.hearth("node", "ls")
	if r.code == 0 || !strings.Contains(r.stderr, "no quorum") || time.Since(start) > 30*time.Second {
		t.Fatalf("node ls without quorum (%s): %s", time.Since(start), r)
	}
	n1.boot()
	eventually(t, 2*time.Minute, "quorum to return", func() bool { return n2.hearth("node", "ls").code == 0 })
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
