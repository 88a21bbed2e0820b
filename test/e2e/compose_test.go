//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// compose is the Compose v2 plugin `make test` builds (hack/compose.sh).
func (d *dockerEnv) useCompose(t *testing.T) {
	t.Helper()
	plugin := filepath.Join(repo, "bin", "cli-plugins", "docker-compose")
	if _, err := os.Stat(plugin); err != nil {
		t.Fatalf("the compose plugin is missing (make compose): %v", err)
	}
	dir := filepath.Join(d.config, "cli-plugins")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(plugin, filepath.Join(dir, "docker-compose")); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
}

// get asks the three-tier app for a key through its web front.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func put(t *testing.T, url, value string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(value))
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const shopCompose = `name: shop
services:
  kv:
    image: hearth.test/app:latest
    command: ["/app", "kv"]
    volumes:
      - kvdata:/data
    healthcheck:
      test: ["CMD", "/app", "check", "http://localhost:8080/health"]
      interval: 1s
      timeout: 5s
      retries: 60
  api:
    image: hearth.test/app:latest
    command: ["/app", "api"]
    depends_on:
      kv:
        condition: service_healthy
  web:
    image: hearth.test/app:latest
    command: ["/app", "web"]
    ports:
      - "127.0.0.1:%d:80"
    depends_on:
      - api
volumes:
  kvdata:
`

