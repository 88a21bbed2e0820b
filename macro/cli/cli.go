// Package cli holds the commands of the cluster: `hearth up`, and the
// admin's `hearth node`, `hearth pod` and `hearth service`, which talk to
// a running node's admin API.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/hearth-cloud/hearth/api/admin"
	cradlecli "github.com/hearth-cloud/hearth/cradle/cli"
	"github.com/hearth-cloud/hearth/cradle/host"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/node"
)

// Globals is what the commands need from the root command.
type Globals struct {
	DataDir  string
	RunDir   string
	LogLevel string
	Log      func() *slog.Logger
}

func (g *Globals) client() *admin.Client {
	return admin.NewClient(filepath.Join(g.RunDir, "hearth.sock"))
}

// Commands returns up, join-token, node, pod and service.
func Commands(g *Globals) []*cobra.Command {
	return []*cobra.Command{upCmd(g), joinTokenCmd(g), nodeCmd(g), podCmd(g), serviceCmd(g)}
}

func joinTokenCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "join-token",
		Short: "Print the token other nodes join this cluster with (hearth up --join HOST:PORT --token T)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct{ Token string }
			if err := g.client().Do(cmd.Context(), "GET", "/v1/join-token", nil, &out); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out.Token)
			return nil
		},
	}
}

// parseBridge makes a pod bridge from --pod-bridge and --pod-cidr: the
// gateway is the subnet's first address.
func parseBridge(name, cidr string) (host.Bridge, error) {
	br := host.DefaultBridge
	if name != "" {
		if len(name) > 15 {
			return br, errdefs.InvalidArgument("--pod-bridge %q: at most 15 characters", name)
		}
		br.Name = name
	}
	if cidr != "" {
		p, err := netip.ParsePrefix(cidr)
		if err != nil || !p.Addr().Is4() || p.Bits() > 29 {
			return br, errdefs.InvalidArgument("invalid --pod-cidr %q: want an IPv4 subnet of at least 8 addresses", cidr)
		}
		br.Subnet = p.Masked()
		br.Gateway = br.Subnet.Addr().Next()
	}
	return br, nil
}

func upCmd(g *Globals) *cobra.Command {
	var o node.Options
	var ttl time.Duration
	var labels []string
	var etcdEndpoints, bridge, podCIDR string
	c := &cobra.Command{
		Use:   "up",
		Short: "Run a Hearth node in the foreground (a complete single-node cluster by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer cancel()
			o.DataDir, o.RunDir, o.Log, o.LogLevel = g.DataDir, g.RunDir, g.Log(), g.LogLevel
			o.LeaseTTL = ttl
			if ttl < time.Second {
				return errdefs.InvalidArgument("--lease-ttl must be at least 1s")
			}
			switch o.Role {
			case model.RoleControl, model.RoleWorker:
			default:
				return errdefs.InvalidArgument("invalid --role %q: want control or worker", o.Role)
			}
			if etcdEndpoints != "" {
				o.EtcdEndpoints = strings.Split(etcdEndpoints, ",")
			}
			if bridge != "" || podCIDR != "" {
				br, err := parseBridge(bridge, podCIDR)
				if err != nil {
					return err
				}
				o.Bridge = br
			}
			o.Labels = map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return errdefs.InvalidArgument("invalid label %q: want KEY=VALUE", l)
				}
				o.Labels[k] = v
			}
			return node.Run(ctx, o)
		},
	}
	fl := c.Flags()
	fl.StringVar(&o.Name, "name", "", "node name (default: the host name)")
	fl.StringVar(&o.Role, "role", model.RoleControl, "this node's role: control or worker")
	fl.StringVar(&o.Accel, "accel", "auto", "accelerator for pods: auto, kvm or tcg")
	fl.DurationVar(&ttl, "lease-ttl", 10*time.Second, "node heartbeat lease; a node silent this long is lost")
	fl.StringVar(&o.Listen, "listen", "", "node API address HOST:PORT (mutual TLS): where other nodes join and reach this one")
	fl.StringVar(&o.Join, "join", "", "join the cluster of the node at HOST:PORT")
	fl.StringVar(&o.Token, "token", "", "join token (`hearth join-token` on a control node)")
	fl.StringVar(&o.EtcdClientURL, "etcd-listen-client", "", "where the embedded etcd serves clients (default: port after --listen, or https://127.0.0.1:2379)")
	fl.StringVar(&o.EtcdPeerURL, "etcd-listen-peer", "", "where the embedded etcd serves peers (default: two ports after --listen, or https://127.0.0.1:2380)")
	fl.StringVar(&bridge, "pod-bridge", "", "host bridge of this node's pods (default hearth0)")
	fl.StringVar(&podCIDR, "pod-cidr", "", "addresses of this node's pods (default 10.88.0.0/16)")
	fl.StringVar(&etcdEndpoints, "etcd-endpoints", "", "use this external etcd cluster (comma-separated URLs) instead of an embedded one")
	fl.StringArrayVar(&labels, "label", nil, "node label KEY=VALUE, for placement constraints")
	fl.Float64Var(&o.CPUOvercommit, "cpu-overcommit", 4, "vCPUs pods may reserve per host CPU")
	fl.StringVar(&o.MetricsListen, "metrics-listen", "", "serve Prometheus metrics on HOST:PORT")
	fl.Var(uplinkPool{&o.UplinkPool}, "uplink-pool", "addresses (IPv4 CIDR) of the /30s that join tenants' network namespaces to the host (default 100.64.0.0/10)")
	fl.StringArrayVar(&o.AddressPools, "default-address-pool", nil, "where networks' subnets come from when none is given, as dockerd's: base=CIDR,size=BITS (repeatable; default 172.18-31.0.0/16, then 192.168.0.0/16 in /20s)")
	fl.StringVar(&o.DockerListen, "docker-listen", ":2376", "serve the Docker API over TLS on HOST:PORT, for tenants' client certificates (hearth tenant create); empty for none")
	return c
}

