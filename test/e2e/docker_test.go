//go:build e2e

package e2e

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/system"
)

// dockerImg is the busybox image as `hearth image load` names it.
const dockerImg = "hearth.test/busybox:latest"

var (
	hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)
	hex12 = regexp.MustCompile(`^[0-9a-f]{12}$`)
)

// dockerEnv is one `hearth up` that the real docker CLI, and plain HTTP
// on its socket, talk to.
type dockerEnv struct {
	n      *upNode
	bin    string
	sock   string
	config string // DOCKER_CONFIG: nothing of the host's leaks in
	http   *http.Client
}

func newDockerEnv(t *testing.T) *dockerEnv {
	bin, err := exec.LookPath("docker")
	if err != nil {
		bin = "/usr/local/bin/docker"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the docker CLI is missing: %v", err)
	}
	n := newUpNode(t, "dock1")
	n.start()
	n.must("image", "load", "-q", "-i", img.busybox)
	sock := filepath.Join(n.Run, "docker.sock")
	d := &dockerEnv{n: n, bin: bin, sock: sock, config: t.TempDir(), http: &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", sock)
		}},
		Timeout: 2 * time.Minute,
	}}
	n.logOnFailure()
	return d
}

// cmd is the docker CLI aimed at the node's socket.
func (d *dockerEnv) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, d.bin, args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "DOCKER_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, "DOCKER_HOST=unix://"+d.sock, "DOCKER_CONFIG="+d.config, "DOCKER_CLI_HINTS=false")
	return cmd
}

func (d *dockerEnv) docker(t *testing.T, args ...string) result {
	t.Helper()
	return d.dockerWith(t, cmdOpts{}, args...)
}

func (d *dockerEnv) dockerWith(t *testing.T, o cmdOpts, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := d.cmd(ctx, args...)
	cmd.Env = append(cmd.Env, o.env...)
	var stdout, stderr syncBuffer
	cmd.Stdout, cmd.Stderr, cmd.Stdin = &stdout, &stderr, o.stdin
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("docker %v: %v", args, err)
	}
	return r
}

// ok runs docker and fails the test unless it exits 0; it returns stdout.
func (d *dockerEnv) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := d.docker(t, args...)
	if r.code != 0 {
		t.Fatalf("docker %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// fails runs docker and checks it exits with code (any non-zero code
// when code is -1) and that its stderr says want.
func (d *dockerEnv) fails(t *testing.T, code int, want string, args ...string) result {
	t.Helper()
	r := d.docker(t, args...)
	if r.code == 0 || (code >= 0 && r.code != code) || !strings.Contains(r.stderr, want) {
		t.Errorf("docker %s: want exit %d and %q on stderr, got %s", strings.Join(args, " "), code, want, r)
	}
	return r
}

// api sends one request to the Docker API and returns the status, body
// and headers.
func (d *dockerEnv) api(t *testing.T, method, path, body string) (int, []byte, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://docker"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// apiError checks an answer is Docker's error: the code, and JSON with a
// message that says want.
func apiError(t *testing.T, what string, code int, body []byte, wantCode int, want string) {
	t.Helper()
	var e struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &e); code != wantCode || err != nil || !strings.Contains(e.Message, want) {
		t.Errorf("%s: want %d with a JSON message saying %q, got %d %q", what, wantCode, want, code, body)
	}
}

func (d *dockerEnv) inspect(t *testing.T, name string) container.InspectResponse {
	t.Helper()
	code, b, _ := d.api(t, "GET", "/containers/"+name+"/json", "")
	var c container.InspectResponse
	if code != http.StatusOK {
		t.Fatalf("inspect %s: %d %s", name, code, b)
	}
	if err := json.Unmarshal(b, &c); err != nil || c.State == nil || c.Config == nil || c.HostConfig == nil {
		t.Fatalf("inspect %s: %v: %s", name, err, b)
	}
	return c
}

func (d *dockerEnv) status(t *testing.T, name string) container.ContainerState {
	t.Helper()
	return d.inspect(t, name).State.Status
}

func (d *dockerEnv) waitStatus(t *testing.T, name string, want container.ContainerState) container.InspectResponse {
	t.Helper()
	var c container.InspectResponse
	eventually(t, 2*time.Minute, name+" to be "+string(want), func() bool {
		c = d.inspect(t, name)
		return c.State.Status == want
	})
	return c
}

// waitLogs waits until a container's logs say want.
func (d *dockerEnv) waitLogs(t *testing.T, name, want string) {
	t.Helper()
	eventually(t, time.Minute, name+" to print "+want, func() bool {
		r := d.docker(t, "logs", name)
		return strings.Contains(r.stdout+r.stderr, want)
	})
}

// rmAll removes every container.
func (d *dockerEnv) rmAll(t *testing.T) {
	t.Helper()
	ids := strings.Fields(d.docker(t, "ps", "-a", "-q").stdout)
	if len(ids) > 0 {
		d.ok(t, append([]string{"rm", "-f"}, ids...)...)
	}
}

// qemuUnder lists QEMU processes of pods under a run dir.
func qemuUnder(run string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		cl := string(b)
		if strings.Contains(cl, "qemu-system") && strings.Contains(cl, run+"/") {
			out = append(out, pid)
		}
	}
	return out
}

// assertNothingLeft checks no container, pod or QEMU process is left.
func (d *dockerEnv) assertNothingLeft(t *testing.T, after string) {
	t.Helper()
	if ps := strings.TrimSpace(d.ok(t, "ps", "-a", "-q")); ps != "" {
		t.Errorf("after %s: docker ps -a -q lists %q, want nothing", after, ps)
	}
	var pods []string
	var qemu []int
	deadline := time.Now().Add(time.Minute)
	for {
		pods = strings.Fields(hearthWith(t, cmdOpts{}, d.n.Args("cradle", "ls", "-q")...).stdout)
		qemu = qemuUnder(d.n.Run)
		if len(pods) == 0 && len(qemu) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: pods %v and QEMU processes %v are left", after, pods, qemu)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func parseTime(t *testing.T, what, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s %q: %v", what, s, err)
	}
	return ts
}

// TestDocker drives one `hearth up` with the real docker CLI. The
// subtests run in order on the same node: a few containers outlive their
// subtest on purpose (the restart policy one is checked later, so its
// back-off overlaps the others).
func TestDocker(t *testing.T) {
	t.Parallel()
	start := time.Now()
	d := newDockerEnv(t)
	t.Logf("hearth up serving the Docker API in %s", time.Since(start).Round(time.Millisecond))
	// Started first, checked late.
	rfSince := time.Now().Add(-time.Second).Unix()
	d.ok(t, "run", "-d", "--name", "rf", "--restart", "on-failure:2", dockerImg, "sh", "-c", "exit 4")

	t.Run("version", d.testVersion)
	t.Run("run", d.testRun)
	t.Run("lifecycle", d.testLifecycle)
	t.Run("ps", d.testPs)
	t.Run("logs", d.testLogs)
	t.Run("data-path", d.testDataPath)
	t.Run("attach", d.testAttach)
	t.Run("events", d.testEvents)
	t.Run("restart-policy", func(t *testing.T) { d.testRestartPolicy(t, rfSince) })
	t.Run("images", d.testImages)
	t.Run("bad-input", d.testBadInput)
	t.Run("prune", d.testPrune)
	t.Run("leaks", d.testLeaks)
	t.Logf("TestDocker took %s", time.Since(start).Round(time.Millisecond))
}

