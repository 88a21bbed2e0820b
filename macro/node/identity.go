package node

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hearth-cloud/hearth/internal/atomicfile"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/cluster"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/pki"
)

// membership is what a node remembers of its cluster, in
// <data-dir>/cluster.json: written once the node is in.
type membership struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// Endpoints are the etcd client URLs a worker uses.
	Endpoints []string `json:"endpoints,omitempty"`
	// Joined: the embedded member joined an existing cluster, and starts
	// from its own data from now on.
	Joined bool `json:"joined,omitempty"`
}

func membershipPath(dataDir string) string { return filepath.Join(dataDir, "cluster.json") }

func loadMembership(dataDir string) (*membership, error) {
	b, err := os.ReadFile(membershipPath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var m membership
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, errdefs.FailedPrecondition("corrupt %s: %v (the data dir is damaged)", membershipPath(dataDir), err)
	}
	return &m, nil
}

func (m *membership) save(dataDir string) error {
	b, _ := json.MarshalIndent(m, "", "  ")
	return atomicfile.WriteFile(membershipPath(dataDir), b, 0o600)
}

// ports derives a node's etcd URLs from its --listen address: the client
// port is one above, the peer port two above.
func etcdURLs(listen string) (client, peer string, err error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", "", errdefs.InvalidArgument("invalid --listen %q: want HOST:PORT", listen)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65533 {
		return "", "", errdefs.InvalidArgument("invalid --listen port %q", port)
	}
	hp := func(n int) string { return "https://" + net.JoinHostPort(host, strconv.Itoa(n)) }
	return hp(p + 1), hp(p + 2), nil
}

// bootstrap makes the first node's identity: a new CA and a certificate.
func bootstrap(dir pki.Dir, name string, hosts []string) error {
	ca, err := pki.NewCA("hearth cluster CA")
	if err != nil {
		return err
	}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return err
	}
	cert, err := ca.SignNode(name, &key.PublicKey, hosts)
	if err != nil {
		return err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return err
	}
	return dir.WriteNode(ca.PEM, cert, keyPEM, caKey)
}

// join asks the cluster at addr to admit this node, and stores the
// identity it gets. For a control node the cluster has added an etcd
// member by the time it returns; abort undoes that if the node then fails
// to start.
func join(ctx context.Context, o *Options, dir pki.Dir, clientURL, peerURL string) (resp *cluster.JoinResponse, abort func(), err error) {
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return nil, nil, err
	}
	pub, err := pki.PublicKeyPEM(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	req := &cluster.JoinRequest{Token: o.Token, Name: o.Name, Role: o.Role, Address: o.Listen, PublicKey: pub}
	if o.Role == model.RoleControl {
		req.ClientURL, req.PeerURL = clientURL, peerURL
	}
	resp, err = cluster.Join(ctx, o.Join, req)
	if err != nil {
		return nil, nil, err
	}
	if err := dir.WriteNode(resp.CACert, resp.NodeCert, keyPEM, resp.CAKey); err != nil {
		return nil, nil, err
	}
	abort = func() {
		if o.Role == model.RoleControl {
			if err := cluster.AbortJoin(context.Background(), o.Join, req); err != nil {
				o.Log.Warn("undo the etcd member of a failed join", "err", err)
			}
		}
		os.RemoveAll(string(dir))
	}
	return resp, abort, nil
}

// checkFree fails early when a port this node needs is taken, before the
// cluster is changed for it.
func checkFree(urls ...string) error {
	for _, u := range urls {
		if u == "" {
			continue
		}
		host := u
		for _, p := range []string{"https://", "http://"} {
			if len(host) > len(p) && host[:len(p)] == p {
				host = host[len(p):]
			}
		}
		ln, err := net.Listen("tcp", host)
		if err != nil {
			return errdefs.FailedPrecondition("cannot listen on %s: %v", host, err)
		}
		ln.Close()
	}
	return nil
}
