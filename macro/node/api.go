package node

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/agent"
	"github.com/hearth-cloud/hearth/macro/cluster"
	"github.com/hearth-cloud/hearth/macro/datapath"
	"github.com/hearth-cloud/hearth/macro/pki"
	"github.com/hearth-cloud/hearth/macro/store"
)

// nodeAPI is the node's network API: joins (authenticated by the join
// token, as the joiner has no certificate yet), and the data path to the
// node's pods (for other nodes' certificates only). It serves its
// certificate with the CA after it, so a joiner can check the CA against
// its token.
type nodeAPI struct {
	srv *http.Server
}

func serveNodeAPI(listen string, dir pki.Dir, cli *clientv3.Client, st *store.Store, pods *datapath.Locator) (*nodeAPI, error) {
	serverTLS, _, err := dir.TLS()
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(dir.CACert())
	if err != nil {
		return nil, err
	}
	caCert, err := pki.ParseCert(caPEM)
	if err != nil {
		return nil, err
	}
	cert := serverTLS.Certificates[0]
	cert.Certificate = append(cert.Certificate, caCert.Raw)
	serverTLS.Certificates = []tls.Certificate{cert}

	mux := http.NewServeMux()
	ca, err := dir.LoadCA()
	if err != nil {
		return nil, err
	}
	if ca != nil {
		adm := &cluster.Admitter{CA: ca, Client: cli, Store: st, Alive: func(ctx context.Context, node string) bool {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			resp, err := cli.Get(ctx, agent.LeaseKey(node))
			return err == nil && len(resp.Kvs) > 0
		}}
		mux.Handle("/v1/join", adm.Handler())
		mux.Handle("/v1/join/", adm.Handler())
	}
	mux.Handle("POST /v1/datapath/{tenant}/{name}", datapath.NodeHandler(pods))
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, errdefs.FailedPrecondition("node API: cannot listen on %s: %v", listen, err)
	}
	srv := &http.Server{Handler: mux, TLSConfig: serverTLS, ReadHeaderTimeout: 10 * time.Second}
	go srv.ServeTLS(ln, "", "")
	return &nodeAPI{srv: srv}, nil
}

func (n *nodeAPI) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.srv.Shutdown(ctx)
}
