//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

const echoImg = "hearth.test/echo:latest"

// echoTCP sends a line through addr and returns the answer: the pod's
// hostname, then the line.
func echoTCP(t *testing.T, addr, line string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatalf("connect %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintln(c, line)
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("echo through %s: %v", addr, err)
	}
	return strings.TrimSpace(got)
}

// echoUDP sends a datagram to addr until an answer comes.
func echoUDP(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 1500)
	for i := 0; i < 30; i++ {
		c.Write([]byte(msg))
		c.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := c.Read(b); err == nil {
			return string(b[:n])
		}
	}
	t.Fatalf("no UDP answer through %s", addr)
	return ""
}

// TestDockerPorts: -p and -P publish TCP and UDP ports on the node, usable
// as soon as docker run -d returns; conflicts are refused; ports close with
// the container and come back with an adopted pod.
func TestDockerPorts(t *testing.T) {
	t.Parallel()
	d := newDockerEnv(t)
	d.n.must("image", "load", "-q", "-i", img.echo)
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	d.ok(t, "run", "-d", "--name", "pe", "--hostname", "pe-host", "-p", fmt.Sprintf("%d:7", port), "-p", fmt.Sprintf("%d:7/udp", port), echoImg)
	// At once: the proxy holds the connection until the pod listens.
	if got := echoTCP(t, addr, "hello"); got != "pe-host hello" {
		t.Errorf("TCP through the published port: %q", got)
	}
	if got := echoUDP(t, addr, "dgram"); got != "pe-host dgram" {
		t.Errorf("UDP through the published port: %q", got)
	}
	out := d.ok(t, "port", "pe")
	for _, want := range []string{fmt.Sprintf("7/tcp -> 0.0.0.0:%d", port), fmt.Sprintf("7/udp -> 0.0.0.0:%d", port)} {
		if !strings.Contains(out, want) {
			t.Errorf("docker port pe: %q lacks %q", out, want)
		}
	}
	if ps := d.ok(t, "ps", "--format", "{{.Ports}}", "--filter", "name=pe"); !strings.Contains(ps, fmt.Sprintf("0.0.0.0:%d->7/tcp", port)) {
		t.Errorf("docker ps PORTS: %q", ps)
	}

	// The same host port again: refused, and the container stays created.
	r := d.docker(t, "run", "-d", "--name", "clash", "-p", fmt.Sprintf("%d:7", port), echoImg)
	if r.code != 125 || !strings.Contains(r.stderr, "no free ports") {
		t.Errorf("a taken host port: %s", r)
	}
	if st := d.status(t, "clash"); st != "created" {
		t.Errorf("the container of a failed start is %s", st)
	}
	// A port some other program holds: Docker's message.
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	_, taken, _ := net.SplitHostPort(ln.Addr().String())
	r = d.docker(t, "run", "-d", "--name", "busy", "-p", taken+":7", echoImg)
	ln.Close()
	if r.code != 125 || !strings.Contains(r.stderr, "port is already allocated") {
		t.Errorf("a port another program holds: %s", r)
	}
	// Bad specifications are the CLI's or the API's 400s.
	for _, spec := range []string{"99999:7", "80-90:7"} {
		if r := d.docker(t, "create", "-p", spec, echoImg); r.code == 0 {
			t.Errorf("-p %s accepted: %s", spec, r)
		}
	}

	// -P: every exposed port, on ports the node picks.
	d.ok(t, "run", "-d", "--name", "pp", "--hostname", "pp-host", "-P", echoImg)
	var tcpAddr string
	for _, line := range strings.Split(strings.TrimSpace(d.ok(t, "port", "pp", "7/tcp")), "\n") {
		if strings.HasPrefix(line, "0.0.0.0:") {
			tcpAddr = strings.Replace(line, "0.0.0.0", "127.0.0.1", 1)
		}
	}
	if tcpAddr == "" {
		t.Fatalf("docker port pp 7/tcp: no IPv4 binding")
	}
	if got := echoTCP(t, tcpAddr, "any"); got != "pp-host any" {
		t.Errorf("TCP through a -P port: %q", got)
	}

	// The default network lists and holds the running containers; it is
	// not removed.
	if out := d.ok(t, "network", "ls", "--format", "{{.Name}} {{.Driver}}"); out != "bridge bridge\n" {
		t.Errorf("docker network ls: %q", out)
	}
	if out := d.ok(t, "network", "inspect", "bridge", "--format", "{{range .Containers}}{{.Name}} {{end}}"); !strings.Contains(out, "pe ") || !strings.Contains(out, "pp ") {
		t.Errorf("network inspect bridge: containers %q", out)
	}
	d.fails(t, 1, "pre-defined network and cannot be removed", "network", "rm", "bridge")
	d.fails(t, 1, "network nosuch not found", "network", "inspect", "nosuch")

	// hearth restarts: the pod runs on and its port comes back.
	d.n.stop()
	d.n.start()
	// The agent publishes again once it has adopted the pod.
	eventually(t, time.Minute, "the port to be published again", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if got := echoTCP(t, addr, "again"); got != "pe-host again" {
		t.Errorf("TCP after a restart of hearth: %q", got)
	}

	// Removed, the ports are free again.
	d.ok(t, "rm", "-f", "pe", "pp", "clash", "busy")
	for _, p := range []string{addr, tcpAddr} {
		ln, err := net.Listen("tcp", p)
		if err != nil {
			t.Errorf("port %s still held after rm: %v", p, err)
			continue
		}
		ln.Close()
	}
	d.assertNothingLeft(t, "ports")
}
