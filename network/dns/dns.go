// Package dns answers the pods of user networks by name. On every node,
// a resolver listens on each network bridge's gateway address; it knows
// the running containers of the networks the asking pod is on (their
// names, short IDs and network aliases), from macro's state, and sends
// every other question to the host's resolvers. A name is answered only
// to pods that share a network with it; several containers of one name
// (replicas of a compose service) are answered in turn.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// ttl keeps answers short-lived: containers come and go.
const ttl = 5

// entry is one pod's place on one network.
type entry struct {
	tenant, network string
	ip              netip.Addr
	names           []string
}

// Book is the names of the pods on networks.
type Book struct {
	mu    sync.RWMutex
	byPod map[string][]entry // by pod key
	turn  atomic.Uint32
}

// entries are what a pod contributes: running, on user networks.
func entries(p *model.Pod) []entry {
	if p.Status.Phase != model.PhaseRunning {
		return nil
	}
	var out []entry
	for _, at := range p.Spec.Attachments {
		ip, err := netip.ParseAddr(at.IP)
		if err != nil {
			continue
		}
		names := []string{}
		if p.Alias != "" {
			names = append(names, p.Alias)
		}
		if len(p.Name) >= 12 {
			names = append(names, p.Name[:12])
		}
		names = append(names, at.Aliases...)
		for i := range names {
			names[i] = strings.ToLower(names[i])
		}
		out = append(out, entry{tenant: p.Tenant, network: at.Network, ip: ip, names: names})
	}
	return out
}

