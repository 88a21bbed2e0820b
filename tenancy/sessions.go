package tenancy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"sync"

	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/pki"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Sessions ends the open connections of a tenant's certificate once it
// no longer acts for the tenant (rotated, or the tenant removed): a
// request checks the certificate when it comes, but a stream (attach,
// exec, logs -f, events) lasts.
type Sessions struct {
	Tenants *Manager

	mu    sync.Mutex
	conns map[*session]bool
}

// session is one accepted connection, beneath its TLS.
type session struct {
	net.Conn
	s    *Sessions
	once sync.Once
	// cert is the client's, once its handshake is done; under s.mu.
	cert *x509.Certificate
}

// Close implements net.Conn.
func (x *session) Close() error {
	x.once.Do(func() {
		x.s.mu.Lock()
		delete(x.s.conns, x)
		x.s.mu.Unlock()
	})
	return x.Conn.Close()
}

type sessionListener struct {
	net.Listener
	s *Sessions
}

func (l sessionListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	x := &session{Conn: c, s: l.s}
	l.s.mu.Lock()
	if l.s.conns == nil {
		l.s.conns = map[*session]bool{}
	}
	l.s.conns[x] = true
	l.s.mu.Unlock()
	return x, nil
}

// Listener tracks the connections ln accepts; TLS goes on top of it, so
// that the HTTP server still sees *tls.Conn.
func (s *Sessions) Listener(ln net.Listener) net.Listener { return sessionListener{ln, s} }

// ConnState is the HTTP server's hook: it learns each connection's
// client certificate once the connection is in use.
func (s *Sessions) ConnState(c net.Conn, state http.ConnState) {
	if state != http.StateActive {
		return
	}
	tc, ok := c.(*tls.Conn)
	if !ok {
		return
	}
	x, ok := tc.NetConn().(*session)
	if !ok {
		return
	}
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		s.mu.Lock()
		x.cert = certs[0]
		s.mu.Unlock()
	}
}

// Follow watches the tenants' records and closes the connections whose
// certificate a change revoked. It returns when ctx ends.
func (s *Sessions) Follow(ctx context.Context) error {
	err := store.Watch[model.Tenant](ctx, s.Tenants.Store, model.KindTenant, func(ev store.Event[*model.Tenant], initial bool) {
		if initial || ev.Object == nil {
			return
		}
		t := ev.Object
		if ev.Type == store.Deleted {
			t = nil
		}
		s.revoke(ev.Object.Name, t)
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// revoke closes the connections of tenant whose certificate its record
// t (nil: deleted) no longer accepts.
func (s *Sessions) revoke(tenant string, t *model.Tenant) {
	s.mu.Lock()
	var gone []*session
	for x := range s.conns {
		if x.cert == nil {
			continue
		}
		if name, ok := pki.TenantOf(x.cert); !ok || name != tenant {
			continue
		}
		if accepts(tenant, t, x.cert) != nil {
			gone = append(gone, x)
		}
	}
	s.mu.Unlock()
	for _, x := range gone {
		x.Close()
	}
}
