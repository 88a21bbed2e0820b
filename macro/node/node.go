// Package node runs one Hearth node, `hearth up`: the state store (an
// embedded etcd member, or a client of an external cluster), the
// controllers (active while this node leads), the node agent with cradle,
// and the admin API. Stopping it stops none of its pods.
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/api/admin"
	"github.com/hearth-cloud/hearth/api/docker"
	"github.com/hearth-cloud/hearth/cradle"
	"github.com/hearth-cloud/hearth/cradle/host"
	"github.com/hearth-cloud/hearth/cradle/launch"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/agent"
	"github.com/hearth-cloud/hearth/macro/cluster"
	"github.com/hearth-cloud/hearth/macro/controller"
	"github.com/hearth-cloud/hearth/macro/datapath"
	"github.com/hearth-cloud/hearth/macro/metrics"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/pki"
	"github.com/hearth-cloud/hearth/macro/store"
	"github.com/hearth-cloud/hearth/network/dns"
	"github.com/hearth-cloud/hearth/network/ipam"
	"github.com/hearth-cloud/hearth/network/proxy"
	"github.com/hearth-cloud/hearth/tenancy"
	"github.com/hearth-cloud/hearth/volume"
)

// Options configure a node.
type Options struct {
	Name    string
	Role    string
	DataDir string
	RunDir  string
	Accel   string
	// Listen is where the node API listens (HOST:PORT, mutual TLS): joins,
	// and later the data path. Empty keeps the node to itself.
	Listen string
	// Join and Token make this node join the cluster a node at Join
	// belongs to.
	Join  string
	Token string
	// LeaseTTL is the node heartbeat's time to live.
	LeaseTTL time.Duration
	// EtcdClientURL and EtcdPeerURL are where the embedded member listens;
	// by default next to Listen, or on loopback.
	EtcdClientURL string
	EtcdPeerURL   string
	// EtcdEndpoints, when set, use an external etcd cluster instead.
	EtcdEndpoints []string
	Labels        map[string]string
	// CPUOvercommit multiplies the host's CPUs into the vCPUs pods may
	// reserve.
	CPUOvercommit float64
	// Bridge is the host bridge this node's pods join.
	Bridge host.Bridge
	// MetricsListen serves Prometheus metrics on HOST:PORT when set.
	MetricsListen string
	// UplinkPool holds the /30s that join tenants' network namespaces to
	// the host; zero is host.DefaultUplinkPool.
	UplinkPool netip.Prefix
	// AddressPools are dockerd-style pools (base=CIDR,size=BITS) for
	// networks created without a subnet; empty is ipam.DefaultPools.
	AddressPools []string
	// DockerListen serves the Docker API over TLS on HOST:PORT when set,
	// to clients with a tenant's certificate of the cluster CA.
	DockerListen string
	Log          *slog.Logger
	LogLevel     string
	// Ready is closed once the node serves.
	Ready chan struct{}
}