// testVersion: /_ping, /version with and without a version prefix,
// negotiation, info.
func (d *dockerEnv) testVersion(t *testing.T) {
	code, body, h := d.api(t, "GET", "/_ping", "")
	if code != http.StatusOK || string(body) != "OK" {
		t.Errorf("GET /_ping: %d %q", code, body)
	}
	apiVersion := h.Get("Api-Version")
	if !regexp.MustCompile(`^1\.[0-9]+$`).MatchString(apiVersion) {
		t.Errorf("/_ping Api-Version %q", apiVersion)
	}
	if e := h.Get("Docker-Experimental"); e != "false" && e != "true" {
		t.Errorf("/_ping Docker-Experimental %q", e)
	}
	if os := h.Get("Ostype"); os != "linux" {
		t.Errorf("/_ping OSType %q", os)
	}
	if code, _, h := d.api(t, "HEAD", "/_ping", ""); code != http.StatusOK || h.Get("Api-Version") != apiVersion {
		t.Errorf("HEAD /_ping: %d %v", code, h)
	}

	var v system.VersionResponse
	for _, p := range []string{"/version", "/v1.24/version", "/v" + apiVersion + "/version"} {
		code, body, h := d.api(t, "GET", p, "")
		v = system.VersionResponse{}
		if err := json.Unmarshal(body, &v); code != http.StatusOK || err != nil {
			t.Fatalf("GET %s: %d %s (%v)", p, code, body, err)
		}
		if v.Version == "" || v.APIVersion != apiVersion || v.Os != "linux" || v.Arch == "" || h.Get("Api-Version") != apiVersion {
			t.Errorf("GET %s: %+v", p, v)
		}
		if versionLess(v.APIVersion, v.MinAPIVersion) || versionLess("1.24", v.MinAPIVersion) {
			t.Errorf("GET %s: API versions %s..%s", p, v.MinAPIVersion, v.APIVersion)
		}
	}
	code, body, _ = d.api(t, "GET", "/v1.99/version", "")
	apiError(t, "GET /v1.99/version", code, body, http.StatusBadRequest, "is too new")
	code, body, _ = d.api(t, "GET", "/v1.12/version", "")
	apiError(t, "GET /v1.12/version", code, body, http.StatusBadRequest, "is too old")
	code, body, _ = d.api(t, "GET", "/v1.50/nosuch/route", "")
	apiError(t, "GET an unknown route", code, body, http.StatusNotFound, "page not found")

	out := strings.TrimSpace(d.ok(t, "version", "--format", "{{.Server.Version}}|{{.Server.APIVersion}}|{{.Client.APIVersion}}|{{.Server.Os}}"))
	f := strings.Split(out, "|")
	if len(f) != 4 || f[0] != v.Version || f[1] != apiVersion || f[3] != "linux" {
		t.Errorf("docker version: %q (server says %+v)", out, v)
	}
	// The CLI speaks the lower of its version and the server's.
	if len(f) == 4 && versionLess(apiVersion, f[2]) {
		t.Errorf("docker version: the client speaks %s to a server of %s", f[2], apiVersion)
	}
	// An older client is served.
	r := d.dockerWith(t, cmdOpts{env: []string{"DOCKER_API_VERSION=1.41"}}, "version", "--format", "{{.Client.APIVersion}} {{.Server.APIVersion}}")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "1.41 "+apiVersion {
		t.Errorf("docker version at API 1.41: %s", r)
	}
	if r := d.dockerWith(t, cmdOpts{env: []string{"DOCKER_API_VERSION=1.41"}}, "ps", "-a"); r.code != 0 || !strings.Contains(r.stdout, "CONTAINER ID") {
		t.Errorf("docker ps at API 1.41: %s", r)
	}

	out = strings.TrimSpace(d.ok(t, "info", "--format", "{{.ServerVersion}}|{{.OSType}}|{{.NCPU}}|{{.Images}}|{{.Name}}"))
	f = strings.Split(out, "|")
	if len(f) != 5 || f[0] != v.Version || f[1] != "linux" || f[2] == "0" || f[3] == "0" || f[4] == "" {
		t.Errorf("docker info: %q", out)
	}
	var info system.Info
	code, body, _ = d.api(t, "GET", "/info", "")
	if err := json.Unmarshal(body, &info); code != http.StatusOK || err != nil || info.ServerVersion != v.Version || info.MemTotal <= 0 {
		t.Errorf("GET /info: %d %v %.300s", code, err, body)
	}
}

// testRun: docker run's exit codes, streams, stdin and options.
func (d *dockerEnv) testRun(t *testing.T) {
	if r := d.docker(t, "run", "--rm", dockerImg, "echo", "hi"); r.code != 0 || r.stdout != "hi\n" || r.stderr != "" {
		t.Errorf("run echo hi: %s", r)
	}
	if r := d.docker(t, "run", "--rm", dockerImg, "sh", "-c", "echo out; echo err >&2; exit 3"); r.code != 3 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("run exit 3: want exit 3, stdout \"out\\n\" and stderr \"err\\n\", got %s", r)
	}
	d.fails(t, 127, "executable file not found", "run", "--rm", dockerImg, "nope")
	d.fails(t, 126, "permission denied", "run", "--rm", dockerImg, "/etc/passwd")
	d.fails(t, 125, "nosuch.invalid", "run", "--rm", "nosuch.invalid/x:1", "true")
	if r := d.dockerWith(t, cmdOpts{stdin: strings.NewReader("hello\n")}, "run", "--rm", "-i", dockerImg, "cat"); r.code != 0 || r.stdout != "hello\n" {
		t.Errorf("echo hello | docker run -i cat: %s", r)
	}

	// Options, seen from inside.
	envFile := filepath.Join(t.TempDir(), "env")
	os.WriteFile(envFile, []byte("# a comment\nFROM_FILE=file value\nPASSED\n"), 0o644)
	r := d.dockerWith(t, cmdOpts{env: []string{"PASSED=from the client"}}, "run", "--rm", "-e", "A=1", "--env-file", envFile,
		"-w", "/tmp", "-u", "1000:1001", "--hostname", "box1", "--name", "opts", "--entrypoint", "/bin/sh", dockerImg,
		"-c", `echo "$A|$FROM_FILE|$PASSED|$(pwd)|$(id -u):$(id -g)|$(hostname)|$0"`)
	if want := "1|file value|from the client|/tmp|1000:1001|box1|/bin/sh\n"; r.code != 0 || r.stdout != want {
		t.Errorf("run with options: want %q, got %s", want, r)
	}
	// The same, seen by inspect.
	id := strings.TrimSpace(d.ok(t, "run", "-d", "-e", "A=1", "--env-file", envFile, "-w", "/tmp", "-u", "1000:1001", "--hostname", "box2",
		"--name", "optsd", "-l", "tier=web", "--label", "team=hearth", "--entrypoint", "/bin/sh", dockerImg, "-c", "echo started; exec sleep 1000"))
	if !hex64.MatchString(id) {
		t.Errorf("run -d printed %q, want a 64-hex ID", id)
	}
	c := d.inspect(t, "optsd")
	cfg := c.Config
	if c.ID != id || c.Name != "/optsd" || cfg.Hostname != "box2" || cfg.WorkingDir != "/tmp" || cfg.User != "1000:1001" ||
		!slices.Equal(cfg.Entrypoint, []string{"/bin/sh"}) || !slices.Equal(cfg.Cmd, []string{"-c", "echo started; exec sleep 1000"}) ||
		cfg.Labels["tier"] != "web" || cfg.Labels["team"] != "hearth" || !slices.Contains(cfg.Env, "A=1") || !slices.Contains(cfg.Env, "FROM_FILE=file value") ||
		cfg.Image != dockerImg || c.Path != "/bin/sh" {
		t.Errorf("inspect optsd: %+v\nconfig %+v", c, cfg)
	}
	d.waitLogs(t, "optsd", "started")
	if out := d.ok(t, "ps", "--filter", "name=optsd", "--format", "{{.ID}} {{.Names}} {{.Image}} {{.Label \"tier\"}}"); out != id[:12]+" optsd "+dockerImg+" web\n" {
		t.Errorf("ps of optsd: %q", out)
	}
	if out := d.ok(t, "logs", "optsd"); out != "started\n" {
		t.Errorf("logs optsd: %q", out)
	}
	d.ok(t, "rm", "-f", "optsd")
	d.fails(t, 1, "No such object: optsd", "inspect", "optsd")

	// --rm -d: the container goes once it ends.
	d.ok(t, "run", "--rm", "-d", "--name", "gone", dockerImg, "sh", "-c", "sleep 1")
	eventually(t, time.Minute, "the --rm container to go", func() bool {
		r := d.docker(t, "inspect", "gone")
		return r.code != 0 && strings.Contains(r.stderr, "No such object")
	})
}

