package proxy

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
)

// echoTCP serves a line echo on addr ("127.0.0.1:0" for any port).
func echoTCP(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
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
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln
}

func portOf(a net.Addr) int {
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return n
}

func roundTrip(t *testing.T, addr, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, msg+"\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read through the proxy: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestTCP(t *testing.T) {
	srv := echoTCP(t, "127.0.0.1:0")
	x := &Proxy{}
	defer x.Close()
	bound, err := x.Publish("acme/web", "", "127.0.0.1", []model.Port{{HostIP: "127.0.0.1", ContainerPort: portOf(srv.Addr()), Protocol: "tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(bound) != 1 || bound[0].HostPort == 0 {
		t.Fatalf("bound %+v", bound)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(bound[0].HostPort))
	if got := roundTrip(t, addr, "hello"); got != "hello" {
		t.Fatalf("echo = %q", got)
	}

	// The port is taken: a second pod gets Docker's error, and nothing.
	_, err = x.Publish("acme/other", "", "127.0.0.1", []model.Port{
		{HostIP: "127.0.0.1", HostPort: 0, ContainerPort: 1, Protocol: "tcp"},
		{HostIP: "127.0.0.1", HostPort: bound[0].HostPort, ContainerPort: 2, Protocol: "tcp"}})
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "port is already allocated") {
		t.Fatalf("conflict: %v", err)
	}

	// An open connection ends with the unpublish, and the port is free.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "x\n")
	bufio.NewReader(c).ReadString('\n')
	x.Unpublish("acme/web")
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("a connection outlived its unpublished port")
	}
	c.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port not freed: %v", err)
	}
	ln.Close()
}

// TestTCPHold: a connection made before the pod listens waits for it.
func TestTCPHold(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	podAddr := probe.Addr().String()
	probe.Close()
	x := &Proxy{}
	defer x.Close()
	bound, err := x.Publish("acme/late", "", "127.0.0.1", []model.Port{{HostIP: "127.0.0.1", ContainerPort: portOf(probe.Addr()), Protocol: "tcp"}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		echoTCP(t, podAddr)
	}()
	if got := roundTrip(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(bound[0].HostPort)), "early"); got != "early" {
		t.Fatalf("echo = %q", got)
	}
}

func TestUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo([]byte("re:"+string(b[:n])), from)
		}
	}()
	x := &Proxy{}
	defer x.Close()
	bound, err := x.Publish("acme/dns", "", "127.0.0.1", []model.Port{{HostIP: "127.0.0.1", ContainerPort: portOf(pc.LocalAddr()), Protocol: "udp"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"a", "b"} {
		c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(bound[0].HostPort)))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte(msg))
		b := make([]byte, 100)
		n, err := c.Read(b)
		c.Close()
		if err != nil || string(b[:n]) != "re:"+msg {
			t.Fatalf("udp echo of %q: %q, %v", msg, b[:n], err)
		}
	}
}

func TestPublishBadInput(t *testing.T) {
	x := &Proxy{}
	defer x.Close()
	if _, err := x.Publish("k", "", "not-an-ip", []model.Port{{ContainerPort: 80, Protocol: "tcp"}}); err == nil {
		t.Error("a bad pod address was accepted")
	}
	if _, err := x.Publish("k", "", "127.0.0.1", []model.Port{{HostIP: "127.0.0.1", ContainerPort: 80, Protocol: "sctp"}}); err == nil {
		t.Error("sctp was accepted")
	}
}