// Run runs the node until ctx ends.
func Run(ctx context.Context, o Options) error {
	start := time.Now()
	if o.Name == "" {
		h, _ := os.Hostname()
		o.Name = strings.ToLower(h)
	}
	if !model.ValidName(o.Name) {
		return errdefs.InvalidArgument("invalid node name %q: use lower-case letters, digits and '-'", o.Name)
	}
	if (o.Join == "") != (o.Token == "") {
		return errdefs.InvalidArgument("--join and --token go together")
	}
	if o.Join != "" && o.Listen == "" {
		return errdefs.InvalidArgument("a joining node needs --listen HOST:PORT, where the cluster reaches it")
	}
	for _, d := range []string{o.DataDir, o.RunDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	unlock, err := lockDataDir(o.DataDir)
	if err != nil {
		return err
	}
	defer unlock()

	// Cradle first: a host that cannot run VMs should say so before
	// anything joins a cluster.
	assets, err := host.FindAssets()
	if err != nil {
		return err
	}
	accel, err := host.ResolveAccel(ctx, o.Accel, assets, filepath.Join(o.DataDir, "cradle"))
	if err != nil {
		return err
	}
	images, err := image.Open(o.DataDir)
	if err != nil {
		return err
	}
	rt := &cradle.Runtime{DataDir: o.DataDir, RunDir: o.RunDir, Log: o.Log, LogLevel: o.LogLevel, Bridge: o.Bridge}

	cli, closeEtcd, mem, err := o.state(ctx)
	if err != nil {
		return err
	}
	defer closeEtcd()
	st := store.New(cli)
	pkiDir := pki.Dir(filepath.Join(o.DataDir, "pki"))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	images.InUse = func(id v1.Hash) []string { return rt.PodsUsingImage(id.String()) }
	images.LayersInUse = rt.LayersInUse

	mtr := metrics.New(st, o.Name)
	if o.MetricsListen != "" {
		if err := mtr.Serve(o.MetricsListen); err != nil {
			return err
		}
		defer mtr.Close()
	}
	ports := &proxy.Proxy{Log: o.Log, Within: host.InNS}
	defer ports.Close()
	names := &dns.Book{}
	var upstream []string
	for _, a := range host.HostDNS() {
		upstream = append(upstream, net.JoinHostPort(a, "53"))
	}
	resolvers := &dns.Resolvers{Book: names, Upstream: upstream, Log: o.Log}
	defer resolvers.Close()
	nets := &networks{st: st, res: resolvers, hostBridge: defaultBridge(rt), owner: bridgeOwner(o.DataDir), dataDir: o.DataDir, log: o.Log,
		uplinkPool: o.UplinkPool,
		alive: func(id string) bool {
			_, err := os.Stat(rt.Paths(id).Dir)
			return err == nil
		}}
	ag := &agent.Agent{
		Node: o.Name, Role: mem.Role, Address: o.Listen, Labels: o.Labels, Accel: accel, LeaseTTL: o.LeaseTTL,
		Capacity: capacity(o.CPUOvercommit),
		Store:    st,
		VMM:      &cradleVMM{rt: rt, nets: nets, accel: accel, logs: filepath.Join(o.DataDir, "macro", "logs")},
		Build:    builder(nets, images, rt, o.DataDir),
		SyncNetworks: func(ctx context.Context, p *model.Pod, vm string) error {
			return nets.sync(ctx, rt, p, vm)
		},
		NewID: cradle.NewID,
		Log:   o.Log,
		Ports: ports,

		OnVMStart: func(d time.Duration) { mtr.VMStart.Observe(d.Seconds()) },
	}
	pods := &datapath.Locator{Node: o.Name, Runtime: rt, Store: st,
		LogDir: func(uid string) string { return podLogDir(o.DataDir, uid) }}
	if pkiDir.Exists() {
		if _, clientTLS, err := pkiDir.TLS(); err == nil {
			pods.TLS = clientTLS
		}
	}
	audit, err := tenancy.OpenAudit(filepath.Join(o.DataDir, "audit.log"))
	if err != nil {
		return err
	}
	defer audit.Close()
	tenantCA, err := tenancy.LoadCA(ctx, st)
	if err != nil {
		return err
	}
	tenants := &tenancy.Manager{Store: st, CA: tenantCA}
	if tenants.TrustPEM, err = os.ReadFile(pkiDir.CACert()); err != nil {
		return fmt.Errorf("read the cluster CA: %w", err)
	}
	dockerHost, kubeServer := o.endpoints()
	if u, err := url.Parse(dockerHost); err == nil && dockerHost != "" {
		if certPEM, err := os.ReadFile(pkiDir.NodeCert()); err == nil {
			if cert, err := pki.ParseCert(certPEM); err == nil && cert.VerifyHostname(u.Hostname()) != nil {
				o.Log.Warn("tenants reach the Docker API at a name this node's certificate does not hold: their clients will refuse it; give --listen that name",
					"docker_host", dockerHost)
			}
		}
	}
	api := &admin.Server{Store: st, Log: o.Log, Pods: pods, Tenants: tenants, Audit: audit,
		DockerHost: dockerHost, KubeServer: kubeServer, JoinToken: func() (string, error) {
			if o.Listen == "" {
				return "", errdefs.FailedPrecondition("this node has no --listen address: restart it with --listen HOST:PORT so that nodes can join")
			}
			ca, err := pkiDir.LoadCA()
			if err != nil || ca == nil {
				return "", errdefs.FailedPrecondition("this node cannot admit nodes (it holds no CA key); ask a control node")
			}
			secret, err := cluster.JoinSecret(context.Background(), cli)
			if err != nil {
				return "", err
			}
			return cluster.Token{CAHash: pki.Hash(ca.Cert), Secret: secret}.String(), nil
		}}
	if err := api.Serve(filepath.Join(o.RunDir, "hearth.sock")); err != nil {
		return err
	}
	defer api.Close()
	size := capacity(1)
	dapi := &docker.Server{Store: st, Images: images, Pods: pods, Node: o.Name, Log: o.Log,
		NCPU: runtime.NumCPU(), MemTotal: int64(size.MemoryMiB) << 20, DataDir: o.DataDir}
	dapi.Audit = audit
	// Streams of a certificate that a rotation or removal revokes end.
	sessions := &tenancy.Sessions{Tenants: tenants}
	dapi.ConnState = sessions.ConnState
	dapi.Tenant = func(r *http.Request) (string, error) { return dockerTenant(tenants, r) }
	bridge := defaultBridge(rt)
	dapi.Bridge.Subnet, dapi.Bridge.Gateway = bridge.Subnet, bridge.Gateway
	// User networks keep off the nodes' default bridge, and off the
	// uplinks of tenants' namespaces, whose routes they would shadow.
	dapi.Networks = &ipam.Allocator{Store: st, Reserved: []netip.Prefix{bridge.Subnet, host.UplinkPool(o.UplinkPool)}}
	for _, pool := range o.AddressPools {
		subnets, err := ipam.ParsePool(pool)
		if err != nil {
			return err
		}
		dapi.Networks.Pools = append(dapi.Networks.Pools, subnets...)
	}
	dapi.Volumes = &volume.Manager{Store: st, Node: o.Name}
	if err := dapi.Serve(filepath.Join(o.RunDir, "docker.sock")); err != nil {
		return err
	}
	defer dapi.Close()
	if o.DockerListen != "" {
		serverTLS, _, err := pkiDir.TLS()
		if err != nil {
			return err
		}
		// Only tenants' certificates, of their own CA, are taken here;
		// the cluster CA's (nodes') are not tenants.
		serverTLS.ClientCAs = x509.NewCertPool()
		serverTLS.ClientCAs.AddCert(tenantCA.Cert)
		serverTLS.ClientAuth = tls.RequireAndVerifyClientCert
		// A revoked or removed tenant's certificate fails the handshake;
		// each request checks again (dockerTenant), for connections
		// made before.
		serverTLS.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("a client certificate is required")
			}
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err := tenants.Authenticate(ctx, cs.PeerCertificates[0])
			return err
		}
		tcp, err := net.Listen("tcp", o.DockerListen)
		if err != nil {
			return fmt.Errorf("docker API on %s: %w", o.DockerListen, err)
		}
		dapi.ServeListener(tls.NewListener(sessions.Listener(tcp), serverTLS))
	}
	if o.Listen != "" {
		srv, err := serveNodeAPI(o.Listen, pkiDir, cli, st, pods)
		if err != nil {
			return err
		}
		defer srv.Close()
	}

	errc := make(chan error, 5)
	var wg sync.WaitGroup
	run := func(fn func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- fn(ctx) }()
	}
	run(ag.Run)
	run(dapi.Run)
	run(func(ctx context.Context) error { return names.Follow(ctx, st) })
	run(nets.prune)
	run(sessions.Follow)
	run(func(ctx context.Context) error { return volume.Prune(ctx, st, o.DataDir, o.Name, o.Log) })
	run(func(ctx context.Context) error {
		return tenancy.FollowRemovals(ctx, st, images.Store.Tenants, func(t string) {
			nets.removeTenant(t)
			if err := images.Forget(t); err != nil {
				o.Log.Warn("forget a removed tenant's images", "tenant", t, "err", err)
				return
			}
			o.Log.Info("forgot a removed tenant's images and registry logins", "tenant", t)
		})
	})
	if mem.Role == model.RoleControl {
		mgr := &controller.Manager{Node: o.Name, Store: st, Log: o.Log, LeaseTTL: o.LeaseTTL,
			OnBind: func(d time.Duration) { mtr.SchedulingLatency.Observe(d.Seconds()) }, OnLeader: mtr.OnLeader}
		run(mgr.Run)
	}
	// On the way out, let the controllers resign before etcd goes, so
	// the next leader need not wait out this one's session.
	defer func() {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	}()
	o.Log.Info("hearth is up", "node", o.Name, "role", mem.Role, "accel", accel, "in", time.Since(start).Round(time.Millisecond),
		"admin", filepath.Join(o.RunDir, "hearth.sock"), "docker", filepath.Join(o.RunDir, "docker.sock"), "docker_tls", o.DockerListen)
	if o.Ready != nil {
		close(o.Ready)
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
		if err != nil {
			o.Log.Error("node stopped", "err", err)
		}
	}
	cancel()
	o.Log.Info("hearth is stopping; pods keep running")
	return err
}