// testLifecycle: create, start, kill, restart, stop, wait, rename,
// update, rm, and the state inspect reports along the way.
func (d *dockerEnv) testLifecycle(t *testing.T) {
	const script = `trap "echo got-term" TERM; trap "echo got-usr1" USR1; echo up; while :; do sleep 0.1; done`
	id := strings.TrimSpace(d.ok(t, "create", "--name", "lc", "--stop-timeout", "1", "-l", "tier=life", dockerImg, "sh", "-c", script))
	if !hex64.MatchString(id) {
		t.Fatalf("create printed %q, want a 64-hex ID", id)
	}
	c := d.inspect(t, id[:12])
	if c.ID != id || c.Name != "/lc" || c.State.Status != container.StateCreated || c.State.Running || c.State.StartedAt != "0001-01-01T00:00:00Z" ||
		c.Config.StopTimeout == nil || *c.Config.StopTimeout != 1 {
		t.Errorf("a created container: %+v %+v", c, c.State)
	}
	if out := d.ok(t, "inspect", "-f", "{{.Id}}", id[:7]); strings.TrimSpace(out) != id {
		t.Errorf("inspect by a unique prefix: %q", out)
	}
	if out := d.ok(t, "ps", "-q", "--filter", "name=lc"); out != "" {
		t.Errorf("ps lists a created container: %q", out)
	}
	if out := d.ok(t, "ps", "-a", "-q", "--filter", "status=created"); !strings.Contains(out, id[:12]) {
		t.Errorf("ps -a --filter status=created: %q", out)
	}

	if out := d.ok(t, "start", "lc"); out != "lc\n" {
		t.Errorf("start printed %q", out)
	}
	c = d.inspect(t, "lc")
	started1 := parseTime(t, "StartedAt", c.State.StartedAt)
	if c.State.Status != container.StateRunning || !c.State.Running || started1.Before(parseTime(t, "Created", c.Created)) {
		t.Errorf("a started container: %+v", c.State)
	}
	d.waitLogs(t, "lc", "up")
	// Starting it again: nothing to do.
	if r := d.docker(t, "start", "lc"); r.code != 0 {
		t.Errorf("start of a running container: %s", r)
	}
	if code, body, _ := d.api(t, "POST", "/containers/lc/start", ""); code != http.StatusNotModified {
		t.Errorf("POST /containers/lc/start of a running container: %d %s, want 304", code, body)
	}
	// A running container is not removed without force.
	d.fails(t, 1, "container is running", "rm", "lc")
	code, body, _ := d.api(t, "DELETE", "/containers/lc", "")
	apiError(t, "DELETE a running container", code, body, http.StatusConflict, "container is running")

	// Signals reach it, and a signal is not a stop.
	d.ok(t, "kill", "-s", "USR1", "lc")
	d.waitLogs(t, "lc", "got-usr1")
	d.ok(t, "kill", "-s", "TERM", "lc")
	d.waitLogs(t, "lc", "got-term")
	time.Sleep(3 * time.Second) // more than its stop timeout
	if st := d.status(t, "lc"); st != container.StateRunning {
		t.Errorf("`docker kill -s TERM lc` (TERM is trapped, --stop-timeout 1): want the container to keep running as Docker's kill only signals; got %s with exit %d: the kill became a stop", st, d.inspect(t, "lc").State.ExitCode)
		d.waitStatus(t, "lc", container.StateExited)
		d.ok(t, "start", "lc")
		d.waitLogs(t, "lc", "up")
	}

	// restart: TERM is trapped, so the stop timeout (1 s) passes first.
	t0 := time.Now()
	d.ok(t, "restart", "-t", "1", "lc")
	if el := time.Since(t0); el < time.Second {
		t.Errorf("restart -t 1 of a container that ignores TERM took %s", el)
	}
	c = d.inspect(t, "lc")
	started2 := parseTime(t, "StartedAt", c.State.StartedAt)
	if c.State.Status != container.StateRunning || !started2.After(started1) {
		t.Errorf("after restart: %+v (first started %s)", c.State, started1)
	}

	// stop -t 2 overrides the container's stop timeout of 1 s.
	d.waitLogs(t, "lc", "up")
	t0 = time.Now()
	d.ok(t, "stop", "-t", "2", "lc")
	if el := time.Since(t0); el < 2*time.Second {
		t.Errorf("stop -t 2 of a container that ignores TERM took %s", el)
	}
	c = d.inspect(t, "lc")
	finished := parseTime(t, "FinishedAt", c.State.FinishedAt)
	if c.State.Status != container.StateExited || c.State.ExitCode != 137 || c.State.Running || !finished.After(started2) {
		t.Errorf("after stop: %+v", c.State)
	}
	if out := d.ok(t, "wait", "lc"); out != "137\n" {
		t.Errorf("wait of an exited container: %q", out)
	}
	if code, _, _ := d.api(t, "POST", "/containers/lc/stop", ""); code != http.StatusNotModified {
		t.Errorf("POST /containers/lc/stop of a stopped container: %d, want 304", code)
	}
	// Kill of a stopped container: 409.
	code, body, _ = d.api(t, "POST", "/containers/lc/kill", "")
	apiError(t, "kill of a stopped container", code, body, http.StatusConflict, "is not running")

	// stop with the container's --stop-timeout.
	d.ok(t, "start", "lc")
	d.waitLogs(t, "lc", "up")
	t0 = time.Now()
	d.ok(t, "stop", "lc")
	if el := time.Since(t0); el < time.Second || el > 9*time.Second {
		t.Errorf("stop of a container with --stop-timeout 1 that ignores TERM took %s", el)
	}
	if c := d.inspect(t, "lc"); c.State.ExitCode != 137 {
		t.Errorf("after a stop with --stop-timeout: %+v", c.State)
	}

	// wait blocks until the end, and kill is SIGKILL.
	d.ok(t, "start", "lc")
	wctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wait := d.cmd(wctx, "wait", "lc")
	var wout syncBuffer
	wait.Stdout = &wout
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	d.ok(t, "kill", "lc")
	if err := wait.Wait(); err != nil || wout.String() != "137\n" {
		t.Errorf("wait of a killed container: %v %q", err, wout.String())
	}
	if c := d.inspect(t, "lc"); c.State.Status != container.StateExited || c.State.ExitCode != 137 {
		t.Errorf("after kill: %+v", c.State)
	}

	// rename and update.
	d.ok(t, "rename", "lc", "lc2")
	d.fails(t, 1, "No such object: lc", "inspect", "lc")
	if c := d.inspect(t, "lc2"); c.ID != id || c.Name != "/lc2" {
		t.Errorf("after rename: %s %s", c.ID, c.Name)
	}
	d.ok(t, "update", "--restart", "on-failure:3", "lc2")
	if c := d.inspect(t, "lc2"); c.HostConfig.RestartPolicy.Name != "on-failure" || c.HostConfig.RestartPolicy.MaximumRetryCount != 3 {
		t.Errorf("after update --restart: %+v", c.HostConfig.RestartPolicy)
	}
	d.ok(t, "update", "--restart", "always", "lc2")
	if c := d.inspect(t, "lc2"); c.HostConfig.RestartPolicy.Name != "always" || c.State.Status != container.StateExited {
		t.Errorf("after update --restart always: %+v, %s", c.HostConfig.RestartPolicy, c.State.Status)
	}
	if out := d.ok(t, "rm", "lc2"); out != "lc2\n" {
		t.Errorf("rm printed %q", out)
	}
	code, body, _ = d.api(t, "GET", "/containers/"+id+"/json", "")
	apiError(t, "inspect of a removed container", code, body, http.StatusNotFound, "No such container")

	// rm -f of a running container.
	d.ok(t, "run", "-d", "--name", "rmf", dockerImg, "sleep", "1000")
	if out := d.ok(t, "rm", "-f", "rmf"); out != "rmf\n" {
		t.Errorf("rm -f printed %q", out)
	}
	d.fails(t, 1, "No such container: rmf", "rm", "rmf")
}

