// Package node runs one Hearth node, `hearth up`: the state store (an
// embedded etcd member, or a client of an external cluster), the
// controllers (active while this node leads), the node agent with cradle,
// and the admin API. Stopping it stops none of its pods.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/api/admin"
	"github.com/hearth-cloud/hearth/cradle"
	"github.com/hearth-cloud/hearth/cradle/host"
	"github.com/hearth-cloud/hearth/cradle/launch"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/agent"
	"github.com/hearth-cloud/hearth/macro/cluster"
	"github.com/hearth-cloud/hearth/macro/controller"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Options configure a node.
type Options struct {
	Name    string
	Role    string
	DataDir string
	RunDir  string
	Accel   string
	// LeaseTTL is the node heartbeat's time to live.
	LeaseTTL time.Duration
	// EtcdClientURL and EtcdPeerURL are where the embedded member listens.
	EtcdClientURL string
	EtcdPeerURL   string
	// EtcdEndpoints, when set, use an external etcd cluster instead.
	EtcdEndpoints []string
	Labels        map[string]string
	// CPUOvercommit multiplies the host's CPUs into the vCPUs pods may
	// reserve.
	CPUOvercommit float64
	Log           *slog.Logger
	LogLevel      string
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
	rt := &cradle.Runtime{DataDir: o.DataDir, RunDir: o.RunDir, Log: o.Log, LogLevel: o.LogLevel}

	var cli *clientv3.Client
	if len(o.EtcdEndpoints) > 0 {
		cli, err = clientv3.New(clientv3.Config{Endpoints: o.EtcdEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return fmt.Errorf("connect to etcd %v: %w", o.EtcdEndpoints, err)
		}
		defer cli.Close()
	} else {
		etcd, err := cluster.StartEtcd(ctx, cluster.EtcdConfig{
			Name: o.Name, DataDir: filepath.Join(o.DataDir, "etcd"),
			ClientURL: o.EtcdClientURL, PeerURL: o.EtcdPeerURL, Log: o.Log,
		})
		if err != nil {
			return err
		}
		defer etcd.Close()
		cli = etcd.Client
	}
	st := store.New(cli)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	images.InUse = func(id v1.Hash) []string { return rt.PodsUsingImage(id.String()) }
	images.LayersInUse = rt.LayersInUse

	ag := &agent.Agent{
		Node: o.Name, Role: o.Role, Labels: o.Labels, Accel: accel, LeaseTTL: o.LeaseTTL,
		Capacity: capacity(o.CPUOvercommit),
		Store:    st,
		VMM:      &cradleVMM{rt: rt, accel: accel},
		Build:    builder(images, rt),
		NewID:    cradle.NewID,
		Log:      o.Log,
	}
	mgr := &controller.Manager{Node: o.Name, Store: st, Log: o.Log, LeaseTTL: o.LeaseTTL}
	api := &admin.Server{Store: st, Log: o.Log}
	if err := api.Serve(filepath.Join(o.RunDir, "hearth.sock")); err != nil {
		return err
	}
	defer api.Close()

	errc := make(chan error, 2)
	go func() { errc <- ag.Run(ctx) }()
	go func() { errc <- mgr.Run(ctx) }()
	o.Log.Info("hearth is up", "node", o.Name, "accel", accel, "in", time.Since(start).Round(time.Millisecond),
		"admin", filepath.Join(o.RunDir, "hearth.sock"))
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
	accel string
}

func (v *cradleVMM) Start(ctx context.Context, l *spec.Launch) error {
	return v.rt.Start(ctx, l, v.accel)
}

func (v *cradleVMM) Wait(ctx context.Context, id string) (*spec.PodState, error) {
	return v.rt.Wait(ctx, id)
}

func (v *cradleVMM) Stop(id string, timeout time.Duration) error { return v.rt.StopPod(id, timeout) }
func (v *cradleVMM) Remove(id string) error                      { return v.rt.RemovePod(id) }

func (v *cradleVMM) List() ([]agent.VM, error) {
	pods, err := v.rt.List()
	if err != nil {
		return nil, err
	}
	var out []agent.VM
	for _, p := range pods {
		out = append(out, agent.VM{ID: p.Launch.ID, Labels: p.Launch.Labels,
			Running: p.State.Status == spec.StatusRunning || p.State.Status == spec.StatusCreated})
	}
	return out, nil
}

// builder makes launch specs for the agent from the pod's images, in the
// pod tenant's image store, on the default bridge.
func builder(images *image.Service, rt *cradle.Runtime) agent.Builder {
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
			sc.ReadonlyRootfs, sc.StopSignal = c.ReadOnly, c.StopSignal
			if p.Spec.StopTimeout > 0 {
				t := p.Spec.StopTimeout
				sc.StopTimeout = &t
			}
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
				sc.Mounts = append(sc.Mounts, spec.Mount{Volume: fmt.Sprintf("v%d", idx), Target: m.Target, ReadOnly: m.ReadOnly})
			}
		}
		l = b.Finish()
		l.Labels[agent.LabelPodKey] = p.Tenant + "/" + p.Name
		l.Labels[agent.LabelPodUID] = p.UID
		net, err := rt.DefaultNetwork(id)
		if err != nil {
			return nil, err
		}
		l.Network = net
		return l, nil
	}
}
