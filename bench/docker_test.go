//go:build bench

package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hearth-cloud/hearth/internal/testcluster"
	"github.com/hearth-cloud/hearth/internal/testimage"
)

const (
	dockerCLI   = "/usr/local/bin/docker"
	benchImage  = "hearth.bench/busybox:latest"
	dockerAPIV  = "/v1.50"
	psWorkers   = 16
	psCreated   = 1000
	psListRuns  = 20
	dockerSock  = "docker.sock"
	dockerRunID = "hearth-bench-docker-%d"
)

// dockerNode starts a `hearth up` and loads the bench image into it
// through the docker CLI.
func dockerNode(t *testing.T, e *env, nm string, subnet int) *testcluster.Node {
	n := clusterNode(t, e, nm, subnet)
	out, err := dockerCmd(e, n, "load", "-i", e.image).CombinedOutput()
	if err != nil {
		t.Fatalf("docker load: %v\n%s\n%s", err, out, n.Log)
	}
	return n
}

// dockerCmd is the real docker CLI pointed at the node's socket.
func dockerCmd(e *env, n *testcluster.Node, args ...string) *exec.Cmd {
	cmd := exec.Command(dockerCLI, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+filepath.Join(n.Run, dockerSock),
		"DOCKER_CONFIG="+filepath.Join(e.dir, "docker-config"))
	return cmd
}

// dockerOK runs the docker CLI against the node and fails the test unless
// it succeeds; it returns the trimmed output.
func dockerOK(t *testing.T, e *env, n *testcluster.Node, args ...string) string {
	t.Helper()
	out, err := dockerCmd(e, n, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// loadImage writes img as ref into a docker-archive and docker-loads it
// into the node; it returns the archive's path.
func loadImage(t *testing.T, e *env, n *testcluster.Node, ref string, img func() (v1.Image, error)) string {
	t.Helper()
	im, err := img()
	if err != nil {
		t.Fatal(err)
	}
	tar := filepath.Join(e.dir, strings.NewReplacer("/", "-", ":", "-").Replace(ref)+".tar")
	if err := testimage.WriteDockerArchive(tar, ref, im); err != nil {
		t.Fatal(err)
	}
	dockerOK(t, e, n, "load", "-i", tar)
	return tar
}

func TestBenchDockerRun(t *testing.T) {
	e := setup(t)
	bundle := e.runcBundle(t)
	n := dockerNode(t, e, "dr1", 7)
	// Warm once: the first docker run prepares the image's layers on the node.
	timeIt(t, dockerCmd(e, n, "run", "--rm", benchImage, "true"))
	runs := runs()
	var docker, cradle, runc []time.Duration
	for i := 0; i < runs; i++ {
		// Interleaved, so a noisy moment hits all three alike.
		docker = append(docker, timeIt(t, dockerCmd(e, n, "run", "--rm", benchImage, "true")))
		cradle = append(cradle, timeIt(t, e.hearthCmd("cradle", "run", e.image, "true")))
		runc = append(runc, timeIt(t, exec.Command("runc", "run", "--bundle", bundle, fmt.Sprintf(dockerRunID, i))))
	}
	row := func(name string, d []time.Duration) string {
		return fmt.Sprintf("| %-44s | %8.0f | %8.0f |", name, ms(pct(d, .5)), ms(pct(d, .9)))
	}
	fmt.Printf("\nDocker run: wall time of `true`, %d runs each, accelerator %s\n\n", runs, e.accel)
	fmt.Println("| what                                         | p50 (ms) | p90 (ms) |")
	fmt.Println("|----------------------------------------------|---------:|---------:|")
	fmt.Println(row("docker run --rm IMG true (hearth up)", docker))
	fmt.Println(row("hearth cradle run IMG true", cradle))
	fmt.Println(row("runc run (same image)", runc))
	fmt.Printf("\nratio docker/cradle: p50 %.2fx, p90 %.2fx\n", ratio(docker, cradle, .5), ratio(docker, cradle, .9))
	fmt.Printf("ratio docker/runc:   p50 %.1fx, p90 %.1fx\n", ratio(docker, runc, .5), ratio(docker, runc, .9))
}

// engine is a bare Docker Engine API client on a unix socket.
type engine struct{ c *http.Client }

func newEngine(sock string) *engine {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConnsPerHost: psWorkers,
	}
	return &engine{c: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
}

func (g *engine) do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://docker"+dockerAPIV+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// parallel runs fn(0..n-1) on psWorkers goroutines and returns the first
// error.
func parallel(n int, fn func(i int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	next := make(chan int)
	for w := 0; w < psWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func TestBenchDockerPs(t *testing.T) {
	e := setup(t)
	n := dockerNode(t, e, "dp1", 8)
	g := newEngine(filepath.Join(n.Run, dockerSock))

	ids := make([]string, psCreated)
	start := time.Now()
	err := parallel(psCreated, func(i int) error {
		var out struct{ Id string }
		err := g.do("POST", fmt.Sprintf("/containers/create?name=bench-ps-%d", i),
			map[string]any{"Image": benchImage, "Cmd": []string{"true"}}, &out)
		ids[i] = out.Id
		return err
	})
	created := time.Since(start)
	t.Cleanup(func() {
		start := time.Now()
		err := parallel(len(ids), func(i int) error {
			if ids[i] == "" {
				return nil
			}
			return g.do("DELETE", "/containers/"+ids[i]+"?force=1", nil, nil)
		})
		if err != nil {
			t.Errorf("removing the containers: %v", err)
		}
		t.Logf("removed %d containers in %s", len(ids), time.Since(start).Round(time.Millisecond))
	})
	if err != nil {
		t.Fatalf("creating the containers: %v", err)
	}
	t.Logf("created %d containers in %s (%d workers)", psCreated, created.Round(time.Millisecond), psWorkers)

	// Warm both once, and check they see every container.
	out, err := dockerCmd(e, n, "ps", "-a", "-q").Output()
	if err != nil {
		t.Fatalf("docker ps: %v", err)
	}
	if got := len(strings.Fields(string(out))); got != psCreated {
		t.Fatalf("docker ps -a -q lists %d containers, want %d", got, psCreated)
	}
	out, err = n.Command("pod", "ls").Output()
	if err != nil {
		t.Fatalf("hearth pod ls: %v", err)
	}
	if got := len(strings.Split(strings.TrimSpace(string(out)), "\n")) - 1; got != psCreated {
		t.Fatalf("hearth pod ls lists %d pods, want %d", got, psCreated)
	}

	var docker, podls []time.Duration
	for i := 0; i < psListRuns; i++ {
		docker = append(docker, timeIt(t, dockerCmd(e, n, "ps", "-a", "-q")))
		podls = append(podls, timeIt(t, n.Command("pod", "ls")))
	}
	row := func(name string, d []time.Duration) string {
		return fmt.Sprintf("| %-44s | %8.0f | %8.0f |", name, ms(pct(d, .5)), ms(pct(d, .9)))
	}
	fmt.Printf("\nDocker ps: wall time of a listing of %d created containers, %d runs each\n\n", psCreated, psListRuns)
	fmt.Println("| what                                         | p50 (ms) | p90 (ms) |")
	fmt.Println("|----------------------------------------------|---------:|---------:|")
	fmt.Println(row("docker ps -a -q (hearth up)", docker))
	fmt.Println(row("hearth pod ls", podls))
	fmt.Printf("\nratio docker/pod-ls: p50 %.2fx, p90 %.2fx (target 1.5x)\n", ratio(docker, podls, .5), ratio(docker, podls, .9))
}