// testPs: docker ps, its filters, -q, -n and --format.
func (d *dockerEnv) testPs(t *testing.T) {
	web := strings.TrimSpace(d.ok(t, "run", "-d", "--name", "ps-web", "-l", "tier=web", dockerImg, "sleep", "1000"))
	db := strings.TrimSpace(d.ok(t, "run", "-d", "--name", "ps-db", "-l", "tier=db", dockerImg, "sleep", "1000"))
	done := strings.TrimSpace(d.ok(t, "create", "--name", "ps-done", "-l", "tier=web", dockerImg, "true"))
	d.ok(t, "start", "-a", "ps-done")
	defer d.docker(t, "rm", "-f", "ps-web", "ps-db", "ps-done")
	d.waitStatus(t, "ps-done", container.StateExited)

	lines := func(s string) []string { return strings.Fields(s) }
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"ps", "--format", "{{.Names}}", "--filter", "name=ps-"}, []string{"ps-db", "ps-web"}},
		{[]string{"ps", "-a", "--format", "{{.Names}}", "--filter", "name=ps-"}, []string{"ps-done", "ps-db", "ps-web"}},
		{[]string{"ps", "-a", "--format", "{{.Names}}", "--filter", "label=tier=web"}, []string{"ps-done", "ps-web"}},
		{[]string{"ps", "-a", "--format", "{{.Names}}", "--filter", "label=tier"}, []string{"ps-done", "ps-db", "ps-web"}},
		{[]string{"ps", "-a", "--format", "{{.Names}}", "--filter", "status=exited", "--filter", "name=ps-"}, []string{"ps-done"}},
		{[]string{"ps", "-a", "--format", "{{.Names}}", "--filter", "status=running", "--filter", "label=tier=web"}, []string{"ps-web"}},
		{[]string{"ps", "-a", "--format", "{{.Names}}", "--filter", "ancestor=" + dockerImg, "--filter", "name=ps-"}, []string{"ps-done", "ps-db", "ps-web"}},
		{[]string{"ps", "-a", "--format", "{{.Names}}", "--filter", "ancestor=hearth.test/nosuch", "--filter", "name=ps-"}, nil},
		{[]string{"ps", "-a", "-n", "1", "--format", "{{.Names}}", "--filter", "name=ps-"}, []string{"ps-done"}},
		{[]string{"ps", "-q", "--filter", "name=ps-web"}, []string{web[:12]}},
		{[]string{"ps", "-q", "--filter", "id=" + db[:10]}, []string{db[:12]}},
		{[]string{"ps", "-a", "-q", "--no-trunc", "--filter", "label=tier=web", "--filter", "status=exited"}, []string{done}},
	} {
		got := lines(d.ok(t, c.args...))
		if !slices.Equal(got, c.want) {
			t.Errorf("docker %s: got %q, want %q", strings.Join(c.args, " "), got, c.want)
		}
	}
	for _, id := range lines(d.ok(t, "ps", "-a", "-q")) {
		if !hex12.MatchString(id) {
			t.Errorf("ps -q printed %q", id)
		}
	}
	// The JSON behind it.
	code, body, _ := d.api(t, "GET", `/containers/json?all=1&filters={"name":["ps-web"]}`, "")
	var list []container.Summary
	if err := json.Unmarshal(body, &list); code != http.StatusOK || err != nil || len(list) != 1 {
		t.Fatalf("GET /containers/json: %d %v %s", code, err, body)
	}
	if s := list[0]; s.ID != web || !slices.Equal(s.Names, []string{"/ps-web"}) || s.Image != dockerImg || s.State != container.StateRunning ||
		!strings.HasPrefix(s.Status, "Up") || s.Labels["tier"] != "web" || s.Command != "sleep 1000" {
		t.Errorf("GET /containers/json: %+v", s)
	}
	d.fails(t, 1, "status=bogus", "ps", "--filter", "status=bogus")
}