func nodeCmd(g *Globals) *cobra.Command {
	c := &cobra.Command{Use: "node", Short: "The cluster's nodes"}
	c.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List nodes: role, status, capacity, allocation, pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			nodes, err := g.client().Nodes(ctx)
			if err != nil {
				return err
			}
			pods, err := g.client().Pods(ctx, "")
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tSTATUS\tACCEL\tCPUS\tMEMORY\tALLOCATED CPUS\tALLOCATED MEMORY\tPODS")
			for _, n := range nodes {
				var cpus, mem, count int
				for _, p := range pods {
					if p.Spec.NodeName == n.Name && !model.Terminal(p.Status.Phase) {
						cpus += p.Spec.Resources.CPUs
						mem += p.Spec.Resources.MemoryMiB
						count++
					}
				}
				status := n.Status.State
				if n.Spec.Unschedulable {
					status += ",SchedulingDisabled"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%d\n", n.Name, n.Spec.Role, status, n.Status.Accel,
					n.Spec.Capacity.CPUs, mib(n.Spec.Capacity.MemoryMiB), cpus, mib(mem), count)
			}
			return tw.Flush()
		},
	}, &cobra.Command{
		Use:   "drain NAME",
		Short: "Keep new pods off a node and move its pods elsewhere",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct{ Moved int }
			if err := g.client().Do(cmd.Context(), "POST", "/v1/nodes/"+args[0]+"/drain", nil, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "node %s drained: %d pods moved\n", args[0], out.Moved)
			return nil
		},
	})
	return c
}

// uplinkPool is the --uplink-pool flag.
type uplinkPool struct{ p *netip.Prefix }

func (u uplinkPool) String() string {
	if u.p == nil || !u.p.IsValid() {
		return ""
	}
	return u.p.String()
}

func (u uplinkPool) Set(s string) error {
	p, err := host.ParseUplinkPool(s)
	if err != nil {
		return err
	}
	*u.p = p
	return nil
}

func (u uplinkPool) Type() string { return "CIDR" }

func mib(n int) string { return units.BytesSize(float64(n) * (1 << 20)) }

// splitPod parses TENANT/NAME, with the admin tenant by default.
func splitPod(s string) (tenant, name string) {
	if t, n, ok := strings.Cut(s, "/"); ok {
		return t, n
	}
	return "admin", s
}

func podCmd(g *Globals) *cobra.Command {
	c := &cobra.Command{Use: "pod", Short: "All tenants' pods (the admin's view)"}
	var tenant string
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List pods",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pods, err := g.client().Pods(cmd.Context(), tenant)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "TENANT\tNAME\tPHASE\tNODE\tIP\tRESTARTS\tAGE\tREASON")
			for _, p := range pods {
				ip, _, _ := strings.Cut(p.Status.IP, "/")
				phase := p.Status.Phase
				if phase == model.PhaseExited {
					phase = fmt.Sprintf("Exited (%d)", p.Status.ExitCode)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Tenant, p.Name, phase, p.Spec.NodeName, ip,
					p.Status.RestartCount, units.HumanDuration(time.Since(p.CreatedAt)), oneLine(p.Status.Message))
			}
			return tw.Flush()
		},
	}
	ls.Flags().StringVar(&tenant, "tenant", "", "only this tenant's pods")
	inspect := &cobra.Command{
		Use:   "inspect [TENANT/]NAME",
		Short: "Show a pod as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, n := splitPod(args[0])
			p, err := g.client().Pod(cmd.Context(), t, n)
			if err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), p)
		},
	}
	rm := &cobra.Command{
		Use:   "rm [TENANT/]NAME...",
		Short: "Delete pods; their nodes stop them",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				t, n := splitPod(a)
				if err := g.client().DeletePod(cmd.Context(), t, n); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), a)
			}
			return nil
		},
	}
	var file string
	create := &cobra.Command{
		Use:   "create -f POD.json",
		Short: "Create a pod from a file (macro's Pod object)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var p model.Pod
			if err := readFile(file, &p); err != nil {
				return err
			}
			if p.Tenant == "" {
				p.Tenant = "admin"
			}
			out, err := g.client().CreatePod(cmd.Context(), &p)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s\n", out.Tenant, out.Name)
			return nil
		},
	}
	create.Flags().StringVarP(&file, "file", "f", "", "the pod, as JSON (- for stdin)")
	create.MarkFlagRequired("file")
	c.AddCommand(ls, inspect, rm, create, podExecCmd(g), podLogsCmd(g))
	return c
}

