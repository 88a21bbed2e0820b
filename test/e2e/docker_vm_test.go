//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

// TestDockerInitHealthAdoption: --init, healthchecks run inside the VM,
// and containers that keep running, healthy and reachable across a
// restart of hearth.
func TestDockerInitHealthAdoption(t *testing.T) {
	t.Parallel()
	d := newDockerEnv(t)
	since := strconv.FormatInt(time.Now().Unix(), 10)

	// --init: docker-init is PID 1 and hands the stop signal on, so a
	// plain sleep stops at once with 143 instead of waiting for SIGKILL.
	d.ok(t, "run", "-d", "--init", "--name", "in", dockerImg, "sleep", "1000")
	top := d.ok(t, "top", "in")
	if !strings.Contains(top, "/sbin/docker-init -- /bin/sleep 1000") {
		t.Errorf("top of an --init container:\n%s", top)
	}
	if r := d.docker(t, "run", "--rm", "--init", dockerImg, "sh", "-c", "exit 7"); r.code != 7 {
		t.Errorf("--init exit code: %s", r)
	}
	began := time.Now()
	d.ok(t, "stop", "in")
	if took := time.Since(began); took > 8*time.Second {
		t.Errorf("stop of an --init container took %s: the signal did not reach the command", took)
	}
	if c := d.inspect(t, "in"); c.State.ExitCode != 143 || c.HostConfig.Init == nil || !*c.HostConfig.Init {
		t.Errorf("--init container after stop: exit %d, HostConfig.Init %v", c.State.ExitCode, c.HostConfig.Init)
	}
	d.ok(t, "rm", "in")

	// A healthcheck that fails until a file exists.
	d.ok(t, "run", "-d", "--name", "hc", "--health-cmd", "test -e /tmp/ok", "--health-interval", "1s",
		"--health-retries", "2", dockerImg, "sleep", "1000")
	psStatus := func() string {
		return strings.TrimSpace(d.ok(t, "ps", "--filter", "name=hc", "--format", "{{.Status}}"))
	}
	eventually(t, time.Minute, "hc to turn unhealthy", func() bool { return strings.HasSuffix(psStatus(), "(unhealthy)") })
	if ids := strings.Fields(d.ok(t, "ps", "-q", "--filter", "health=unhealthy")); len(ids) != 1 {
		t.Errorf("ps --filter health=unhealthy: %v", ids)
	}
	d.ok(t, "exec", "hc", "touch", "/tmp/ok")
	eventually(t, time.Minute, "hc to turn healthy", func() bool { return strings.HasSuffix(psStatus(), "(healthy)") })
	h := d.inspect(t, "hc").State.Health
	if h == nil || h.Status != container.Healthy || h.FailingStreak != 0 || len(h.Log) == 0 || h.Log[len(h.Log)-1].ExitCode != 0 {
		t.Fatalf("inspect .State.Health: %+v", h)
	}
	ev := d.ok(t, "events", "--since", since, "--until", strconv.FormatInt(time.Now().Unix()+1, 10),
		"--filter", "container=hc", "--filter", "event=health_status", "--format", "{{.Action}}")
	if got := strings.Fields(strings.ReplaceAll(ev, "health_status: ", "health_status:")); len(got) != 2 ||
		got[0] != "health_status:unhealthy" || got[1] != "health_status:healthy" {
		t.Errorf("health_status events: %q", ev)
	}

	// hearth restarts: the container runs on, its VM adopted, and its
	// healthcheck goes on.
	startedAt := d.inspect(t, "hc").State.StartedAt
	d.n.stop()
	d.n.start()
	c := d.inspect(t, "hc")
	if c.State.Status != container.StateRunning || c.State.StartedAt != startedAt {
		t.Fatalf("after a restart of hearth: %s, started %s (was %s)", c.State.Status, c.State.StartedAt, startedAt)
	}
	if out := d.ok(t, "exec", "hc", "sh", "-c", "rm /tmp/ok; echo gone"); out != "gone\n" {
		t.Errorf("exec after a restart of hearth: %q", out)
	}
	eventually(t, time.Minute, "hc to turn unhealthy again", func() bool { return strings.HasSuffix(psStatus(), "(unhealthy)") })
	d.ok(t, "rm", "-f", "hc")
	d.assertNothingLeft(t, "init, health and adoption")
}
