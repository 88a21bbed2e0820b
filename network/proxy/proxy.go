// Package proxy publishes pods' ports on their node (docker run -p): a
// TCP or UDP listener per published port that forwards to the pod's
// address. A connection that arrives while the pod is still starting is
// held until the pod listens, so a port is usable as soon as it is
// published; the same hold will let the proxy wake parked pods.
package proxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
)

const (
	// dialWait is how long a connection waits for the pod to listen.
	dialWait = 30 * time.Second
	// udpIdle ends a UDP flow nobody has used for that long.
	udpIdle = 60 * time.Second
)

// Proxy is one node's published ports.
type Proxy struct {
	Log *slog.Logger
	// Within runs fn in network namespace ns, where a pod's address is
	// reached (its tenant's); nil when every pod is in this one.
	Within func(ns string, fn func() error) error

	mu   sync.Mutex
	pods map[string]*published
}

// published is what one pod has open.
type published struct {
	// dial connects to the pod, from its namespace.
	dial    func(network, addr string) (net.Conn, error)
	closers []io.Closer
	conns   map[io.Closer]bool
	closed  bool
	mu      sync.Mutex
}

func (p *published) track(c io.Closer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *published) untrack(c io.Closer) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *published) close() {
	p.mu.Lock()
	p.closed = true
	cs := append([]io.Closer(nil), p.closers...)
	for c := range p.conns {
		cs = append(cs, c)
	}
	p.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// Publish opens the ports of pod key, forwarding to ip, in place of what
// key had published. It returns the ports as bound (with the host ports
// the node chose for 0), or, when one cannot be bound, an error and none
// of them.
func (x *Proxy) Publish(key, netns, ip string, ports []model.Port) ([]model.Port, error) {
	x.Unpublish(key)
	if net.ParseIP(ip) == nil {
		return nil, fmt.Errorf("publish ports of %s: invalid pod address %q", key, ip)
	}
	pub := &published{conns: map[io.Closer]bool{}, dial: x.dialer(netns)}
	var bound []model.Port
	for _, pt := range ports {
		target := net.JoinHostPort(ip, strconv.Itoa(pt.ContainerPort))
		listen := net.JoinHostPort(pt.HostIP, strconv.Itoa(pt.HostPort))
		var addr net.Addr
		switch pt.Protocol {
		case "tcp":
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				pub.close()
				return nil, bindError(pt, err)
			}
			pub.closers = append(pub.closers, ln)
			addr = ln.Addr()
			go x.serveTCP(pub, ln, target)
		case "udp":
			pc, err := net.ListenPacket("udp", listen)
			if err != nil {
				pub.close()
				return nil, bindError(pt, err)
			}
			pub.closers = append(pub.closers, pc)
			addr = pc.LocalAddr()
			go x.serveUDP(pub, pc, target)
		default:
			pub.close()
			return nil, errdefs.InvalidArgument("publish port %d: unknown protocol %q", pt.ContainerPort, pt.Protocol)
		}
		_, port, _ := net.SplitHostPort(addr.String())
		pt.HostPort, _ = strconv.Atoi(port)
		bound = append(bound, pt)
	}
	x.mu.Lock()
	if x.pods == nil {
		x.pods = map[string]*published{}
	}
	x.pods[key] = pub
	x.mu.Unlock()
	return bound, nil
}

// dialer connects from network namespace ns: the socket is made there,
// and stays there.
func (x *Proxy) dialer(ns string) func(network, addr string) (net.Conn, error) {
	dial := func(network, addr string) (net.Conn, error) { return net.DialTimeout(network, addr, 5*time.Second) }
	if ns == "" || x.Within == nil {
		return dial
	}
	return func(network, addr string) (c net.Conn, err error) {
		werr := x.Within(ns, func() error {
			c, err = dial(network, addr)
			return nil
		})
		if werr != nil {
			return nil, werr
		}
		return c, err
	}
}

// bindError is Docker's message for a port that is taken.
func bindError(pt model.Port, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		ip := pt.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		return errdefs.Conflict("Bind for %s failed: port is already allocated", net.JoinHostPort(ip, strconv.Itoa(pt.HostPort)))
	}
	return fmt.Errorf("publish port %s: %w", pt, err)
}

// Unpublish closes the ports of pod key and its connections through them.
func (x *Proxy) Unpublish(key string) {
	x.mu.Lock()
	pub := x.pods[key]
	delete(x.pods, key)
	x.mu.Unlock()
	if pub != nil {
		pub.close()
	}
}

// Close unpublishes everything.
func (x *Proxy) Close() {
	x.mu.Lock()
	pods := x.pods
	x.pods = nil
	x.mu.Unlock()
	for _, p := range pods {
		p.close()
	}
}

func (x *Proxy) serveTCP(pub *published, ln net.Listener, target string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go x.forwardTCP(pub, c, target)
	}
}

// forwardTCP joins a client to the pod, half-closes included.
func (x *Proxy) forwardTCP(pub *published, c net.Conn, target string) {
	defer c.Close()
	if !pub.track(c) {
		return
	}
	defer pub.untrack(c)
	up := dialPod(pub, target)
	if up == nil {
		return
	}
	defer up.Close()
	if !pub.track(up) {
		return
	}
	defer pub.untrack(up)
	done := make(chan struct{})
	go func() {
		io.Copy(up, c)
		closeWrite(up)
		close(done)
	}()
	io.Copy(c, up)
	closeWrite(c)
	<-done
}

// dialPod connects to the pod, waiting (dialWait at most) for it to
// listen: it may be booting still.
func dialPod(pub *published, target string) net.Conn {
	deadline := time.Now().Add(dialWait)
	for {
		up, err := pub.dial("tcp", target)
		if err == nil {
			return up
		}
		pub.mu.Lock()
		closed := pub.closed
		pub.mu.Unlock()
		if closed || time.Now().After(deadline) {
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
	} else {
		c.Close()
	}
}

// serveUDP forwards datagrams, one flow to the pod per client address.
func (x *Proxy) serveUDP(pub *published, pc net.PacketConn, target string) {
	raddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return
	}
	var mu sync.Mutex
	flows := map[string]*net.UDPConn{}
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		mu.Lock()
		up := flows[from.String()]
		if up == nil {
			c, err := pub.dial("udp", raddr.String())
			if err != nil {
				mu.Unlock()
				continue
			}
			up = c.(*net.UDPConn)
			if !pub.track(up) {
				mu.Unlock()
				up.Close()
				continue
			}
			flows[from.String()] = up
			go func(up *net.UDPConn, from net.Addr) {
				defer func() {
					mu.Lock()
					delete(flows, from.String())
					mu.Unlock()
					pub.untrack(up)
					up.Close()
				}()
				b := make([]byte, 64<<10)
				for {
					up.SetReadDeadline(time.Now().Add(udpIdle))
					n, err := up.Read(b)
					if err != nil {
						var ne net.Error
						if errors.As(err, &ne) && ne.Timeout() {
							return
						}
						if errors.Is(err, syscall.ECONNREFUSED) {
							continue // nothing listens yet: a later datagram may do
						}
						return
					}
					if _, err := pc.WriteTo(b[:n], from); err != nil {
						return
					}
				}
			}(up, from)
		}
		mu.Unlock()
		up.Write(buf[:n])
	}
}
