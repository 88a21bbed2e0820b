// Package cluster runs the state store under macro: an embedded etcd
// member in the node's data dir (one for a single node; three or five
// across control nodes), or a client of an external etcd cluster.
package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

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
	Log       *slog.Logger
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
	cfg.InitialClusterToken = "hearth"
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
	case <-time.After(60 * time.Second):
		srv.Close()
		return nil, fmt.Errorf("etcd in %s did not become ready", c.DataDir)
	case <-ctx.Done():
		srv.Close()
		return nil, ctx.Err()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{c.ClientURL},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		srv.Close()
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return &Etcd{srv: srv, Client: cli}, nil
}

// Close stops the client and the member.
func (e *Etcd) Close() {
	e.Client.Close()
	e.srv.Close()
}