// TestCompose: a three-tier app (web → api → kv with a volume and a
// healthcheck) comes up with docker compose, answers through its
// published port, scales, keeps its data across down and up, and leaves
// nothing behind.
func TestCompose(t *testing.T) {
	t.Parallel()
	d := newDockerEnv(t)
	d.useCompose(t)
	d.n.must("image", "load", "-q", "-i", img.app)
	dir := t.TempDir()
	port := freePort(t)
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(shopCompose, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	compose := func(args ...string) string {
		t.Helper()
		return d.ok(t, append([]string{"compose", "-f", file}, args...)...)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d/k/", port)

	compose("up", "-d", "--wait")
	if out := compose("ps", "--format", "{{.Service}} {{.State}} {{.Health}}"); !strings.Contains(out, "kv running healthy") || !strings.Contains(out, "api running") || !strings.Contains(out, "web running") {
		t.Errorf("compose ps after up --wait:\n%s", out)
	}
	if code, body := put(t, base+"greeting", "hello"); code != 200 || !strings.Contains(body, "stored") {
		t.Fatalf("PUT through web: %d %q", code, body)
	}
	if code, body := get(t, base+"greeting"); code != 200 || !strings.Contains(body, "value=hello") || !strings.HasPrefix(body, "web=") {
		t.Fatalf("GET through web: %d %q", code, body)
	}

	if out := compose("port", "web", "80"); out != fmt.Sprintf("127.0.0.1:%d\n", port) {
		t.Errorf("compose port: %q", out)
	}

	// A second up with no change recreates nothing.
	ids := d.ok(t, "ps", "-q", "--no-trunc")
	compose("up", "-d", "--wait")
	if again := d.ok(t, "ps", "-q", "--no-trunc"); again != ids {
		t.Errorf("a second up changed the containers:\n%s\n%s", ids, again)
	}

	// Three api replicas, answered in turn by name.
	compose("up", "-d", "--wait", "--scale", "api=3")
	apis := map[string]bool{}
	for i := 0; i < 30 && len(apis) < 3; i++ {
		_, body := get(t, base+"greeting")
		for _, f := range strings.Fields(body) {
			if strings.HasPrefix(f, "api=") {
				apis[f] = true
			}
		}
	}
	if len(apis) != 3 {
		t.Errorf("requests reached %d api replicas, want 3: %v", len(apis), apis)
	}

	// down and up again: the KV's data is still there.
	compose("down")
	if out := d.ok(t, "ps", "-a", "-q"); out != "" {
		t.Errorf("containers after down: %q", out)
	}
	compose("up", "-d", "--wait")
	if code, body := get(t, base+"greeting"); code != 200 || !strings.Contains(body, "value=hello") {
		t.Errorf("GET after down and up: %d %q", code, body)
	}

	// down -v takes the volume; nothing is left.
	compose("down", "-v")
	if out := d.ok(t, "volume", "ls", "-q"); out != "" {
		t.Errorf("volumes after down -v: %q", out)
	}
	if out := d.ok(t, "network", "ls", "--filter", "type=custom", "-q"); out != "" {
		t.Errorf("networks after down -v: %q", out)
	}
	d.assertNothingLeft(t, "compose down -v")
}

const toolsCompose = `name: tools
services:
  app:
    image: hearth.test/busybox:latest
    command: ["sh", "-c", "echo started; exec sleep 1000"]
    environment:
      MODE: prod
    working_dir: /srv
    hostname: apphost
    labels:
      tier: front
    networks:
      ext:
        aliases: [svc]
    volumes:
      - shared:/shared
    tmpfs:
      - /scratch
    stop_grace_period: 1s
    init: true
  debug:
    image: hearth.test/busybox:latest
    command: ["sleep", "1000"]
    profiles: [debug]
    networks: [ext]
  sick:
    image: hearth.test/busybox:latest
    command: ["sleep", "1000"]
    profiles: [sick]
    healthcheck:
      test: ["CMD", "false"]
      interval: 1s
      retries: 2
networks:
  ext:
    external: true
    name: outside
volumes:
  shared:
    external: true
    name: keep
`

// TestComposeCommands: profiles, external networks and volumes, and the
// everyday commands (ps, logs, exec, run, stop/start/restart, pause, top,
// port, cp, config, ls, images, kill, rm); a healthcheck that never passes
// fails up --wait with compose's message.
func TestComposeCommands(t *testing.T) {
	t.Parallel()
	d := newDockerEnv(t)
	d.useCompose(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(toolsCompose), 0o644); err != nil {
		t.Fatal(err)
	}
	compose := func(args ...string) string {
		t.Helper()
		return d.ok(t, append([]string{"compose", "-f", file}, args...)...)
	}
	// External resources must exist first.
	if r := d.docker(t, "compose", "-f", file, "up", "-d"); r.code == 0 || !strings.Contains(r.stderr, "outside") {
		t.Errorf("up without the external network: %s", r)
	}
	d.ok(t, "network", "create", "outside")
	// Shared: app and a run of it write it at once.
	d.ok(t, "volume", "create", "--opt", "shared=true", "keep")

	compose("up", "-d", "--wait")
	if out := compose("ps", "--format", "{{.Service}}"); out != "app\n" {
		t.Errorf("ps without the debug profile: %q", out)
	}
	compose("--profile", "debug", "up", "-d", "--wait")
	if out := compose("--profile", "debug", "ps", "--format", "{{.Service}}"); out != "app\ndebug\n" {
		t.Errorf("ps with the debug profile: %q", out)
	}
	if out := compose("exec", "-T", "app", "sh", "-c", "echo $MODE $(pwd) $(hostname)"); out != "prod /srv apphost\n" {
		t.Errorf("exec: %q", out)
	}
	if r := d.docker(t, "compose", "-f", file, "--profile", "debug", "exec", "-T", "debug", "ping", "-c", "1", "-W", "3", "svc"); r.code != 0 {
		t.Errorf("debug reaching app by its alias: %s", r)
	}
	if out := compose("logs", "--no-log-prefix", "app"); !strings.Contains(out, "started") {
		t.Errorf("logs: %q", out)
	}
	if out := compose("run", "--rm", "-T", "app", "sh", "-c", "echo ran > /shared/f; cat /shared/f"); !strings.Contains(out, "ran") {
		t.Errorf("run --rm: %q", out)
	}
	if out := compose("exec", "-T", "app", "cat", "/shared/f"); out != "ran\n" {
		t.Errorf("the external volume seen by app: %q", out)
	}
	compose("stop", "app")
	compose("start", "app")
	compose("restart", "app")
	compose("pause", "app")
	compose("unpause", "app")
	if out := compose("top", "app"); !strings.Contains(out, "sleep") {
		t.Errorf("top: %q", out)
	}
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), []byte("copied"), 0o644); err != nil {
		t.Fatal(err)
	}
	compose("cp", filepath.Join(dir, "in.txt"), "app:/scratch/in.txt")
	if out := compose("exec", "-T", "app", "cat", "/scratch/in.txt"); out != "copied" {
		t.Errorf("cp into app: %q", out)
	}
	if out := compose("config", "--services"); !strings.Contains(out, "app") {
		t.Errorf("config --services: %q", out)
	}
	if out := d.ok(t, "compose", "ls", "--format", "json"); !strings.Contains(out, `"Name":"tools"`) {
		t.Errorf("compose ls: %q", out)
	}
	if out := compose("images", "--format", "json"); !strings.Contains(out, "busybox") {
		t.Errorf("compose images: %q", out)
	}
	if out := d.ok(t, "ps", "--filter", "label=com.docker.compose.service=app", "--format", "{{.Label \"tier\"}}"); out != "front\n" {
		t.Errorf("labels: %q", out)
	}

	// logs -f and events follow: a restart shows in both.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var logs, evs syncBuffer
	logsCmd := d.cmd(ctx, "compose", "-f", file, "logs", "-f", "--no-log-prefix", "app")
	logsCmd.Stdout = &logs
	evCmd := d.cmd(ctx, "compose", "-f", file, "events", "--json")
	evCmd.Stdout = &evs
	for _, c := range []*exec.Cmd{logsCmd, evCmd} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // both are following
	compose("restart", "app")
	eventually(t, time.Minute, "logs -f and events to show the restart", func() bool {
		return strings.Count(logs.String(), "started") >= 2 && strings.Contains(evs.String(), `"action":"start"`)
	})
	cancel()
	logsCmd.Wait()
	evCmd.Wait()

	// pull fetches a service's image from its registry.
	reg := startRegistry(t, noAuth)
	ref := reg.Host + "/tools/busybox:1"
	d.ok(t, "tag", dockerImg, ref)
	d.ok(t, "push", ref)
	d.ok(t, "rmi", ref)
	pullFile := filepath.Join(dir, "pull.yaml")
	if err := os.WriteFile(pullFile, []byte("name: pulled\nservices:\n  p:\n    image: "+ref+"\n    command: [sleep, \"1000\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.ok(t, "compose", "-f", pullFile, "pull")
	d.ok(t, "image", "inspect", ref)
	d.ok(t, "rmi", ref)

	// A healthcheck that never passes: up --wait fails, nothing crashes.
	r := d.docker(t, "compose", "-f", file, "--profile", "sick", "up", "-d", "--wait", "--wait-timeout", "20", "sick")
	if r.code == 0 || !(strings.Contains(r.stderr, "unhealthy") || strings.Contains(r.stderr, "timeout")) {
		t.Errorf("up --wait of a service that never gets healthy: %s", r)
	}
	compose("--profile", "debug", "--profile", "sick", "kill", "sick")
	compose("--profile", "debug", "--profile", "sick", "rm", "-f", "sick")
	compose("--profile", "debug", "down")
	if out := d.ok(t, "ps", "-a", "-q"); out != "" {
		t.Errorf("containers after down: %q", out)
	}
	// External resources outlive the project.
	d.ok(t, "network", "inspect", "outside")
	d.ok(t, "volume", "inspect", "keep")
	d.ok(t, "network", "rm", "outside")
	d.ok(t, "volume", "rm", "keep")
	d.assertNothingLeft(t, "compose commands")
}

const featuresCompose = `name: feat
services:
  worker:
    image: hearth.test/busybox:latest
    entrypoint: ["sh", "-c"]
    command: ["echo $$GREETING $$FROM_FILE; exec sleep 1000"]
    env_file: [app.env]
    environment:
      GREETING: %s
    user: "1000:1000"
    read_only: true
    restart: unless-stopped
    expose: ["9000"]
    deploy:
      replicas: 2
      resources:
        limits:
          cpus: "1"
          memory: 256M
  other:
    image: hearth.test/busybox:latest
    command: ["sleep", "1000"]
`

// TestComposeRecreate: service options reach the containers, and a
// changed service is recreated while an unchanged one is kept; a missing
// image fails with the registry's error.
func TestComposeRecreate(t *testing.T) {
	t.Parallel()
	d := newDockerEnv(t)
	d.useCompose(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	write := func(greeting string) {
		if err := os.WriteFile(file, []byte(fmt.Sprintf(featuresCompose, greeting)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "app.env"), []byte("FROM_FILE=fromfile\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	compose := func(args ...string) string {
		t.Helper()
		return d.ok(t, append([]string{"compose", "-f", file}, args...)...)
	}
	write("hello")
	compose("up", "-d", "--wait")
	if out := compose("ps", "-q", "worker"); len(strings.Fields(out)) != 2 {
		t.Errorf("deploy.replicas 2: %q", out)
	}
	c := d.inspect(t, "feat-worker-1")
	if c.Config.User != "1000:1000" || !c.HostConfig.ReadonlyRootfs || c.HostConfig.RestartPolicy.Name != "unless-stopped" ||
		c.HostConfig.NanoCPUs != 1e9 || c.HostConfig.Memory != 256<<20 {
		t.Errorf("worker's options: user %q ro %v restart %q cpus %d memory %d", c.Config.User, c.HostConfig.ReadonlyRootfs,
			c.HostConfig.RestartPolicy.Name, c.HostConfig.NanoCPUs, c.HostConfig.Memory)
	}
	if out := compose("exec", "-T", "worker", "id", "-u"); out != "1000\n" {
		t.Errorf("user: %q", out)
	}
	d.waitLogs(t, "feat-worker-1", "hello fromfile")
	if r := d.docker(t, "compose", "-f", file, "exec", "-T", "worker", "touch", "/x"); r.code == 0 {
		t.Error("read_only: a write to the root filesystem worked")
	}

	otherID := d.inspect(t, "feat-other-1").ID
	workerID := c.ID
	write("changed")
	compose("up", "-d", "--wait")
	if id := d.inspect(t, "feat-other-1").ID; id != otherID {
		t.Error("an unchanged service was recreated")
	}
	if id := d.inspect(t, "feat-worker-1").ID; id == workerID {
		t.Error("a changed service was not recreated")
	}
	d.waitLogs(t, "feat-worker-1", "changed fromfile")
	compose("up", "-d", "--wait", "--force-recreate", "--no-deps", "other")
	if id := d.inspect(t, "feat-other-1").ID; id == otherID {
		t.Error("--force-recreate kept the container")
	}

	// A service gone from the file is an orphan: --remove-orphans takes it.
	if err := os.WriteFile(file, []byte(strings.Split(fmt.Sprintf(featuresCompose, "changed"), "  other:")[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	compose("up", "-d", "--wait", "--remove-orphans")
	if r := d.docker(t, "inspect", "feat-other-1"); r.code == 0 {
		t.Error("--remove-orphans left the orphan")
	}

	// An image that cannot be pulled is compose's error, and no half-made
	// container is left.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: bad\nservices:\n  x:\n    image: 127.0.0.1:1/nosuch:latest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := d.docker(t, "compose", "-f", bad, "up", "-d"); r.code == 0 {
		t.Errorf("up with an image that cannot be pulled: %s", r)
	}
	if out := d.ok(t, "ps", "-a", "-q", "--filter", "label=com.docker.compose.project=bad"); out != "" {
		t.Errorf("containers of the failed project: %q", out)
	}
	d.docker(t, "compose", "-f", bad, "down")

	// A container_name is the tenant's: a second project that wants it
	// gets Docker's conflict until the first is down.
	mk := func(project string) string {
		f := filepath.Join(dir, project+".yaml")
		if err := os.WriteFile(f, []byte("name: "+project+"\nservices:\n  s:\n    image: hearth.test/busybox:latest\n    container_name: fixed\n    command: [sleep, \"1000\"]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return f
	}
	p1, p2 := mk("one"), mk("two")
	d.ok(t, "compose", "-f", p1, "up", "-d")
	if r := d.docker(t, "compose", "-f", p2, "up", "-d"); r.code == 0 || !strings.Contains(r.stderr, `The container name "/fixed" is already in use`) {
		t.Errorf("a second project's container_name in use: %s", r)
	}
	d.ok(t, "compose", "-f", p1, "down")
	d.ok(t, "compose", "-f", p2, "up", "-d")
	d.ok(t, "compose", "-f", p2, "down", "--remove-orphans")
	compose("down", "--remove-orphans")
	d.assertNothingLeft(t, "compose recreate")
}
