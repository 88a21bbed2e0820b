// Package cli holds `hearth tenant`: the admin's commands that create,
// list, inspect, rotate and remove tenants through a node's admin API.
package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/hearth-cloud/hearth/api/admin"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/pki"
	"github.com/hearth-cloud/hearth/tenancy"
)

// Command returns `hearth tenant`; client reaches the node's admin API.
func Command(client func() *admin.Client) *cobra.Command {
	c := &cobra.Command{Use: "tenant", Short: "Tenants: credentials, quotas and removal"}
	c.AddCommand(createCmd(client), lsCmd(client), inspectCmd(client), updateCmd(client), rotateCmd(client), rmCmd(client))
	return c
}

// quotaFlags are the quota options of create and update.
type quotaFlags struct {
	cpus, pods     int
	memory, volume string
}

func (q *quotaFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.IntVar(&q.cpus, "cpus", 0, "CPUs its running pods may have in all (0: no limit)")
	fl.StringVar(&q.memory, "memory", "", "memory its running pods may have in all, e.g. 4GiB (empty: no limit)")
	fl.IntVar(&q.pods, "pods", 0, "pods (containers, in any state) it may have (0: no limit)")
	fl.StringVar(&q.volume, "volumes-size", "", "total size of its volumes, e.g. 100GiB (empty: no limit)")
}

func (q *quotaFlags) spec() (model.TenantSpec, error) {
	s := model.TenantSpec{CPUs: q.cpus, Pods: q.pods}
	size := func(flag, v string) (int64, error) {
		if v == "" {
			return 0, nil
		}
		n, err := units.RAMInBytes(v)
		if err != nil || n < 0 {
			return 0, errdefs.InvalidArgument("invalid --%s %q: want a size such as 2GiB", flag, v)
		}
		return n, nil
	}
	mem, err := size("memory", q.memory)
	if err != nil {
		return s, err
	}
	if mem > 0 && mem < 1<<20 {
		return s, errdefs.InvalidArgument("invalid --memory %q: at least 1MiB", q.memory)
	}
	s.MemoryMiB = int(mem >> 20)
	if s.VolumeBytes, err = size("volumes-size", q.volume); err != nil {
		return s, err
	}
	if s.CPUs < 0 || s.Pods < 0 {
		return s, errdefs.InvalidArgument("quotas must not be negative")
	}
	return s, nil
}

// issue makes a key, has the node sign it (create or rotate), and writes
// the tenant's bundle to out.
func issue(cmd *cobra.Command, client *admin.Client, path string, req admin.TenantRequest, tenant, out string) error {
	if out == "" {
		return errdefs.InvalidArgument("--out DIR is required: the tenant's key and certificates are written there")
	}
	if err := tenancy.CheckFree(out); err != nil {
		return errdefs.InvalidArgument("%v", err)
	}
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		return err
	}
	pub, err := pki.PublicKeyPEM(&key.PublicKey)
	if err != nil {
		return err
	}
	req.PublicKey = string(pub)
	var creds admin.TenantCredentials
	if err := client.Do(cmd.Context(), "POST", path, req, &creds); err != nil {
		return err
	}
	b := &tenancy.Bundle{Tenant: tenant, CAPEM: creds.CAPEM, CertPEM: creds.CertPEM, KeyPEM: keyPEM,
		DockerHost: creds.DockerHost, KubeServer: creds.KubeServer}
	if err := b.Write(out); err != nil {
		return fmt.Errorf("%w (the tenant's credentials were issued: write them again with `hearth tenant rotate %s --out DIR`)", err, tenant)
	}
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "Credentials of tenant %s are in %s.\n", tenant, out)
	if creds.DockerHost != "" {
		fmt.Fprintf(w, "Docker:  export DOCKER_HOST=%s DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=%s\n", creds.DockerHost, out)
	}
	fmt.Fprintf(w, "         or: docker context import %s %s/%s && docker context use %s\n", b.ContextName(), out, tenancy.ContextFile, b.ContextName())
	fmt.Fprintf(w, "kubectl: export KUBECONFIG=%s/%s\n", out, tenancy.KubeFile)
	return nil
}