// testLogs: logs and its --tail, -t and --since, stdout and stderr apart.
// The two are separate pipes, read apart as Docker's are, so the script
// pauses where their order matters.
func (d *dockerEnv) testLogs(t *testing.T) {
	d.ok(t, "run", "-d", "--name", "lg", dockerImg, "sh", "-c", "echo early; echo e-err >&2; sleep 2; echo late; for i in 1 2 3; do echo n$i; done; sleep 1; echo done >&2; exec sleep 1000")
	defer d.docker(t, "rm", "-f", "lg")
	d.waitLogs(t, "lg", "done")
	if r := d.docker(t, "logs", "lg"); r.code != 0 || r.stdout != "early\nlate\nn1\nn2\nn3\n" || r.stderr != "e-err\ndone\n" {
		t.Errorf("logs: %s", r)
	}
	if r := d.docker(t, "logs", "--tail", "2", "lg"); r.code != 0 || r.stdout != "n3\n" || r.stderr != "done\n" {
		t.Errorf("logs --tail 2: %s", r)
	}
	if r := d.docker(t, "logs", "--tail", "0", "lg"); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("logs --tail 0: %s", r)
	}
	out := d.ok(t, "logs", "-t", "lg")
	var early time.Time
	tsLines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(tsLines) != 5 {
		t.Fatalf("logs -t: %q", out)
	}
	var prev time.Time
	for i, l := range tsLines {
		ts, msg, _ := strings.Cut(l, " ")
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || tm.Before(prev) || time.Since(tm) > 5*time.Minute {
			t.Errorf("logs -t line %q: %v", l, err)
		}
		prev = tm
		if i == 0 {
			early = tm
			if msg != "early" {
				t.Errorf("logs -t line %q", l)
			}
		}
	}
	since := early.Add(time.Second).Format(time.RFC3339Nano)
	if r := d.docker(t, "logs", "--since", since, "lg"); r.code != 0 || r.stdout != "late\nn1\nn2\nn3\n" || r.stderr != "done\n" {
		t.Errorf("logs --since %s: %s", since, r)
	}
	if r := d.docker(t, "logs", "--since", strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10), "lg"); r.code != 0 || r.stdout != "" {
		t.Errorf("logs --since the future: %s", r)
	}
	// -f follows until the container ends.
	d.ok(t, "run", "-d", "--name", "lgf", dockerImg, "sh", "-c", "echo one; sleep 1; echo two")
	defer d.docker(t, "rm", "-f", "lgf")
	if r := d.docker(t, "logs", "-f", "lgf"); r.code != 0 || r.stdout != "one\ntwo\n" {
		t.Errorf("logs -f: %s", r)
	}
	d.fails(t, 1, "No such container: nosuch", "logs", "nosuch")
}

// testDataPath: exec, cp, stats, top, pause.
func (d *dockerEnv) testDataPath(t *testing.T) {
	d.ok(t, "run", "-d", "--name", "dp", dockerImg, "sh", "-c", "echo ready; exec sleep 1000")
	defer d.docker(t, "rm", "-f", "dp")
	d.waitLogs(t, "dp", "ready")

	// exec.
	if r := d.docker(t, "exec", "dp", "echo", "hi"); r.code != 0 || r.stdout != "hi\n" {
		t.Errorf("exec echo: %s", r)
	}
	if r := d.docker(t, "exec", "-e", "X=1", "-w", "/tmp", "-u", "1000:1001", "dp", "sh", "-c", `echo "$X $(pwd) $(id -u):$(id -g)"`); r.code != 0 || r.stdout != "1 /tmp 1000:1001\n" {
		t.Errorf("exec -e -w -u: %s", r)
	}
	if r := d.docker(t, "exec", "dp", "sh", "-c", "echo o; echo e >&2; exit 5"); r.code != 5 || r.stdout != "o\n" || r.stderr != "e\n" {
		t.Errorf("exec exit 5: %s", r)
	}
	if r := d.dockerWith(t, cmdOpts{stdin: strings.NewReader("a\nb\n")}, "exec", "-i", "dp", "wc", "-l"); r.code != 0 || strings.TrimSpace(r.stdout) != "2" {
		t.Errorf("exec -i: %s", r)
	}
	if r := d.docker(t, "exec", "dp", "nope"); r.code != 127 {
		t.Errorf("exec of a missing command: want exit 127, got %s", r)
	} else if !strings.Contains(r.stdout+r.stderr, "executable file not found") {
		t.Errorf("`docker exec dp nope`: want exit 127 and the error (`OCI runtime exec failed: ... exec: \"nope\": executable file not found in $PATH`) on the stream; got exit 127 and no message: %s", r)
	}
	if r := d.docker(t, "exec", "-d", "dp", "sh", "-c", "sleep 1; echo detached > /tmp/det"); r.code != 0 || r.stdout != "" {
		t.Errorf("exec -d: %s", r)
	}
	eventually(t, time.Minute, "the detached exec to finish", func() bool {
		return d.docker(t, "exec", "dp", "cat", "/tmp/det").stdout == "detached\n"
	})
	// The exec's JSON.
	code, body, _ := d.api(t, "POST", "/containers/dp/exec", `{"Cmd":["sh","-c","exit 6"],"AttachStdout":true}`)
	var ec container.ExecCreateResponse
	if err := json.Unmarshal(body, &ec); code != http.StatusCreated || err != nil || ec.ID == "" {
		t.Fatalf("POST /containers/dp/exec: %d %s", code, body)
	}
	if code, body, _ := d.api(t, "POST", "/exec/"+ec.ID+"/start", `{"Detach":false,"Tty":false}`); code != http.StatusOK {
		t.Errorf("POST /exec/ID/start: %d %s", code, body)
	}
	eventually(t, 30*time.Second, "the exec to end", func() bool {
		_, body, _ := d.api(t, "GET", "/exec/"+ec.ID+"/json", "")
		var ei container.ExecInspectResponse
		return json.Unmarshal(body, &ei) == nil && !ei.Running && ei.ExitCode != nil && *ei.ExitCode == 6
	})
	code, body, _ = d.api(t, "GET", "/exec/nosuch/json", "")
	apiError(t, "GET /exec/nosuch/json", code, body, http.StatusNotFound, "No such exec instance")

	// cp both ways.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "in.txt"), []byte("from the host\n"), 0o644)
	d.ok(t, "cp", filepath.Join(dir, "in.txt"), "dp:/tmp/in.txt")
	if out := d.ok(t, "exec", "dp", "cat", "/tmp/in.txt"); out != "from the host\n" {
		t.Errorf("cp into the container: %q", out)
	}
	d.ok(t, "exec", "dp", "sh", "-c", "mkdir -p /tmp/tree/sub && echo deep > /tmp/tree/sub/f && echo top > /tmp/tree/g")
	d.ok(t, "cp", "dp:/tmp/tree", filepath.Join(dir, "out"))
	for f, want := range map[string]string{"out/sub/f": "deep\n", "out/g": "top\n"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err != nil || string(b) != want {
			t.Errorf("cp out of the container, %s: %q %v", f, b, err)
		}
	}
	d.ok(t, "cp", "dp:/tmp/in.txt", filepath.Join(dir, "back.txt"))
	if b, err := os.ReadFile(filepath.Join(dir, "back.txt")); err != nil || string(b) != "from the host\n" {
		t.Errorf("cp a file out: %q %v", b, err)
	}
	// docker cp to stdout is a tar.
	r := d.docker(t, "cp", "dp:/tmp/in.txt", "-")
	tr := tar.NewReader(strings.NewReader(r.stdout))
	if h, err := tr.Next(); r.code != 0 || err != nil || h.Name != "in.txt" {
		t.Errorf("cp to stdout: %v %s", err, r)
	}
	d.fails(t, 1, "Could not find the file /nosuch", "cp", "dp:/nosuch", dir)

	// stats.
	out := d.ok(t, "stats", "--no-stream", "--format", "{{.Name}}|{{.MemUsage}}|{{.PIDs}}", "dp")
	if f := strings.Split(strings.TrimSpace(out), "|"); len(f) != 3 || f[0] != "dp" || !strings.Contains(f[1], "/") || f[2] == "0" {
		t.Errorf("stats --no-stream: %q", out)
	}
	code, body, _ = d.api(t, "GET", "/containers/dp/stats?stream=false", "")
	var st container.StatsResponse
	if err := json.Unmarshal(body, &st); code != http.StatusOK || err != nil || st.Name != "/dp" || st.MemoryStats.Limit == 0 || st.MemoryStats.Usage == 0 || st.Read.IsZero() {
		t.Errorf("GET /containers/dp/stats: %d %v %.400s", code, err, body)
	}

	// top.
	if r := d.docker(t, "top", "dp"); strings.Contains(r.stderr, "page not found") {
		t.Errorf("`docker top dp`: want the process table (PID ... sleep 1000), got %q: GET /containers/{id}/top is not served", strings.TrimSpace(r.stderr))
	} else if r.code != 0 || !strings.Contains(r.stdout, "PID") || !strings.Contains(r.stdout, "sleep 1000") {
		t.Errorf("top: %s", r)
	}
	// pause and unpause.
	if r := d.docker(t, "pause", "dp"); strings.Contains(r.stderr, "page not found") {
		t.Errorf("`docker pause dp`: want exit 0 and State.Paused, got %q: POST /containers/{id}/pause is not served", strings.TrimSpace(r.stderr))
	} else if r.code != 0 {
		t.Errorf("pause: %s", r)
	} else {
		if c := d.inspect(t, "dp"); c.State.Status != container.StatePaused || !c.State.Paused || !c.State.Running {
			t.Errorf("a paused container: %+v", c.State)
		}
		if out := d.ok(t, "ps", "--filter", "status=paused", "--format", "{{.Names}}"); out != "dp\n" {
			t.Errorf("ps --filter status=paused: %q", out)
		}
		d.fails(t, -1, "is paused", "exec", "dp", "true")
		d.fails(t, 1, "is already paused", "pause", "dp")
		d.ok(t, "unpause", "dp")
		if c := d.inspect(t, "dp"); c.State.Status != container.StateRunning || c.State.Paused {
			t.Errorf("an unpaused container: %+v", c.State)
		}
		if r := d.docker(t, "exec", "dp", "echo", "back"); r.code != 0 || r.stdout != "back\n" {
			t.Errorf("exec after unpause: %s", r)
		}
	}
	d.fails(t, 1, "is not paused", "unpause", "dp")
}

