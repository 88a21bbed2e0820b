//go:build bench

package bench

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hearth-cloud/hearth/cradle/host"
	"github.com/hearth-cloud/hearth/internal/testimage"
)

// requestOnce opens a connection to addr, sends a line and reads the echo:
// one request of a short-lived client, as most published services see.
func requestOnce(dial dialer, addr string) (time.Duration, error) {
	began := time.Now()
	c, err := dial(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		return 0, err
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}

// throughput streams size bytes through addr's echo and reads them back.
func throughput(dial dialer, addr string, size int64) (float64, error) {
	c, err := dial(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	br := bufio.NewReader(c)
	began := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := io.CopyN(c, zeros{}, size)
		errc <- err
	}()
	// The echo prefixes its hostname and a space.
	if _, err := br.ReadString(' '); err != nil {
		return 0, err
	}
	if _, err := io.CopyN(io.Discard, br, size); err != nil {
		return 0, err
	}
	if err := <-errc; err != nil {
		return 0, err
	}
	return float64(size) / time.Since(began).Seconds() / (1 << 20), nil
}

// dialer connects to a TCP address.
type dialer func(addr string) (net.Conn, error)

// hostDial connects from the host.
func hostDial(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, 10*time.Second) }

// nsDial connects from inside network namespace ns (a tenant's, where its
// pods' addresses are).
func nsDial(ns string) dialer {
	return func(addr string) (c net.Conn, err error) {
		if werr := host.InNS(ns, func() error { c, err = hostDial(addr); return nil }); werr != nil {
			return nil, werr
		}
		return c, err
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// loopbackEcho serves the same echo on the host, the baseline.
func loopbackEcho(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			go func() { defer c.Close(); io.WriteString(c, "host "); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// TestBenchPorts measures a published port against the pod's own address
// and against host loopback: request latency and echo throughput.
func TestBenchPorts(t *testing.T) {
	e := setup(t)
	n := dockerNode(t, e, "pt1", 9)
	loadImage(t, e, n, "hearth.bench/echo:latest", testimage.Echo)
	out, err := dockerCmd(e, n, "run", "-d", "--name", "echo", "-p", "127.0.0.1::7", "hearth.bench/echo:latest").CombinedOutput()
	if err != nil {
		t.Fatalf("docker run: %v\n%s", err, out)
	}
	defer dockerCmd(e, n, "rm", "-f", "echo").Run()
	out, err = dockerCmd(e, n, "port", "echo", "7/tcp").Output()
	if err != nil {
		t.Fatal(err)
	}
	published := strings.TrimSpace(string(out))
	out, err = dockerCmd(e, n, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", "echo").Output()
	if err != nil {
		t.Fatal(err)
	}
	direct := strings.TrimSpace(string(out)) + ":7"
	loop := loopbackEcho(t)
	// The pod's address is in the admin tenant's namespace: the direct
	// baseline connects from there.
	dials := map[string]dialer{published: hostDial, loop: hostDial,
		direct: nsDial(host.TenantNetFor("hearth:"+n.Data, "admin", nil).Name)}
	// Warm: the first requests wait for the guest to listen.
	for _, a := range []string{published, direct} {
		if _, err := requestOnce(dials[a], a); err != nil {
			t.Fatalf("warm %s: %v", a, err)
		}
	}

	const requests = 300
	lat := map[string][]time.Duration{}
	for i := 0; i < requests; i++ {
		for _, a := range []string{published, direct, loop} {
			d, err := requestOnce(dials[a], a)
			if err != nil {
				t.Fatalf("request to %s: %v", a, err)
			}
			lat[a] = append(lat[a], d)
		}
	}
	const size = 64 << 20
	tp := map[string]float64{}
	for _, a := range []string{published, direct, loop} {
		var best float64
		for i := 0; i < 3; i++ {
			mb, err := throughput(dials[a], a, size)
			if err != nil {
				t.Fatalf("throughput of %s: %v", a, err)
			}
			best = max(best, mb)
		}
		tp[a] = best
	}

	w := os.Stdout
	fmt.Fprintf(w, "\nPublished port (TCP echo in a pod, accelerator %s): %d requests, a new connection each\n\n", e.accel, requests)
	fmt.Fprintf(w, "| %-40s | %9s | %9s | %12s |\n", "path", "p50 (ms)", "p90 (ms)", "echo MiB/s")
	fmt.Fprintf(w, "|%s|%s|%s|%s|\n", strings.Repeat("-", 42), strings.Repeat("-", 11), strings.Repeat("-", 11), strings.Repeat("-", 14))
	for _, row := range []struct{ name, addr string }{
		{"published port (proxy) " + published, published},
		{"pod address directly " + direct, direct},
		{"host loopback " + loop, loop},
	} {
		fmt.Fprintf(w, "| %-40s | %9.2f | %9.2f | %12.0f |\n", row.name, ms(pct(lat[row.addr], 0.5)), ms(pct(lat[row.addr], 0.9)), tp[row.addr])
	}
	fmt.Fprintf(w, "\nproxy/direct latency: p50 %.2fx, p90 %.2fx (target at most 1.10x)\n", ratio(lat[published], lat[direct], 0.5), ratio(lat[published], lat[direct], 0.9))
	fmt.Fprintf(w, "throughput: proxy %.2fx of direct, %.2fx of loopback; direct %.2fx of loopback\n",
		tp[published]/tp[direct], tp[published]/tp[loop], tp[direct]/tp[loop])
}

// TestBenchNetwork measures TCP throughput pod→pod on one user network:
// the echo image's client streams through an echo in another pod and
// reads it back. The baseline is the same echo on host loopback.
func TestBenchNetwork(t *testing.T) {
	e := setup(t)
	n := dockerNode(t, e, "nw1", 10)
	docker := func(args ...string) string { return dockerOK(t, e, n, args...) }
	loadImage(t, e, n, "hearth.bench/echo:latest", testimage.Echo)
	// Its own subnet: other clusters on this host may use the pools.
	docker("network", "create", "--subnet", "10.64.0.0/24", "bench")
	docker("run", "-d", "--name", "server", "--network", "bench", "hearth.bench/echo:latest")
	docker("run", "-d", "--name", "client", "--network", "bench", "hearth.bench/echo:latest")
	defer func() {
		dockerCmd(e, n, "rm", "-f", "server", "client").Run()
		dockerCmd(e, n, "network", "rm", "bench").Run()
	}()
	const size = 64 << 20
	var pod float64
	for i := 0; i < 4; i++ {
		out, err := dockerCmd(e, n, "exec", "client", "/echo", "send", "server:7", fmt.Sprint(size)).CombinedOutput()
		if err != nil {
			if i == 0 {
				time.Sleep(time.Second) // the server may be starting still
				continue
			}
			t.Fatalf("send: %v\n%s", err, out)
		}
		var mb float64
		fmt.Sscan(string(out), &mb)
		pod = max(pod, mb)
	}
	loop := loopbackEcho(t)
	var base float64
	for i := 0; i < 3; i++ {
		mb, err := throughput(hostDial, loop, size)
		if err != nil {
			t.Fatal(err)
		}
		base = max(base, mb)
	}
	fmt.Fprintf(os.Stdout, "\nPod to pod on one network (accelerator %s): 64 MiB through an echo and back, best run\n\n", e.accel)
	fmt.Fprintf(os.Stdout, "| %-24s | %10s |\n|%s|%s|\n", "path", "MiB/s", strings.Repeat("-", 26), strings.Repeat("-", 12))
	fmt.Fprintf(os.Stdout, "| %-24s | %10.0f |\n| %-24s | %10.0f |\n", "pod to pod", pod, "host loopback", base)
	fmt.Fprintf(os.Stdout, "\npod to pod / loopback: %.2fx\n", pod/base)
}