func createCmd(client func() *admin.Client) *cobra.Command {
	var q quotaFlags
	var out string
	c := &cobra.Command{
		Use:   "create NAME --out DIR",
		Short: "Create a tenant with quotas, and write its credentials to DIR",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := q.spec()
			if err != nil {
				return err
			}
			return issue(cmd, client(), "/v1/tenants", admin.TenantRequest{Name: args[0], Quotas: spec}, args[0], out)
		},
	}
	q.add(c)
	c.Flags().StringVar(&out, "out", "", "directory for ca.pem, cert.pem, key.pem, a docker context and a kubeconfig")
	return c
}

func rotateCmd(client func() *admin.Client) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "rotate NAME --out DIR",
		Short: "Issue a tenant new credentials; the old ones stop working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return issue(cmd, client(), "/v1/tenants/"+args[0]+"/rotate", admin.TenantRequest{}, args[0], out)
		},
	}
	c.Flags().StringVar(&out, "out", "", "directory for the new credentials")
	return c
}

func updateCmd(client func() *admin.Client) *cobra.Command {
	var q quotaFlags
	c := &cobra.Command{
		Use:   "update NAME [--cpus N] [--memory SIZE] [--pods N] [--volumes-size SIZE]",
		Short: "Set a tenant's quotas (those not given are lifted)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := q.spec()
			if err != nil {
				return err
			}
			return client().Do(cmd.Context(), "PUT", "/v1/tenants/"+args[0]+"/quotas", spec, nil)
		},
	}
	q.add(c)
	return c
}

func lsCmd(client func() *admin.Client) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List tenants, with what they hold of their quotas",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var ts []admin.TenantInfo
			if err := client().Do(cmd.Context(), "GET", "/v1/tenants", nil, &ts); err != nil {
				return err
			}
			sort.Slice(ts, func(i, j int) bool { return ts[i].Tenant.Name < ts[j].Tenant.Name })
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPODS\tCPUS\tMEMORY\tVOLUMES\tCREATED")
			for _, t := range ts {
				q, u := t.Tenant.Spec, t.Usage
				count := func(used, limit int) string { return of(fmt.Sprint(used), limit > 0, fmt.Sprint(limit)) }
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s ago\n", t.Tenant.Name,
					count(u.Pods, q.Pods), count(u.CPUs, q.CPUs),
					of(size(int64(u.MemoryMiB)<<20), q.MemoryMiB > 0, size(int64(q.MemoryMiB)<<20)),
					of(size(u.VolumeBytes), q.VolumeBytes > 0, size(q.VolumeBytes)),
					units.HumanDuration(time.Since(t.Tenant.CreatedAt)))
			}
			return tw.Flush()
		},
	}
}

func of(used string, limited bool, limit string) string {
	if !limited {
		return used
	}
	return used + "/" + limit
}

func size(n int64) string { return units.BytesSize(float64(n)) }

func inspectCmd(client func() *admin.Client) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME",
		Short: "Show a tenant's quotas and usage, as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var t admin.TenantInfo
			if err := client().Do(cmd.Context(), "GET", "/v1/tenants/"+args[0], nil, &t); err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "    ")
			return enc.Encode(t)
		},
	}
}

func rmCmd(client func() *admin.Client) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a tenant and everything it owns: pods, volumes, networks, images",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			var t admin.TenantInfo
			if err := client().Do(cmd.Context(), "GET", "/v1/tenants/"+name, nil, &t); err != nil {
				return err
			}
			if !force && !confirm(cmd.InOrStdin(), cmd.OutOrStdout(), fmt.Sprintf(
				"Remove tenant %s with its %d pods, its volumes (%s), networks and images? [y/N] ", name, t.Usage.Pods, size(t.Usage.VolumeBytes))) {
				return errdefs.FailedPrecondition("not removed")
			}
			var removed tenancy.Removed
			if err := client().Do(cmd.Context(), "DELETE", "/v1/tenants/"+name, nil, &removed); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed tenant %s: %d pods, %d volumes, %d networks, %d services\n", name,
				removed[model.KindPod], removed[model.KindVolume], removed[model.KindNetwork], removed[model.KindService])
			return nil
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	return c
}

func confirm(in io.Reader, out io.Writer, prompt string) bool {
	fmt.Fprint(out, prompt)
	line, _ := bufio.NewReader(in).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes"
}
