package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/hearth-cloud/hearth/cradle/shim"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/errhttp"
	"github.com/hearth-cloud/hearth/macro/datapath"
	"github.com/hearth-cloud/hearth/macro/model"
)

// Client talks to a node's admin API.
type Client struct {
	Socket string
	hc     *http.Client
}

// NewClient returns a client of the socket.
func NewClient(socket string) *Client {
	return &Client{Socket: socket, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

// Do calls method path with body in and decodes the answer into out.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://hearth"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return errdefs.Unavailable("hearth is not running (no admin API at %s): start it with `hearth up`", c.Socket)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return errhttp.Read(resp)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Nodes lists the cluster's nodes.
func (c *Client) Nodes(ctx context.Context) ([]*model.Node, error) {
	var out []*model.Node
	return out, c.Do(ctx, http.MethodGet, "/v1/nodes", nil, &out)
}

// Pods lists pods of a tenant, or of all when tenant is empty.
func (c *Client) Pods(ctx context.Context, tenant string) ([]*model.Pod, error) {
	var out []*model.Pod
	path := "/v1/pods"
	if tenant != "" {
		path += "?tenant=" + tenant
	}
	return out, c.Do(ctx, http.MethodGet, path, nil, &out)
}

// Pod reads one pod.
func (c *Client) Pod(ctx context.Context, tenant, name string) (*model.Pod, error) {
	var out model.Pod
	return &out, c.Do(ctx, http.MethodGet, "/v1/pods/"+tenant+"/"+name, nil, &out)
}

// CreatePod creates a pod.
func (c *Client) CreatePod(ctx context.Context, p *model.Pod) (*model.Pod, error) {
	var out model.Pod
	return &out, c.Do(ctx, http.MethodPost, "/v1/pods", p, &out)
}

// DeletePod deletes a pod; its node stops and removes its VM.
func (c *Client) DeletePod(ctx context.Context, tenant, name string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/pods/"+tenant+"/"+name, nil, nil)
}

// Shim is a client of pod tenant/name's supervisor, reached through the
// admin API (and, for a pod on another node, that node's data path).
func (c *Client) Shim(tenant, name string) *shim.Client {
	return &shim.Client{Dial: func() (net.Conn, error) {
		conn, err := net.DialTimeout("unix", c.Socket, 5*time.Second)
		if err != nil {
			return nil, errdefs.Unavailable("hearth is not running (no admin API at %s): start it with `hearth up`", c.Socket)
		}
		return datapath.Upgrade(conn, "/v1/pods/"+tenant+"/"+name+"/shim")
	}}
}
