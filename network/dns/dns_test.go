package dns

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hearth-cloud/hearth/macro/model"
)

func pod(tenant, name, alias, ip, network string, aliases ...string) *model.Pod {
	return &model.Pod{Meta: model.Meta{Tenant: tenant, Name: name, Alias: alias},
		Spec:   model.PodSpec{Attachments: []model.Attachment{{Network: network, IP: ip, Aliases: aliases}}},
		Status: model.PodStatus{Phase: model.PhaseRunning}}
}

func TestLookup(t *testing.T) {
	var b Book
	b.Set(pod("acme", "aaaaaaaaaaaa1111", "web", "10.1.0.2", "n1", "front"))
	b.Set(pod("acme", "bbbbbbbbbbbb2222", "api1", "10.1.0.3", "n1", "api"))
	b.Set(pod("acme", "cccccccccccc3333", "api2", "10.1.0.4", "n1", "api"))
	b.Set(pod("acme", "dddddddddddd4444", "db", "10.2.0.2", "n2"))
	b.Set(pod("other", "eeeeeeeeeeee5555", "web", "10.1.0.9", "n1"))
	stopped := pod("acme", "ffffffffffff6666", "gone", "10.1.0.7", "n1")
	stopped.Status.Phase = model.PhaseExited
	b.Set(stopped)

	ask := func(name string) []string {
		addrs, ok := b.Lookup("acme", "n1", netip.MustParseAddr("10.1.0.2"), name)
		if !ok {
			t.Fatalf("the asking pod is unknown")
		}
		var out []string
		for _, a := range addrs {
			out = append(out, a.String())
		}
		return out
	}
	if got := ask("api1."); len(got) != 1 || got[0] != "10.1.0.3" {
		t.Errorf("by name: %v", got)
	}
	if got := ask("FRONT"); len(got) != 1 || got[0] != "10.1.0.2" {
		t.Errorf("by alias, any case: %v", got)
	}
	if got := ask("bbbbbbbbbbbb"); len(got) != 1 || got[0] != "10.1.0.3" {
		t.Errorf("by short ID: %v", got)
	}
	if got := ask("api"); len(got) != 2 || got[0] != "10.1.0.3" || got[1] != "10.1.0.4" {
		t.Errorf("several of one name: %v", got)
	}
	for _, name := range []string{"db", "gone", "nosuch"} {
		if got := ask(name); len(got) != 0 {
			t.Errorf("%s, not on the asker's networks or not running: %v", name, got)
		}
	}
	// Another tenant's pod of the same network ID and name is not seen;
	// nor does anyone not on the network get answers.
	if got := ask("web"); len(got) != 1 || got[0] != "10.1.0.2" {
		t.Errorf("web: %v", got)
	}
	if _, ok := b.Lookup("acme", "n1", netip.MustParseAddr("10.9.9.9"), "web"); ok {
		t.Error("a stranger was answered")
	}
	b.Delete("acme", "bbbbbbbbbbbb2222")
	if got := ask("api1"); len(got) != 0 {
		t.Errorf("a deleted pod: %v", got)
	}
}

// TestResolver: a real resolver on loopback answers the network's names,
// refuses strangers, and forwards the rest.
func TestResolver(t *testing.T) {
	// The upstream: answers everything with 192.0.2.1.
	up, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upSrv := &dns.Server{PacketConn: up, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(192, 0, 2, 1)})
		w.WriteMsg(m)
	})}
	go upSrv.ActivateAndServe()
	defer upSrv.Shutdown()

	var b Book
	b.Set(pod("acme", "aaaaaaaaaaaa1111", "asker", "127.0.0.1", "n1"))
	b.Set(pod("acme", "bbbbbbbbbbbb2222", "web", "10.1.0.3", "n1", "api"))
	b.Set(pod("acme", "cccccccccccc3333", "web2", "10.1.0.4", "n1", "api"))
	probe, _ := net.ListenPacket("udp", "127.0.0.1:0")
	port := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	r := &Resolver{Book: &b, Tenant: "acme", Network: "n1", Addr: netip.MustParseAddr("127.0.0.1"), Port: port, Upstream: []string{up.LocalAddr().String()}}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	addr := net.JoinHostPort("127.0.0.1", fmtInt(port))
	query := func(name, network string) *dns.Msg {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		c := &dns.Client{Net: network, Timeout: 3 * time.Second}
		resp, _, err := c.Exchange(q, addr)
		if err != nil {
			t.Fatalf("query %s over %s: %v", name, network, err)
		}
		return resp
	}
	for _, network := range []string{"udp", "tcp"} {
		resp := query("web", network)
		if len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "10.1.0.3" {
			t.Errorf("web over %s: %v", network, resp)
		}
		// Answers for A start one further along each time.
		first, second := query("api", network), query("api", network)
		if len(first.Answer) != 2 || first.Answer[0].(*dns.A).A.Equal(second.Answer[0].(*dns.A).A) {
			t.Errorf("round robin over %s: %v then %v", network, first.Answer, second.Answer)
		}
		resp = query("example.org", network)
		if len(resp.Answer) != 1 || resp.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
			t.Errorf("a forwarded name over %s: %v", network, resp)
		}
	}
	b.Delete("acme", "aaaaaaaaaaaa1111")
	if resp := query("web", "udp"); resp.Rcode != dns.RcodeRefused {
		t.Errorf("a stranger's question: rcode %d", resp.Rcode)
	}
}

func fmtInt(n int) string { return (&net.TCPAddr{Port: n}).String()[1:] }