// testAttach: attach to a container that waits for its input.
func (d *dockerEnv) testAttach(t *testing.T) {
	d.ok(t, "run", "-d", "-i", "--name", "att", dockerImg, "sh", "-c", "read line; echo got:$line; echo bye >&2; exit 4")
	defer d.docker(t, "rm", "-f", "att")
	r := d.dockerWith(t, cmdOpts{stdin: strings.NewReader("hello\n")}, "attach", "att")
	if r.code != 4 || r.stdout != "got:hello\n" || r.stderr != "bye\n" {
		t.Errorf("attach: want exit 4, stdout \"got:hello\\n\" and stderr \"bye\\n\", got %s", r)
	}
	c := d.waitStatus(t, "att", container.StateExited)
	if c.State.ExitCode != 4 {
		t.Errorf("after attach: %+v", c.State)
	}
	d.fails(t, 1, "You cannot attach to a stopped container", "attach", "att")
}

// testEvents: events --since/--until --filter container=NAME.
func (d *dockerEnv) testEvents(t *testing.T) {
	since := time.Now().Add(-time.Second)
	id := strings.TrimSpace(d.ok(t, "run", "-d", "--name", "ev", "-l", "ev=1", dockerImg, "sleep", "1000"))
	d.ok(t, "stop", "-t", "1", "ev")
	d.ok(t, "rm", "ev")
	until := time.Now().Add(time.Second)
	// Another container's events are left out.
	d.ok(t, "run", "--rm", "--name", "ev-other", dockerImg, "true")
	out := d.ok(t, "events", "--since", strconv.FormatInt(since.Unix(), 10), "--until", strconv.FormatInt(until.Unix()+1, 10),
		"--filter", "container=ev", "--format", "{{json .}}")
	var actions []string
	var dieCode string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var m events.Message
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("events line %q: %v", l, err)
		}
		if m.Type != events.ContainerEventType || m.Actor.ID != id || m.Actor.Attributes["name"] != "ev" {
			t.Errorf("an event not of container ev: %+v", m)
		}
		if tm := time.Unix(0, m.TimeNano); tm.Before(since) || tm.After(until) {
			t.Errorf("event at %s, not between %s and %s", tm, since, until)
		}
		if m.Action == events.ActionDie {
			dieCode = m.Actor.Attributes["exitCode"]
		}
		actions = append(actions, string(m.Action))
	}
	// create, start, die, destroy in that order, among others.
	want := []string{"create", "start", "die", "destroy"}
	i := 0
	for _, a := range actions {
		if i < len(want) && a == want[i] {
			i++
		}
	}
	if i != len(want) || dieCode != "137" {
		t.Errorf("events of ev: %v (die exitCode %q), want %v in order and exitCode 137", actions, dieCode, want)
	}
	if slices.Index(actions, "stop") >= 0 && slices.Index(actions, "stop") < slices.Index(actions, "die") {
		t.Errorf("`docker stop ev` events: want kill, die, stop (Docker reports stop once the container has died), got %v", actions)
	}
}

// testRestartPolicy checks the on-failure:2 container started first.
func (d *dockerEnv) testRestartPolicy(t *testing.T, since int64) {
	var c container.InspectResponse
	eventually(t, 2*time.Minute, "rf to exit after its retries", func() bool {
		c = d.inspect(t, "rf")
		return c.State.Status == container.StateExited && c.RestartCount == 2
	})
	if c.State.ExitCode != 4 || c.HostConfig.RestartPolicy.Name != "on-failure" || c.HostConfig.RestartPolicy.MaximumRetryCount != 2 {
		t.Errorf("rf: %+v %+v", c.State, c.HostConfig.RestartPolicy)
	}
	time.Sleep(2 * time.Second)
	if c := d.inspect(t, "rf"); c.RestartCount != 2 || c.State.Status != container.StateExited {
		t.Errorf("rf restarted beyond its policy: %d %s", c.RestartCount, c.State.Status)
	}
	out := d.ok(t, "events", "--since", strconv.FormatInt(since, 10), "--until", strconv.FormatInt(time.Now().Unix()+1, 10),
		"--filter", "container=rf", "--format", "{{.Action}} {{.TimeNano}}")
	var starts, dies []time.Time
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		a, ns, _ := strings.Cut(l, " ")
		n, _ := strconv.ParseInt(ns, 10, 64)
		switch a {
		case "start":
			starts = append(starts, time.Unix(0, n))
		case "die":
			dies = append(dies, time.Unix(0, n))
		}
	}
	if len(starts) != 3 || len(dies) != 3 {
		t.Fatalf("events of rf: want 3 starts and 3 dies, got\n%s", out)
	}
	// Docker backs off 100 ms, then 200 ms; a VM boots in a few seconds.
	for i := 0; i < 2; i++ {
		if gap := starts[i+1].Sub(dies[i]); gap > 15*time.Second {
			t.Errorf("`docker run -d --restart on-failure:2 IMG sh -c 'exit 4'`: want restart %d within the back-off (100-200 ms) plus a VM boot, got it %s after the exit (the agent logs 'restarting pod in=100ms' and then waits for something else to wake it)", i+1, gap.Round(time.Second))
		}
	}
	d.ok(t, "rm", "rf")
}

