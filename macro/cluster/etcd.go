// Package cluster runs the state store under macro: an embedded etcd
// member in the node's data dir (one for a single node; three or five
// across control nodes), or a client of an external etcd cluster.
package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// EtcdConfig configures the embedded member.
type EtcdConfig struct {
	Name    string
	DataDir string
	// ClientURL and PeerURL are where the member listens; a single node
	// uses unix sockets under RunDir and no peer port at all.
	ClientURL string
	PeerURL   string
	// PKI holds the node's certificate: peers and clients speak mutual
	// TLS signed by the cluster CA. Without it (tests), plain HTTP.
	PKI TLSFiles
	// InitialCluster lists the members to start with (name=peerURL,...);
	// empty starts a new one-member cluster.
	InitialCluster string
	// New starts InitialCluster's members as a new cluster together
	// (rather than this one joining an existing one).
	New bool
	Log *slog.Logger
}

// TLSFiles are a node's certificate, key and CA files.
type TLSFiles struct {
	Cert, Key, CA string
}

func (f TLSFiles) info() transport.TLSInfo {
	return transport.TLSInfo{CertFile: f.Cert, KeyFile: f.Key, TrustedCAFile: f.CA, ClientCertAuth: true}
}

// NewClient connects to etcd endpoints with the node's certificate.
func NewClient(endpoints []string, files TLSFiles) (*clientv3.Client, error) {
	var tlsCfg *tls.Config
	if files.Cert != "" {
		var err error
		if tlsCfg, err = files.info().ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd client TLS: %w", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return cli, nil
}

// Etcd is a running embedded member and a client of it.
type Etcd struct {
	srv    *embed.Etcd
	Client *clientv3.Client
}

// StartEtcd starts the member and waits until it serves.
func StartEtcd(ctx context.Context, c EtcdConfig) (*Etcd, error) {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = c.Name
	cfg.Dir = c.DataDir
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	curl, err := url.Parse(c.ClientURL)
	if err != nil {
		return nil, errdefs.InvalidArgument("etcd client URL %q: %v", c.ClientURL, err)
	}
	purl, err := url.Parse(c.PeerURL)
	if err != nil {
		return nil, errdefs.InvalidArgument("etcd peer URL %q: %v", c.PeerURL, err)
	}
	cfg.ListenClientUrls = []url.URL{*curl}
	cfg.AdvertiseClientUrls = []url.URL{*curl}
	cfg.ListenPeerUrls = []url.URL{*purl}
	cfg.AdvertisePeerUrls = []url.URL{*purl}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", c.Name, purl)
	if c.InitialCluster != "" {
		cfg.InitialCluster = c.InitialCluster
		if !c.New {
			cfg.ClusterState = embed.ClusterStateFlagExisting
		}
	}
	cfg.InitialClusterToken = "hearth"
	if c.PKI.Cert != "" {
		cfg.ClientTLSInfo = c.PKI.info()
		cfg.PeerTLSInfo = c.PKI.info()
	}
	// Compact history hourly: watches need recent history, not all of it.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	if _, err := os.Stat(filepath.Join(c.DataDir, "member")); err == nil {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start etcd in %s: %w", c.DataDir, err)
	}
	select {
	case <-srv.Server.ReadyNotify():
	case err := <-srv.Err():
		srv.Close()
		return nil, fmt.Errorf("etcd: %w", err)
	case <-time.After(5 * time.Minute):
		srv.Close()
		return nil, fmt.Errorf("etcd in %s did not become ready", c.DataDir)
	case <-ctx.Done():
		srv.Close()
		return nil, ctx.Err()
	}
	cli, err := NewClient([]string{c.ClientURL}, c.PKI)
	if err != nil {
		srv.Close()
		return nil, err
	}
	return &Etcd{srv: srv, Client: cli}, nil
}

// ID is this member's etcd ID.
func (e *Etcd) ID() uint64 { return uint64(e.srv.Server.MemberID()) }

// Promote turns this member, added as a learner, into a voting member,
// once it has caught up with the leader; others are the existing members'
// client URLs (a learner does not serve clients).
func (e *Etcd) Promote(ctx context.Context, others []string, files TLSFiles) error {
	cli, err := NewClient(others, files)
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.MemberPromote(cctx, e.ID())
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("promote etcd member: %w", err)
		}
		// Not caught up yet: the leader says when it is.
		time.Sleep(500 * time.Millisecond)
	}
}

// Close stops the client and the member.
func (e *Etcd) Close() {
	e.Client.Close()
	e.srv.Close()
}