// podExecCmd runs a command in a pod wherever it runs, through the data
// path.
func podExecCmd(g *Globals) *cobra.Command {
	var interactive, tty bool
	var env []string
	var user, workdir, container string
	c := &cobra.Command{
		Use:   "exec [flags] [TENANT/]NAME COMMAND [ARG...]",
		Short: "Run a command in a running pod, on whichever node it runs",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, n := splitPod(args[0])
			p, err := g.client().Pod(cmd.Context(), t, n)
			if err != nil {
				return err
			}
			ctr := container
			if ctr == "" && len(p.Spec.Containers) > 0 {
				ctr = p.Spec.Containers[0].Name
			}
			proc := spec.Process{Args: args[1:], Env: env, Cwd: workdir, User: user, Terminal: tty, OpenStdin: interactive}
			if tty {
				proc.Env = append(proc.Env, "TERM=xterm")
			}
			st, err := g.client().Shim(t, n).Exec(ctr, proc, nil)
			if err != nil {
				return err
			}
			defer st.Close()
			code, err := cradlecli.Relay(st, interactive, tty)
			if err != nil {
				return err
			}
			return &cradlecli.ExitError{Code: code}
		},
	}
	fl := c.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&interactive, "interactive", "i", false, "keep stdin open")
	fl.BoolVarP(&tty, "tty", "t", false, "allocate a pseudo-TTY")
	fl.StringArrayVarP(&env, "env", "e", nil, "set an environment variable KEY=VALUE")
	fl.StringVarP(&user, "user", "u", "", "user: name|uid[:group|gid]")
	fl.StringVarP(&workdir, "workdir", "w", "", "working directory")
	fl.StringVarP(&container, "container", "c", "", "container of the pod (default: the first)")
	return c
}

func podLogsCmd(g *Globals) *cobra.Command {
	var follow bool
	var container string
	c := &cobra.Command{
		Use:   "logs [-f] [TENANT/]NAME",
		Short: "Print a pod's output, on whichever node it runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, n := splitPod(args[0])
			p, err := g.client().Pod(cmd.Context(), t, n)
			if err != nil {
				return err
			}
			ctr := container
			if ctr == "" && len(p.Spec.Containers) > 0 {
				ctr = p.Spec.Containers[0].Name
			}
			st, err := g.client().Shim(t, n).Logs(ctr, follow)
			if err != nil {
				return err
			}
			defer st.Close()
			_, err = st.Relay(nil, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return err
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "follow the output")
	c.Flags().StringVarP(&container, "container", "c", "", "container of the pod (default: the first)")
	return c
}

func serviceCmd(g *Globals) *cobra.Command {
	c := &cobra.Command{Use: "service", Short: "Replicated pods (the admin's view)"}
	var file string
	create := &cobra.Command{
		Use:   "create -f SERVICE.json",
		Short: "Create a service from a file (macro's Service object)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var s model.Service
			if err := readFile(file, &s); err != nil {
				return err
			}
			if s.Tenant == "" {
				s.Tenant = "admin"
			}
			var out model.Service
			if err := g.client().Do(cmd.Context(), "POST", "/v1/services", &s, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s/%s\n", out.Tenant, out.Name)
			return nil
		},
	}
	create.Flags().StringVarP(&file, "file", "f", "", "the service, as JSON (- for stdin)")
	create.MarkFlagRequired("file")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List services",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var svcs []*model.Service
			if err := g.client().Do(cmd.Context(), "GET", "/v1/services", nil, &svcs); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "TENANT\tNAME\tREPLICAS\tRUNNING")
			for _, s := range svcs {
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\n", s.Tenant, s.Name, s.Status.Replicas, s.Spec.Replicas, s.Status.Running)
			}
			return tw.Flush()
		},
	}
	scale := &cobra.Command{
		Use:   "scale [TENANT/]NAME REPLICAS",
		Short: "Set a service's replica count",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, n := splitPod(args[0])
			var r int
			if _, err := fmt.Sscan(args[1], &r); err != nil || r < 0 {
				return errdefs.InvalidArgument("invalid replica count %q", args[1])
			}
			return g.client().Do(cmd.Context(), "PUT", "/v1/services/"+t+"/"+n+"/replicas", map[string]int{"Replicas": r}, nil)
		},
	}
	rm := &cobra.Command{
		Use:   "rm [TENANT/]NAME",
		Short: "Delete a service and its pods",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, n := splitPod(args[0])
			return g.client().Do(cmd.Context(), "DELETE", "/v1/services/"+t+"/"+n, nil, nil)
		},
	}
	c.AddCommand(create, ls, scale, rm)
	return c
}

func readFile(file string, v any) error {
	var r io.Reader
	if file == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(file)
		if err != nil {
			return errdefs.InvalidArgument("%v", err)
		}
		defer f.Close()
		r = f
	}
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errdefs.InvalidArgument("%s: %v", file, err)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	return enc.Encode(v)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}