// testImages: images, tag, rmi, inspect, history, save/load, and an
// image in use.
func (d *dockerEnv) testImages(t *testing.T) {
	bbID := strings.TrimSpace(d.ok(t, "images", "-q", "--no-trunc", dockerImg))
	if !strings.HasPrefix(bbID, "sha256:") || !hex64.MatchString(strings.TrimPrefix(bbID, "sha256:")) {
		t.Fatalf("images -q --no-trunc %s: %q", dockerImg, bbID)
	}
	if out := d.ok(t, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"); !strings.Contains(out, dockerImg+" "+bbID[7:19]) {
		t.Errorf("images: %q", out)
	}
	d.ok(t, "tag", dockerImg, "hearth.test/copy:v1")
	if out := d.ok(t, "images", "-q", "hearth.test/copy"); out != bbID[7:19]+"\n" {
		t.Errorf("images of the new tag: %q", out)
	}
	var ii []image.InspectResponse
	if err := json.Unmarshal([]byte(d.ok(t, "image", "inspect", "hearth.test/copy:v1")), &ii); err != nil || len(ii) != 1 {
		t.Fatalf("image inspect: %v", err)
	}
	if im := ii[0]; im.ID != bbID || !slices.Contains(im.RepoTags, "hearth.test/copy:v1") || !slices.Contains(im.RepoTags, dockerImg) ||
		im.Os != "linux" || im.Architecture != "amd64" || im.Config == nil || len(im.RootFS.Layers) == 0 {
		t.Errorf("image inspect: %+v", im)
	}
	if out := d.ok(t, "history", "hearth.test/copy:v1"); !strings.HasPrefix(out, "IMAGE") || strings.Count(out, "\n") < 2 {
		t.Errorf("history: %q", out)
	}
	d.fails(t, 1, "No such image", "history", "hearth.test/nosuch")

	// save and load round trip.
	tarball := filepath.Join(t.TempDir(), "copy.tar")
	d.ok(t, "save", "-o", tarball, "hearth.test/copy:v1")
	if tags := savedTags(t, tarball); !slices.Equal(tags, []string{"hearth.test/copy:v1"}) {
		t.Errorf("save: the archive's tags %q", tags)
	}
	if out := d.ok(t, "rmi", "hearth.test/copy:v1"); !strings.Contains(out, "Untagged: hearth.test/copy:v1") || strings.Contains(out, "Deleted") {
		t.Errorf("rmi of one of two tags: %q", out)
	}
	if out := d.ok(t, "images", "-q", "hearth.test/copy"); out != "" {
		t.Errorf("images after rmi: %q", out)
	}
	if out := d.ok(t, "load", "-i", tarball); !strings.Contains(out, "Loaded image: hearth.test/copy:v1") {
		t.Errorf("load: %q", out)
	}
	if out := strings.TrimSpace(d.ok(t, "image", "inspect", "-f", "{{.Id}}", "hearth.test/copy:v1")); out != bbID {
		t.Errorf("the loaded image: %q, want %s", out, bbID)
	}
	d.ok(t, "rmi", "hearth.test/copy:v1")
	d.fails(t, 1, "No such image", "rmi", "hearth.test/copy:v1")

	// An image a container uses.
	if out := d.ok(t, "load", "-i", img.config); !strings.Contains(out, "hearth.test/config:latest") {
		t.Fatalf("load config image: %q", out)
	}
	cfgID := strings.TrimSpace(d.ok(t, "image", "inspect", "-f", "{{.Id}}", "hearth.test/config"))
	d.ok(t, "create", "--name", "cfguser", "hearth.test/config")
	d.fails(t, 1, "conflict: unable to remove repository reference \"hearth.test/config\" (must force) - container", "rmi", "hearth.test/config")
	code, body, _ := d.api(t, "DELETE", "/images/"+cfgID, "")
	apiError(t, "DELETE /images/ID of an image a stopped container uses", code, body, http.StatusConflict,
		"conflict: unable to delete "+cfgID[7:19]+" (must be forced) - image is being used by stopped container")
	d.ok(t, "start", "-a", "cfguser")
	d.ok(t, "rm", "cfguser")
	// Untagged, it is dangling, and image prune takes it.
	d.ok(t, "tag", dockerImg, "hearth.test/config:latest")
	if out := d.ok(t, "images", "-q", "--filter", "dangling=true"); !strings.Contains(out, cfgID[7:19]) {
		t.Errorf("images --filter dangling=true: %q", out)
	}
	if out := d.ok(t, "image", "prune", "-f"); !strings.Contains(out, cfgID) || !strings.Contains(out, "Total reclaimed space") {
		t.Errorf("image prune: %q", out)
	}
	d.fails(t, 1, "No such image", "image", "inspect", cfgID)
	d.ok(t, "rmi", "hearth.test/config:latest")
	if out := strings.TrimSpace(d.ok(t, "images", "-q", "--no-trunc", dockerImg)); out != bbID {
		t.Errorf("image prune took more than the dangling image: %q", out)
	}
}

// savedTags reads the RepoTags of a docker-archive's manifest.json.
func savedTags(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s has no manifest.json: %v", path, err)
		}
		if h.Name == "manifest.json" {
			var m []struct{ RepoTags []string }
			if err := json.NewDecoder(tr).Decode(&m); err != nil {
				t.Fatal(err)
			}
			var tags []string
			for _, e := range m {
				tags = append(tags, e.RepoTags...)
			}
			return tags
		}
	}
}

