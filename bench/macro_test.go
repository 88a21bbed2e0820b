//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hearth-cloud/hearth/macro/agent"
	"github.com/hearth-cloud/hearth/macro/cluster"
	"github.com/hearth-cloud/hearth/macro/controller"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// threeMembers starts a three-member etcd in this process.
func threeMembers(t *testing.T) *clientv3.Client {
	dir := t.TempDir()
	type member struct{ name, client, peer string }
	var ms []member
	var initial []string
	for i := 0; i < 3; i++ {
		m := member{fmt.Sprintf("m%d", i), fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
		ms = append(ms, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	ets := make([]*cluster.Etcd, 3)
	for i, m := range ms {
		wg.Add(1)
		go func(i int, m member) {
			defer wg.Done()
			ets[i], errs[i] = cluster.StartEtcd(context.Background(), cluster.EtcdConfig{
				Name: m.name, DataDir: filepath.Join(dir, m.name), ClientURL: m.client, PeerURL: m.peer,
				InitialCluster: strings.Join(initial, ","), New: true,
			})
		}(i, m)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
		t.Cleanup(ets[i].Close)
	}
	cli, err := cluster.NewClient([]string{ms[0].client, ms[1].client, ms[2].client}, cluster.TLSFiles{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func TestBenchScheduler(t *testing.T) {
	const nodes, pods = 1000, 10000
	cli := threeMembers(t)
	st := store.New(cli)
	ctx := context.Background()
	parallel := func(n int, fn func(i int) error) {
		var wg sync.WaitGroup
		ch := make(chan int)
		for w := 0; w < 64; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range ch {
					if err := fn(i); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		for i := 0; i < n; i++ {
			ch <- i
		}
		close(ch)
		wg.Wait()
	}

	// The floor: the same number of revision-conditioned writes, straight
	// to etcd, as parallel as the binder's.
	parallel(pods, func(i int) error {
		_, err := cli.Put(ctx, fmt.Sprintf("/floor/%d", i), "x")
		return err
	})
	floorStart := time.Now()
	var floorWG sync.WaitGroup
	fch := make(chan int)
	for w := 0; w < 32; w++ {
		floorWG.Add(1)
		go func() {
			defer floorWG.Done()
			for i := range fch {
				k := fmt.Sprintf("/floor/%d", i)
				g, err := cli.Get(ctx, k)
				if err != nil {
					t.Error(err)
					return
				}
				cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", g.Kvs[0].ModRevision)).Then(clientv3.OpPut(k, "y")).Commit()
			}
		}()
	}
	for i := 0; i < pods; i++ {
		fch <- i
	}
	close(fch)
	floorWG.Wait()
	floor := time.Since(floorStart)

	lease, err := cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	parallel(nodes, func(i int) error {
		name := fmt.Sprintf("node-%04d", i)
		n := &model.Node{Meta: model.Meta{Kind: model.KindNode, Name: name}, Spec: model.NodeSpec{Role: model.RoleWorker,
			Capacity: model.Resources{CPUs: 64, MemoryMiB: 256 << 10}}, Status: model.NodeStatus{State: model.NodeReady}}
		if err := st.Create(ctx, n); err != nil {
			return err
		}
		_, err := cli.Put(ctx, agent.LeaseKey(name), name, clientv3.WithLease(lease.ID))
		return err
	})
	parallel(pods, func(i int) error {
		p := &model.Pod{Meta: model.Meta{Kind: model.KindPod, Tenant: "bench", Name: fmt.Sprintf("pod-%05d", i)},
			Spec: model.PodSpec{Containers: []model.Container{{Name: "c", Image: "busybox"}}, Resources: model.Resources{CPUs: 1, MemoryMiB: 128},
				Restart: model.Restart{Policy: model.RestartNo}, Desired: model.DesiredRunning},
			Status: model.PodStatus{Phase: model.PhasePending}}
		return st.Create(ctx, p)
	})

	var bound atomic.Int64
	done := make(chan struct{})
	var leadAt time.Time
	var once sync.Once
	mgr := &controller.Manager{Node: "bench", Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), LeaseTTL: 10 * time.Second,
		OnLeader: func(l bool) {
			if l {
				leadAt = time.Now()
			}
		},
		OnBind: func(time.Duration) {
			if bound.Add(1) == pods {
				once.Do(func() { close(done) })
			}
		},
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go mgr.Run(mctx)
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
		t.Fatalf("only %d of %d pods bound", bound.Load(), pods)
	}
	took := time.Since(leadAt)
	rate := float64(pods) / took.Seconds()
	floorRate := float64(pods) / floor.Seconds()
	fmt.Printf("\nScheduler: %d pods onto %d simulated nodes, three-member etcd on this machine\n\n", pods, nodes)
	fmt.Println("| what                                                   | time (s) | pods/s |")
	fmt.Println("|--------------------------------------------------------|---------:|-------:|")
	fmt.Printf("| hearth scheduler: watch, decide, bind                  | %8.2f | %6.0f |\n", took.Seconds(), rate)
	fmt.Printf("| floor: the same conditional writes, straight to etcd   | %8.2f | %6.0f |\n", floor.Seconds(), floorRate)
	fmt.Printf("\nratio hearth/floor: %.2fx of the floor's rate (target at least 1,000 pods/s)\n", rate/floorRate)
}
