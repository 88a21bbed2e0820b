// Package datapath carries the streams of a running pod (logs, attach,
// exec, signals, waits) from wherever a frontend runs to the pod's
// supervisor on its node. A stream is an HTTP connection upgraded to the
// supervisor's own protocol (cradle/spec), spliced through: the admin
// socket on the frontend's node, then, for a pod elsewhere, the pod
// node's API over mutual TLS signed by the cluster CA.
package datapath

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hearth-cloud/hearth/cradle"
	"github.com/hearth-cloud/hearth/cradle/podlog"
	"github.com/hearth-cloud/hearth/cradle/shim"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/errhttp"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Protocol names the upgrade.
const Protocol = "hearth-shim/1"

// Locator finds a pod's supervisor.
type Locator struct {
	Node    string
	Runtime *cradle.Runtime
	Store   *store.Store
	// TLS is the node's client configuration for other nodes' APIs.
	TLS *tls.Config
	// LogDir is where this node keeps the logs of pod uid, which outlive
	// the pod's VMs.
	LogDir func(uid string) string
}

// Conn connects to the supervisor of pod tenant/name, wherever it runs.
func (l *Locator) Conn(ctx context.Context, tenant, name string) (net.Conn, error) {
	p, err := store.Get[model.Pod](ctx, l.Store, model.KindPod, tenant, name)
	if err != nil {
		return nil, err
	}
	if p.Status.CradleID == "" || p.Status.Node == "" {
		return nil, errdefs.Conflict("pod %s/%s is not running", tenant, name)
	}
	if p.Status.Node == l.Node {
		return l.local(p)
	}
	n, err := store.Get[model.Node](ctx, l.Store, model.KindNode, "", p.Status.Node)
	if err != nil {
		return nil, err
	}
	if n.Spec.Address == "" || l.TLS == nil {
		return nil, errdefs.Unavailable("pod %s/%s runs on node %s, which has no API address", tenant, name, n.Name)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.Spec.Address, l.TLS)
	if err != nil {
		return nil, errdefs.Unavailable("reach node %s at %s: %v", n.Name, n.Spec.Address, err)
	}
	return Upgrade(conn, "/v1/datapath/"+tenant+"/"+name)
}

func (l *Locator) local(p *model.Pod) (net.Conn, error) {
	sock := l.Runtime.Paths(p.Status.CradleID).Socket()
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		if l.LogDir != nil {
			return l.logsOnly(p), nil
		}
		return nil, errdefs.Conflict("pod %s/%s is not running (%v)", p.Tenant, p.Name, err)
	}
	return conn, nil
}

// logsOnly stands in for the supervisor of a pod that has none running:
// the pod's recorded output is all it serves.
func (l *Locator) logsOnly(p *model.Pod) net.Conn {
	client, server := net.Pipe()
	go func() {
		defer server.Close()
		var req spec.Request
		if spec.ReadJSON(server, spec.FrameRequest, &req) != nil {
			return
		}
		if req.Op != spec.OpLogs {
			spec.WriteJSON(server, spec.FrameResponse, &spec.Response{Error: fmt.Sprintf("pod %s/%s is not running", p.Tenant, p.Name), Kind: spec.ErrConflict})
			return
		}
		known := false
		for _, c := range p.Spec.Containers {
			known = known || c.Name == req.Container
		}
		if !known {
			spec.WriteJSON(server, spec.FrameResponse, &spec.Response{Error: fmt.Sprintf("no such container: %s", req.Container), Kind: spec.ErrNotFound})
			return
		}
		if spec.WriteJSON(server, spec.FrameResponse, &spec.Response{}) != nil {
			return
		}
		exit := &spec.ExitStatus{Code: p.Status.ExitCode, FinishedAt: p.Status.FinishedAt}
		r, err := podlog.Open(filepath.Join(l.LogDir(p.UID), req.Container+".log"))
		if err == nil {
			err = r.SendWith(server, req.Log)
			r.Close()
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			exit = &spec.ExitStatus{Code: -1, Error: err.Error()}
		}
		spec.WriteJSON(server, spec.FrameExit, exit)
	}()
	return client
}

// Client is a supervisor client for pod tenant/name, through the locator.
func (l *Locator) Client(ctx context.Context, tenant, name string) *shim.Client {
	return &shim.Client{Dial: func() (net.Conn, error) { return l.Conn(ctx, tenant, name) }}
}

// Upgrade asks the server at the other end of conn to turn it into a
// stream to a supervisor, at path.
func Upgrade(conn net.Conn, path string) (net.Conn, error) {
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: hearth\r\nConnection: Upgrade\r\nUpgrade: %s\r\nContent-Length: 0\r\n\r\n", path, Protocol)
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("data path: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		err := errhttp.Read(resp)
		resp.Body.Close()
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return &bufferedConn{Conn: conn, r: br}, nil
}

// bufferedConn keeps bytes the response reader read ahead.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Splice answers an upgrade request and joins its connection to target
// until either side ends.
func Splice(w http.ResponseWriter, target net.Conn) {
	defer target.Close()
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "upgrade not supported", http.StatusInternalServerError)
		return
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer client.Close()
	io.WriteString(client, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+Protocol+"\r\n\r\n")
	var once sync.Once
	done := make(chan struct{})
	stop := func() { once.Do(func() { close(done) }) }
	go func() {
		// Bytes the server buffered past the request belong to the stream.
		if n := brw.Reader.Buffered(); n > 0 {
			b, _ := brw.Reader.Peek(n)
			target.Write(b)
		}
		io.Copy(target, client)
		stop()
	}()
	go func() {
		io.Copy(client, target)
		stop()
	}()
	<-done
}

// NodeHandler serves /v1/datapath/{tenant}/{name} on a node's API, for
// pods on this node, to callers holding a node certificate.
func NodeHandler(l *Locator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || !isNode(r.TLS.PeerCertificates[0].Subject.Organization) {
			errhttp.Write(w, errdefs.PermissionDenied("the data path is for the cluster's nodes"))
			return
		}
		tenant, name := r.PathValue("tenant"), r.PathValue("name")
		p, err := store.Get[model.Pod](r.Context(), l.Store, model.KindPod, tenant, name)
		if err != nil {
			errhttp.Write(w, err)
			return
		}
		if p.Status.Node != l.Node {
			errhttp.Write(w, errdefs.FailedPrecondition("pod %s/%s does not run on node %s", tenant, name, l.Node))
			return
		}
		conn, err := l.local(p)
		if err != nil {
			errhttp.Write(w, err)
			return
		}
		Splice(w, conn)
	})
}

func isNode(orgs []string) bool {
	for _, o := range orgs {
		if o == "hearth:nodes" {
			return true
		}
	}
	return false
}