// testBadInput: Docker's messages and codes for what it refuses.
func (d *dockerEnv) testBadInput(t *testing.T) {
	if r := d.fails(t, 1, "Error: No such object: nosuch", "inspect", "nosuch"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("inspect nosuch printed %q", r.stdout)
	}
	d.fails(t, 1, "No such container: nosuch", "start", "nosuch")
	d.fails(t, 1, "No such container: nosuch", "stop", "nosuch")
	d.fails(t, 1, "No such container: nosuch", "exec", "nosuch", "true")
	d.fails(t, 1, "No such image", "image", "inspect", "hearth.test/nosuch")
	code, body, _ := d.api(t, "GET", "/containers/nosuch/json", "")
	apiError(t, "GET /containers/nosuch/json", code, body, http.StatusNotFound, "No such container: nosuch")

	// A name in use.
	id := strings.TrimSpace(d.ok(t, "create", "--name", "dup", dockerImg, "true"))
	defer d.docker(t, "rm", "-f", "dup")
	d.fails(t, 125, `Conflict. The container name "/dup" is already in use by container "`+id+`"`, "run", "--name", "dup", dockerImg, "true")
	code, body, _ = d.api(t, "POST", "/containers/create?name=dup", `{"Image":"`+dockerImg+`","Cmd":["true"]}`)
	apiError(t, "create with a name in use", code, body, http.StatusConflict, `The container name "/dup" is already in use`)
	d.ok(t, "create", "--name", "dup2", dockerImg, "true")
	defer d.docker(t, "rm", "-f", "dup2")
	d.fails(t, 1, "is already in use", "rename", "dup2", "dup")

	// Malformed and invalid requests.
	code, body, _ = d.api(t, "POST", "/containers/create", `{"Image":`)
	apiError(t, "create with malformed JSON", code, body, http.StatusBadRequest, "")
	code, body, _ = d.api(t, "POST", "/containers/create", `{"Image":"`+dockerImg+`","Cmd":["true"],"HostConfig":{"RestartPolicy":{"Name":"bogus"}}}`)
	apiError(t, "create with restart policy bogus", code, body, http.StatusBadRequest, "invalid restart policy")
	code, body, _ = d.api(t, "POST", "/containers/create", `{"Image":"`+dockerImg+`","Cmd":["true"],"HostConfig":{"RestartPolicy":{"Name":"always","MaximumRetryCount":3}}}`)
	apiError(t, "create with always:3", code, body, http.StatusBadRequest, "invalid restart policy")
	d.fails(t, 1, "invalid restart policy", "create", "--restart", "bogus", dockerImg, "true")
	code, body, _ = d.api(t, "POST", "/containers/create?name=bad/name", `{"Image":"`+dockerImg+`","Cmd":["true"]}`)
	apiError(t, "create with an invalid name", code, body, http.StatusBadRequest, "Invalid container name")
	code, body, _ = d.api(t, "POST", "/containers/create", `{"Image":"hearth.test/nosuch","Cmd":["true"]}`)
	apiError(t, "create of a missing image", code, body, http.StatusNotFound, "No such image: hearth.test/nosuch")
	code, body, _ = d.api(t, "POST", "/containers/dup/kill?signal=SIGNOPE", "")
	if code != http.StatusBadRequest && code != http.StatusConflict {
		t.Errorf("kill with a bad signal: %d %s", code, body)
	}
	d.fails(t, 1, "invalid signal", "kill", "-s", "NOPE", "dup")
	// A network that does not exist, by name (and no pull of the image).
	r := d.fails(t, 125, "network backend not found", "run", "--rm", "--network", "backend", dockerImg, "true")
	if strings.Contains(r.stderr, "Unable to find image") {
		t.Errorf("run --network of a missing network tried a pull: %q", r.stderr)
	}
	if out := d.ok(t, "ps", "-a", "-q", "--filter", "ancestor="+dockerImg, "--filter", "status=created"); len(strings.Fields(out)) != 2 {
		t.Errorf("refused runs left containers: %q", out)
	}
}

// testPrune: container prune removes stopped containers only.
func (d *dockerEnv) testPrune(t *testing.T) {
	p1 := strings.TrimSpace(d.ok(t, "create", "--name", "p1", "-l", "prune=yes", dockerImg, "true"))
	d.ok(t, "start", "-a", "p1")
	p2 := strings.TrimSpace(d.ok(t, "create", "--name", "p2", "-l", "prune=yes", dockerImg, "true"))
	run := strings.TrimSpace(d.ok(t, "run", "-d", "--name", "p3", "-l", "prune=yes", dockerImg, "sleep", "1000"))
	keep := strings.TrimSpace(d.ok(t, "create", "--name", "p4", dockerImg, "true"))
	defer d.docker(t, "rm", "-f", "p1", "p2", "p3", "p4")
	out := d.ok(t, "container", "prune", "-f", "--filter", "label=prune=yes")
	if !strings.Contains(out, "Deleted Containers:") || !strings.Contains(out, p1) || !strings.Contains(out, p2) || strings.Contains(out, run) || strings.Contains(out, keep) {
		t.Errorf("container prune: %q", out)
	}
	left := strings.Fields(d.ok(t, "ps", "-a", "-q", "--no-trunc", "--filter", "name=p"))
	slices.Sort(left)
	want := []string{run, keep}
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("after prune: %q, want %q", left, want)
	}
	code, body, _ := d.api(t, "POST", "/containers/prune", "")
	var pr container.PruneReport
	if err := json.Unmarshal(body, &pr); code != http.StatusOK || err != nil || !slices.Contains(pr.ContainersDeleted, keep) || slices.Contains(pr.ContainersDeleted, run) {
		t.Errorf("POST /containers/prune: %d %s", code, body)
	}
}

// testLeaks: short runs and a killed attach leave no container, pod or
// QEMU behind.
func (d *dockerEnv) testLeaks(t *testing.T) {
	d.rmAll(t)
	d.assertNothingLeft(t, "removing every container")
	t0 := time.Now()
	for i := 0; i < 20; i++ {
		if r := d.docker(t, "run", "--rm", dockerImg, "true"); r.code != 0 || r.stdout != "" {
			t.Fatalf("run %d: %s", i, r)
		}
	}
	t.Logf("20 sequential docker run --rm: %s", time.Since(t0).Round(time.Millisecond))
	d.assertNothingLeft(t, "20 docker run --rm")

	goroutines := func() int {
		n, err := strconv.Atoi(strings.TrimSpace(d.ok(t, "info", "--format", "{{.NGoroutines}}")))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	base := goroutines()

	// An attached client killed mid-stream, then rm -f.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := d.cmd(ctx, "run", "-i", "--name", "leaky", dockerImg, "cat")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin, "ping")
	eventually(t, time.Minute, "cat to echo through the attach", func() bool { return strings.Contains(out.String(), "ping") })
	if q := qemuUnder(d.n.Run); len(q) != 1 {
		t.Errorf("QEMU processes of the attached container: %v, want one", q)
	}
	// And an exec client killed mid-stream.
	ecmd := d.cmd(ctx, "exec", "-i", "leaky", "cat")
	estdin, err := ecmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var eout syncBuffer
	ecmd.Stdout, ecmd.Stderr = &eout, &eout
	if err := ecmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(estdin, "exec-ping")
	eventually(t, time.Minute, "cat to echo through the exec", func() bool { return strings.Contains(eout.String(), "exec-ping") })
	ecmd.Process.Signal(syscall.SIGKILL)
	ecmd.Wait()
	estdin.Close()

	fmt.Fprintln(stdin, "pong")
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	stdin.Close()
	d.ok(t, "rm", "-f", "leaky")
	d.assertNothingLeft(t, "a killed attach and rm -f")
	// The server's goroutines of those streams end with them.
	var now int
	eventually(t, time.Minute, "the streams' goroutines to end", func() bool {
		now = goroutines()
		return now <= base+5
	})
	t.Logf("goroutines: %d before the dropped clients, %d after", base, now)
}

// versionLess compares API versions: "1.24" < "1.50".
func versionLess(a, b string) bool {
	pa, pb := strings.SplitN(a, ".", 2), strings.SplitN(b, ".", 2)
	for i := 0; i < 2; i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}
