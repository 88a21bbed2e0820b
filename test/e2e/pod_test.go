//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writePodFile(t *testing.T, v any) string {
	t.Helper()
	b, _ := json.Marshal(v)
	p := filepath.Join(t.TempDir(), "pod.json")
	os.WriteFile(p, b, 0o644)
	return p
}

func TestMultiContainerPod(t *testing.T) {
	t.Parallel()
	mount := []map[string]any{{"volume": "shared", "target": "/shared"}}
	pf := writePodFile(t, map[string]any{
		"name":    "duo",
		"volumes": []map[string]any{{"name": "shared", "type": "tmpfs"}},
		"containers": []map[string]any{
			{"name": "server", "image": img.busybox, "mounts": mount, "command": []string{"sh", "-c",
				`echo "server pid $$" > /shared/server; touch /only-server; echo hi-from-server | nc -l -p 9000; exit 3`}},
			{"name": "client", "image": img.config, "mounts": mount, "user": "root", "command": []string{"sh", "-c",
				`until [ -e /shared/server ]; do sleep 0.1; done; echo "client pid $$"; cat /shared/server; ls /only-server 2>&1; ` +
					`until nc 127.0.0.1 9000 </dev/null; do sleep 0.1; done; exit 4`}},
		},
	})
	id := strings.TrimSpace(must(t, "cradle", "launch", "-d", pf))
	t.Cleanup(func() { hearth(t, "cradle", "rm", "-f", id) })
	r := hearth(t, "cradle", "wait", id)
	if r.stdout != "server 3\nclient 4\n" {
		t.Fatalf("each container keeps its own exit status: %s", r)
	}
	// Own PID namespaces (each is PID 1), own rootfs, shared volume and
	// network (the client reached the server on 127.0.0.1).
	got := must(t, "cradle", "logs", "-c", "client", id)
	want := "client pid 1\nserver pid 1\nls: /only-server: No such file or directory\nhi-from-server\n"
	if got != want {
		t.Fatalf("client saw %q, want %q", got, want)
	}
	p := inspect(t, id)
	if len(p.Launch.Containers) != 2 {
		t.Fatalf("containers: %+v", p.Launch.Containers)
	}
	must(t, "cradle", "rm", id)
	assertGone(t, id)

	// In the foreground, launch exits with the first container's code.
	r = hearth(t, "cradle", "launch", pf)
	if r.code != 3 {
		t.Fatalf("launch in the foreground: %s", r)
	}
}

func TestNetwork(t *testing.T) {
	t.Parallel()
	// A server in the pod is reachable from the host at the pod's IP.
	id := startPod(t, img.busybox, "sh", "-c", "mkdir /www && echo hello-http > /www/index.html && exec httpd -f -p 8080 -h /www")
	ip := podIP(t, id)
	var body string
	eventually(t, time.Minute, "the pod's web server", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://%s:8080/", ip))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b := make([]byte, 64)
		n, _ := resp.Body.Read(b)
		body = string(b[:n])
		return true
	})
	if body != "hello-http\n" {
		t.Fatalf("body %q", body)
	}

	// The pod reaches the host's network through the bridge's gateway and
	// NAT; the host's resolvers are its DNS.
	port := hostServer(t, "hello-from-host\n")
	hostIP := hostAddress(t)
	r := hearth(t, "cradle", "exec", id, "sh", "-c", fmt.Sprintf("nc %s %d </dev/null; ip route; cat /etc/resolv.conf", hostIP, port))
	if !strings.Contains(r.stdout, "hello-from-host") || !strings.Contains(r.stdout, "default via 10.88.0.1") || !strings.Contains(r.stdout, "nameserver ") {
		t.Fatalf("egress: %s", r)
	}
	out, err := exec.Command("nft", "list", "table", "ip", "hearth_hearth0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "masquerade") {
		t.Fatalf("NAT table: %v %s", err, out)
	}
}

// hostServer listens on every host address and writes reply to each
// connection; it returns the port.
func hostServer(t *testing.T, reply string) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(reply))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// hostAddress is an address of the host outside the pods' bridge.
func hostAddress(t *testing.T) string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !strings.HasPrefix(ipn.IP.String(), "10.88.") {
			return ipn.IP.String()
		}
	}
	t.Skip("host has no non-loopback IPv4 address")
	return ""
}

func TestMemoryHogKillsOnlyItsOwnVM(t *testing.T) {
	t.Parallel()
	neighbour := startPod(t, img.busybox, "sleep", "600")
	r := runPod(t, "--memory", "128m", img.hog, "/hog")
	if r.code != 137 {
		t.Fatalf("hog: %s", r)
	}
	id := startPod(t, "--memory", "128m", img.hog, "/hog")
	hearth(t, "cradle", "wait", id)
	if p := inspect(t, id); p.State.Containers[0].Exit == nil || !p.State.Containers[0].Exit.OOMKilled {
		t.Fatalf("hog not reported OOM-killed: %+v", p.State)
	}
	if r := hearth(t, "cradle", "exec", neighbour, "echo", "alive"); r.stdout != "alive\n" {
		t.Fatalf("neighbour: %s", r)
	}
}