// state connects the node to the cluster's state: it makes or joins the
// cluster on first start, then starts the embedded member (control) or
// connects to the members (worker, or an external etcd).
func (o *Options) state(ctx context.Context) (*clientv3.Client, func(), *membership, error) {
	pkiDir := pki.Dir(filepath.Join(o.DataDir, "pki"))
	mem, err := loadMembership(o.DataDir)
	if err != nil {
		return nil, nil, nil, err
	}
	if mem != nil && mem.Name != o.Name {
		return nil, nil, nil, errdefs.FailedPrecondition("data dir %s belongs to node %q, not %q", o.DataDir, mem.Name, o.Name)
	}
	clientURL, peerURL := o.EtcdClientURL, o.EtcdPeerURL
	if o.Listen != "" && clientURL == "" {
		if clientURL, peerURL, err = etcdURLs(o.Listen); err != nil {
			return nil, nil, nil, err
		}
	}
	if clientURL == "" {
		clientURL, peerURL = "https://127.0.0.1:2379", "https://127.0.0.1:2380"
	}
	var hosts []string
	if h, _, err := net.SplitHostPort(o.Listen); err == nil {
		hosts = append(hosts, h)
	}
	files := cluster.TLSFiles{Cert: pkiDir.NodeCert(), Key: pkiDir.NodeKey(), CA: pkiDir.CACert()}

	initialCluster := ""
	abort := func() {}
	if mem == nil {
		mem = &membership{Name: o.Name, Role: o.Role}
		switch {
		case o.Join != "":
			if o.Role == model.RoleControl {
				if err := checkFree(clientURL, peerURL, o.Listen); err != nil {
					return nil, nil, nil, err
				}
			}
			resp, undo, err := join(ctx, o, pkiDir, clientURL, peerURL)
			if err != nil {
				return nil, nil, nil, err
			}
			abort = undo
			initialCluster = resp.InitialCluster
			mem.Endpoints, mem.Joined = resp.Endpoints, true
		case len(o.EtcdEndpoints) > 0:
			mem.Endpoints = o.EtcdEndpoints
			if !pkiDir.Exists() {
				if err := bootstrap(pkiDir, o.Name, hosts); err != nil {
					return nil, nil, nil, err
				}
			}
		default:
			if err := bootstrap(pkiDir, o.Name, hosts); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	if len(o.EtcdEndpoints) > 0 {
		// An external cluster speaks its own TLS (or none); its client
		// URLs say which.
		cli, err := clientv3.New(clientv3.Config{Endpoints: o.EtcdEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("connect to etcd %v: %w", o.EtcdEndpoints, err)
		}
		if err := mem.save(o.DataDir); err != nil {
			return nil, nil, nil, err
		}
		return cli, func() { cli.Close() }, mem, nil
	}
	if mem.Role == model.RoleWorker {
		cli, err := cluster.NewClient(mem.Endpoints, files)
		if err != nil {
			abort()
			return nil, nil, nil, err
		}
		if err := mem.save(o.DataDir); err != nil {
			return nil, nil, nil, err
		}
		return cli, func() { cli.Close() }, mem, nil
	}
	etcd, err := cluster.StartEtcd(ctx, cluster.EtcdConfig{
		Name: o.Name, DataDir: filepath.Join(o.DataDir, "etcd"),
		ClientURL: clientURL, PeerURL: peerURL, PKI: files,
		InitialCluster: initialCluster, Log: o.Log,
	})
	if err != nil {
		abort()
		return nil, nil, nil, err
	}
	if initialCluster != "" {
		if err := etcd.Promote(ctx, mem.Endpoints, files); err != nil {
			etcd.Close()
			abort()
			return nil, nil, nil, err
		}
		mem.Endpoints = append(mem.Endpoints, clientURL)
	}
	if err := mem.save(o.DataDir); err != nil {
		etcd.Close()
		return nil, nil, nil, err
	}
	return etcd.Client, etcd.Close, mem, nil
}

// lockDataDir makes sure one hearth at a time uses a data dir.
func lockDataDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "hearth.lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errdefs.Conflict("another hearth is running with data dir %s", dir)
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}

// capacity is what this machine offers pods: its CPUs times the
// overcommit (a VM's vCPUs are threads the host schedules, mostly idle),
// and its memory less a reserve for the host, not overcommitted.
func capacity(overcommit float64) model.Resources {
	var si unix.Sysinfo_t
	unix.Sysinfo(&si)
	total := int(uint64(si.Totalram) * uint64(si.Unit) >> 20)
	reserve := total / 10
	if reserve < 512 {
		reserve = 512
	}
	if overcommit < 1 {
		overcommit = 1
	}
	return model.Resources{CPUs: int(float64(runtime.NumCPU()) * overcommit), MemoryMiB: total - reserve}
}

// cradleVMM is cradle as the agent's VMM.
type cradleVMM struct {
	rt    *cradle.Runtime
	nets  *networks
	accel string
	// logs holds each pod's container logs, by pod UID, across its VMs.
	logs string
}

// dockerTenant is the tenant a Docker API request acts for: the admin on
// the local socket, and over TLS the tenant its client certificate names.
func dockerTenant(tenants *tenancy.Manager, r *http.Request) (string, error) {
	if r.TLS == nil {
		return docker.AdminTenant, nil
	}
	if len(r.TLS.PeerCertificates) == 0 {
		return "", errdefs.Unauthenticated("a client certificate is required")
	}
	return tenants.Authenticate(r.Context(), r.TLS.PeerCertificates[0])
}

// endpoints are where tenants reach this node's Docker and Kubernetes
// APIs, as their credentials name them: the listen address, or where
// that names no host, the node API's host or else the node's name.
func (o *Options) endpoints() (dockerHost, kubeServer string) {
	host := o.Name
	if h, _, err := net.SplitHostPort(o.Listen); err == nil && specific(h) {
		host = h
	}
	dockerHost = ""
	if h, port, err := net.SplitHostPort(o.DockerListen); err == nil {
		if specific(h) {
			host = h
		}
		dockerHost = "tcp://" + net.JoinHostPort(host, port)
	}
	return dockerHost, "https://" + net.JoinHostPort(host, "6443")
}

// specific reports whether a listen host names one host (not "" or
// 0.0.0.0).
func specific(h string) bool {
	ip := net.ParseIP(h)
	return h != "" && (ip == nil || !ip.IsUnspecified())
}

// podLogDir is where a pod's container logs live on its node.
func podLogDir(dataDir, uid string) string { return filepath.Join(dataDir, "macro", "logs", uid) }

func (v *cradleVMM) Start(ctx context.Context, l *spec.Launch, hold bool) error {
	return v.rt.Start(ctx, l, v.accel, hold)
}

func (v *cradleVMM) StartPod(id string) error { return v.rt.StartPod(id) }

func (v *cradleVMM) Probe(ctx context.Context, id string, args []string, limit int) (int, string, error) {
	return v.rt.Probe(ctx, id, "", args, limit)
}

func (v *cradleVMM) Forget(uid string) error {
	if uid == "" || strings.ContainsAny(uid, "/.") {
		return nil
	}
	return os.RemoveAll(filepath.Join(v.logs, uid))
}

func (v *cradleVMM) Sweep(keep map[string]bool) error {
	ents, err := os.ReadDir(v.logs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range ents {
		if !keep[e.Name()] {
			if err := v.Forget(e.Name()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (v *cradleVMM) Wait(ctx context.Context, id string) (*spec.PodState, error) {
	return v.rt.Wait(ctx, id)
}

func (v *cradleVMM) Stop(id string, timeout time.Duration) error { return v.rt.StopPod(id, timeout) }
func (v *cradleVMM) Remove(id string) error {
	ns := ""
	if p, err := v.rt.Get(id); err == nil && p.Launch.Network != nil {
		ns = p.Launch.Network.NetNS
	}
	if err := v.rt.RemovePod(id); err != nil {
		return err
	}
	v.nets.released(ns, id)
	return nil
}

func (v *cradleVMM) List() ([]agent.VM, error) {
	pods, err := v.rt.List()
	if err != nil {
		return nil, err
	}
	var out []agent.VM
	for _, p := range pods {
		vm := agent.VM{ID: p.Launch.ID, Labels: p.Launch.Labels,
			Running: p.State.Status == spec.StatusRunning || p.State.Status == spec.StatusCreated}
		if p.Launch.Network != nil {
			vm.NetNS = p.Launch.Network.NetNS
		}
		out = append(out, vm)
	}
	return out, nil
}

// builder makes launch specs for the agent from the pod's images, in the
// pod tenant's image store, on the default bridge.
// defaultBridge is the node's default network.
func defaultBridge(rt *cradle.Runtime) host.Bridge {
	if rt.Bridge.Name == "" {
		return host.DefaultBridge
	}
	return rt.Bridge
}

func builder(nets *networks, images *image.Service, rt *cradle.Runtime, dataDir string) agent.Builder {
	return func(ctx context.Context, p *model.Pod, id string) (*spec.Launch, error) {
		l := &spec.Launch{Version: spec.Version, ID: id, Hostname: p.Spec.Hostname,
			Resources: spec.Resources{CPUs: p.Spec.Resources.CPUs, MemoryMiB: p.Spec.Resources.MemoryMiB}}
		if l.Hostname == "" && model.ValidName(p.Name) && len(p.Name) <= 63 && !strings.Contains(p.Name, ".") {
			l.Hostname = p.Name
		}
		b := launch.New(images, p.Tenant, l)
		for i, v := range p.Spec.Volumes {
			vol := spec.Volume{Name: fmt.Sprintf("v%d", i), SizeBytes: v.SizeBytes}
			switch v.Type {
			case "tmpfs":
				vol.Type = spec.VolumeTmpfs
			case "bind":
				vol.Type, vol.Source = spec.VolumeDir, v.Source
			case "volume":
				vol.Type, vol.Source = spec.VolumeBlock, volume.Path(dataDir, p.Tenant, v.Source, v.Shared)
				if err := volume.EnsureDir(dataDir, p.Tenant, v.Source, v.Shared); err != nil {
					return nil, fmt.Errorf("volume %s: %w", v.Alias, err)
				}
				if v.Shared {
					vol.Type, vol.SizeBytes, vol.Mapped = spec.VolumeDir, 0, true
				}
				vol.ReadOnly = volume.ReadOnly(p, v.Name)
			default:
				return nil, errdefs.InvalidArgument("volume %s: type %q is not supported yet", v.Name, v.Type)
			}
			l.Volumes = append(l.Volumes, vol)
		}
		for _, c := range p.Spec.Containers {
			o := image.Overrides{Entrypoint: c.Command, Cmd: c.Args, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User}
			sc, err := b.AddContainer(ctx, c.Name, c.Image, o, c.TTY, c.Stdin)
			if err != nil {
				return nil, err
			}
			sc.ReadonlyRootfs, sc.StopSignal, sc.Init = c.ReadOnly, c.StopSignal, c.Init
			sc.StopTimeout = p.Spec.StopTimeout
			for _, m := range c.Mounts {
				idx := -1
				for i, v := range p.Spec.Volumes {
					if v.Name == m.Volume {
						idx = i
					}
				}
				if idx < 0 {
					return nil, errdefs.InvalidArgument("container %s mounts unknown volume %s", c.Name, m.Volume)
				}
				v := p.Spec.Volumes[idx]
				// An empty volume takes the image's content at its
				// mount point, as Docker fills one.
				fill := v.Type == "volume" && !m.NoCopy && !volume.ReadOnly(p, v.Name)
				sc.Mounts = append(sc.Mounts, spec.Mount{Volume: fmt.Sprintf("v%d", idx), Target: m.Target, ReadOnly: m.ReadOnly, Fill: fill, SubPath: m.SubPath})
			}
		}
		l = b.Finish()
		l.Labels[agent.LabelPodKey] = p.Tenant + "/" + p.Name
		l.Labels[agent.LabelPodUID] = p.UID
		l.LogDir = podLogDir(dataDir, p.UID)
		var net *spec.Network
		var err error
		if len(p.Spec.Attachments) > 0 {
			net, err = nets.attach(ctx, p)
		} else {
			net, err = nets.attachDefault(p, id)
		}
		if err != nil {
			return nil, err
		}
		l.Network = net
		return l, nil
	}
}