// Set records a pod (or forgets it, when it has nothing to contribute).
func (b *Book) Set(p *model.Pod) {
	key := p.Tenant + "/" + p.Name
	es := entries(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byPod == nil {
		b.byPod = map[string][]entry{}
	}
	if len(es) == 0 {
		delete(b.byPod, key)
		return
	}
	b.byPod[key] = es
}

// Delete forgets a pod.
func (b *Book) Delete(tenant, name string) {
	b.mu.Lock()
	delete(b.byPod, tenant+"/"+name)
	b.mu.Unlock()
}

// Lookup answers name for the pod at src on network: the addresses name
// has on the networks that pod is on; ok is false when no such pod asks.
func (b *Book) Lookup(tenant, network string, src netip.Addr, name string) (addrs []netip.Addr, asker bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	b.mu.RLock()
	defer b.mu.RUnlock()
	nets := map[string]bool{}
	for _, es := range b.byPod {
		for _, e := range es {
			if e.tenant == tenant && e.network == network && e.ip == src {
				for _, o := range es {
					nets[o.network] = true
				}
			}
		}
	}
	if len(nets) == 0 {
		return nil, false
	}
	for _, es := range b.byPod {
		for _, e := range es {
			if e.tenant != tenant || !nets[e.network] {
				continue
			}
			for _, n := range e.names {
				if n == name {
					addrs = append(addrs, e.ip)
					break
				}
			}
		}
	}
	sortAddrs(addrs)
	return addrs, true
}

func sortAddrs(a []netip.Addr) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j].Less(a[j-1]); j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// Follow keeps the book from macro's pods until ctx ends.
func (b *Book) Follow(ctx context.Context, st *store.Store) error {
	err := store.Watch[model.Pod](ctx, st, model.KindPod, func(ev store.Event[*model.Pod], initial bool) {
		if ev.Object == nil {
			return
		}
		if ev.Type == store.Deleted {
			b.Delete(ev.Object.Tenant, ev.Object.Name)
			return
		}
		b.Set(ev.Object)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Resolver serves one network on one node, on its gateway address.
type Resolver struct {
	Book     *Book
	Tenant   string
	Network  string
	Addr     netip.Addr
	Upstream []string // host:port
	Log      *slog.Logger
	// Port is 53 unless set (tests).
	Port int
	// Within runs fn where the resolver's sockets belong (the network's
	// namespace); nil runs it here.
	Within func(fn func() error) error

	udp, tcp *dns.Server
}

// Start listens on Addr:53, UDP and TCP.
func (r *Resolver) Start() error {
	port := "53"
	if r.Port != 0 {
		port = fmt.Sprint(r.Port)
	}
	within := r.Within
	if within == nil {
		within = func(fn func() error) error { return fn() }
	}
	var pc net.PacketConn
	var ln net.Listener
	err := within(func() (err error) {
		if pc, err = net.ListenPacket("udp", net.JoinHostPort(r.Addr.String(), port)); err != nil {
			return err
		}
		if ln, err = net.Listen("tcp", net.JoinHostPort(r.Addr.String(), port)); err != nil {
			pc.Close()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("dns on %s: %w", r.Addr, err)
	}
	r.udp = &dns.Server{PacketConn: pc, Handler: r}
	r.tcp = &dns.Server{Listener: ln, Handler: r}
	go r.udp.ActivateAndServe()
	go r.tcp.ActivateAndServe()
	return nil
}

// Stop closes the resolver.
func (r *Resolver) Stop() {
	if r.udp != nil {
		r.udp.Shutdown()
	}
	if r.tcp != nil {
		r.tcp.Shutdown()
	}
}

// ServeDNS answers the network's names and forwards the rest.
func (r *Resolver) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	src := sourceAddr(w.RemoteAddr())
	if len(q.Question) == 1 {
		qn := q.Question[0]
		addrs, asker := r.Book.Lookup(r.Tenant, r.Network, src, qn.Name)
		if !asker {
			// Only the network's pods are answered.
			m := new(dns.Msg)
			m.SetRcode(q, dns.RcodeRefused)
			w.WriteMsg(m)
			return
		}
		if len(addrs) > 0 {
			if n := len(addrs); n > 1 && qn.Qtype == dns.TypeA {
				// Round robin: each answer starts one further along.
				k := int(r.Book.turn.Add(1)) % n
				addrs = append(addrs[k:], addrs[:k]...)
			}
			m := new(dns.Msg)
			m.SetReply(q)
			m.Authoritative = true
			if qn.Qtype == dns.TypeA || qn.Qtype == dns.TypeANY {
				for _, a := range addrs {
					m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qn.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: a.AsSlice()})
				}
			}
			w.WriteMsg(m)
			return
		}
	}
	w.WriteMsg(r.forward(q))
}

// forward asks the host's resolvers, over UDP, and over TCP when the
// answer does not fit.
func (r *Resolver) forward(q *dns.Msg) *dns.Msg {
	var lastErr error
	for _, up := range r.Upstream {
		resp, _, err := (&dns.Client{Net: "udp", Timeout: 2 * time.Second}).Exchange(q, up)
		if err == nil && resp.Truncated {
			if full, _, terr := (&dns.Client{Net: "tcp", Timeout: 2 * time.Second}).Exchange(q, up); terr == nil {
				resp = full
			}
		}
		if err == nil {
			return resp
		}
		lastErr = err
	}
	if lastErr == nil {
		lastErr = errors.New("no upstream resolvers")
	}
	if r.Log != nil {
		r.Log.Debug("dns forward", "name", q.Question, "err", lastErr)
	}
	m := new(dns.Msg)
	m.SetRcode(q, dns.RcodeServerFailure)
	return m
}

func sourceAddr(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// Resolvers are a node's resolvers, one per network bridge.
type Resolvers struct {
	Book     *Book
	Upstream []string
	Log      *slog.Logger

	mu   sync.Mutex
	byID map[string]*Resolver // by bridge
}

// Ensure serves network (of tenant) on gw, once per bridge; within runs
// what makes its sockets where they belong (nil: here).
func (s *Resolvers) Ensure(bridge, tenant, network string, gw netip.Addr, within func(func() error) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = map[string]*Resolver{}
	}
	if _, ok := s.byID[bridge]; ok {
		return nil
	}
	r := &Resolver{Book: s.Book, Tenant: tenant, Network: network, Addr: gw, Upstream: s.Upstream, Log: s.Log, Within: within}
	if err := r.Start(); err != nil {
		return err
	}
	s.byID[bridge] = r
	return nil
}

// Stop ends the resolver of a bridge.
func (s *Resolvers) Stop(bridge string) {
	s.mu.Lock()
	r := s.byID[bridge]
	delete(s.byID, bridge)
	s.mu.Unlock()
	if r != nil {
		r.Stop()
	}
}

// Close ends them all.
func (s *Resolvers) Close() {
	s.mu.Lock()
	rs := s.byID
	s.byID = nil
	s.mu.Unlock()
	for _, r := range rs {
		r.Stop()
	}
}
