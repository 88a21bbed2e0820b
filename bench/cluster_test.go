//go:build bench

package bench

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hearth-cloud/hearth/internal/testcluster"
	"github.com/hearth-cloud/hearth/macro/model"
)

const benchTTL = 3 * time.Second

var ports testcluster.Ports

// clusterNode starts a node of a loopback cluster.
func clusterNode(t *testing.T, e *env, nm string, subnet int, extra ...string) *testcluster.Node {
	n, err := testcluster.NewNode(e.hearth, nm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Cleanup)
	p, err := ports.Three()
	if err != nil {
		t.Fatal(err)
	}
	n.Up = append([]string{"--lease-ttl", benchTTL.String(), "--listen", fmt.Sprintf("127.0.0.1:%d", p),
		"--pod-bridge", "hth-b-" + nm, "--pod-cidr", fmt.Sprintf("10.92.%d.0/24", subnet)}, extra...)
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	return n
}

func listenOf(n *testcluster.Node) string {
	for i, a := range n.Up {
		if a == "--listen" {
			return n.Up[i+1]
		}
	}
	return ""
}

func token(t *testing.T, n *testcluster.Node) []string {
	out, err := n.Command("join-token").Output()
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--join", listenOf(n), "--token", strings.TrimSpace(string(out))}
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Time {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Now()
}

func TestBenchFailover(t *testing.T) {
	e := setup(t)
	n1 := clusterNode(t, e, "f1", 1)
	join := token(t, n1)
	nodes := []*testcluster.Node{n1, clusterNode(t, e, "f2", 2, join...), clusterNode(t, e, "f3", 3, join...)}
	ctx := context.Background()
	const runs = 3
	var writes, binds []time.Duration
	for i := 0; i < runs; i++ {
		var leader, other *testcluster.Node
		waitFor(t, time.Minute, "a leader", func() bool {
			for _, n := range nodes {
				if n.Running() && n.Leads() {
					leader = n
				}
			}
			return leader != nil
		})
		for _, n := range nodes {
			if n != leader {
				other = n
			}
		}
		leader.Kill()
		killed := time.Now()
		// The floor: etcd's own failover, the first write that succeeds.
		podName := fmt.Sprintf("failover-%d", i)
		p := &model.Pod{Meta: model.Meta{Tenant: "bench", Name: podName}, Spec: model.PodSpec{
			Containers: []model.Container{{Name: "c", Image: "hearth.invalid/none"}}}}
		wrote := waitFor(t, time.Minute, "a write after failover", func() bool {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := other.Admin().CreatePod(cctx, p)
			return err == nil
		})
		bound := waitFor(t, time.Minute, "a bind after failover", func() bool {
			got, err := other.Admin().Pod(ctx, "bench", podName)
			if time.Since(killed) > 50*time.Second {
				for _, n := range nodes {
					t.Logf("%s:\n%s", n.Name, n.Log)
				}
				t.Logf("pod: %+v %v", got, err)
			}
			return err == nil && got.Spec.NodeName != ""
		})
		writes = append(writes, wrote.Sub(killed))
		binds = append(binds, bound.Sub(killed))
		if err := leader.Start(); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("\nFailover: SIGKILL of the leader (control node and etcd member of three), lease TTL %s, %d runs\n\n", benchTTL, runs)
	fmt.Println("| what                                        | p50 (ms) | max (ms) |")
	fmt.Println("|---------------------------------------------|---------:|---------:|")
	fmt.Printf("| kill to the next bind                       | %8.0f | %8.0f |\n", ms(pct(binds, .5)), ms(pct(binds, 1)))
	fmt.Printf("| floor: kill to etcd's next accepted write   | %8.0f | %8.0f |\n", ms(pct(writes, .5)), ms(pct(writes, 1)))
	fmt.Printf("\nratio bind/floor: p50 %.2fx (target: next bind within 5 s)\n", ratio(binds, writes, .5))
}

func TestBenchNodeLoss(t *testing.T) {
	e := setup(t)
	reg := startRegistry(t, e.dir)
	ref := reg.Host + "/bench/busybox:1"
	img, err := tarball.ImageFromPath(e.image, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	c := clusterNode(t, e, "l1", 4)
	join := append(token(t, c), "--role", "worker", "--label", "pool=bench")
	workers := map[string]*testcluster.Node{"lw1": clusterNode(t, e, "lw1", 5, join...), "lw2": clusterNode(t, e, "lw2", 6, join...)}
	ctx := context.Background()
	p := &model.Pod{Meta: model.Meta{Tenant: "bench", Name: "mover"}, Spec: model.PodSpec{
		Containers:   []model.Container{{Name: "c", Image: ref, Command: []string{"sleep", "100000"}}},
		NodeSelector: map[string]string{"pool": "bench"},
		Restart:      model.Restart{Policy: model.RestartAlways},
		Resources:    model.Resources{CPUs: 1, MemoryMiB: 96},
	}}
	if _, err := c.Admin().CreatePod(ctx, p); err != nil {
		t.Fatal(err)
	}
	const runs = 3
	var moves []time.Duration
	for i := 0; i < runs; i++ {
		var on string
		waitFor(t, 3*time.Minute, "the pod to run", func() bool {
			got, err := c.Admin().Pod(ctx, "bench", "mover")
			if err == nil && got.Status.Phase == model.PhaseRunning {
				on = got.Spec.NodeName
			}
			return on != ""
		})
		w := workers[on]
		w.Kill()
		killed := time.Now()
		moved := waitFor(t, 3*time.Minute, "the pod to run elsewhere", func() bool {
			got, err := c.Admin().Pod(ctx, "bench", "mover")
			return err == nil && got.Spec.NodeName != on && got.Status.Phase == model.PhaseRunning
		})
		moves = append(moves, moved.Sub(killed))
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
	}
	ttl := []time.Duration{benchTTL}
	fmt.Printf("\nNode loss: SIGKILL of the worker running a pod (restart always), lease TTL %s, %d runs, accelerator %s\n\n", benchTTL, runs, e.accel)
	fmt.Println("| what                                          | p50 (ms) | max (ms) |")
	fmt.Println("|-----------------------------------------------|---------:|---------:|")
	fmt.Printf("| kill to the pod running on the other worker   | %8.0f | %8.0f |\n", ms(pct(moves, .5)), ms(pct(moves, 1)))
	fmt.Printf("| floor: the lease TTL                          | %8.0f | %8.0f |\n", ms(benchTTL), ms(benchTTL))
	fmt.Printf("\nratio to the TTL: p50 %.2fx (target: within TTL + 5 s = %.1fx)\n", ratio(moves, ttl, .5), float64(benchTTL+5*time.Second)/float64(benchTTL))
}
