// Package cli is `hearth image`: pulling, loading, saving, listing,
// tagging, removing and pushing images in the store, with the docker
// CLI's output.
package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Globals is what `hearth image` needs from the root command.
type Globals struct {
	// Images opens the image service of the data dir.
	Images func() (*image.Service, error)
}

// Command returns `hearth image`.
func Command(g *Globals) *cobra.Command {
	c := &cobra.Command{Use: "image", Short: "Manage images: pull, load, save, list, tag, remove, push"}
	c.AddCommand(pullCmd(g), loadCmd(g), saveCmd(g), lsCmd(g), inspectCmd(g), tagCmd(g), rmCmd(g), pushCmd(g), pruneCmd(g), loginCmd(g), logoutCmd(g))
	return c
}

const tenant = image.AdminTenant

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// Pull pulls ref with the docker CLI's output, for `image pull` and for
// `cradle run` of an image not in the store.
func Pull(ctx context.Context, out io.Writer, svc *image.Service, ref string) error {
	r, err := image.ParseRef(ref, svc.Insecure)
	if err != nil {
		return err
	}
	canon := image.Canonical(r)
	before, _ := svc.Lookup(tenant, ref)
	if !strings.Contains(ref, ":") && !strings.Contains(ref, "@") {
		fmt.Fprintln(out, "Using default tag: latest")
	}
	repo, tag := image.SplitName(canon)
	fmt.Fprintf(out, "%s: Pulling from %s\n", tag, strings.TrimPrefix(strings.TrimPrefix(repo, "docker.io/"), r.Context().RegistryStr()+"/"))
	p := newProgress(out, isTerminal(os.Stdout))
	rec, err := svc.Pull(ctx, tenant, ref, p.update)
	if err != nil {
		return err
	}
	if before != nil && before.Manifest == rec.Manifest {
		fmt.Fprintf(out, "Status: Image is up to date for %s\n", image.Familiar(canon))
	} else {
		fmt.Fprintf(out, "Status: Downloaded newer image for %s\n", image.Familiar(canon))
	}
	fmt.Fprintln(out, canon)
	return nil
}

func pullCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "pull NAME[:TAG|@DIGEST]",
		Short: "Pull an image from a registry",
		Args:  cobra.ExactArgs(1),
		RunE: withImages(g, func(cmd *cobra.Command, svc *image.Service, args []string) error {
			return Pull(cmd.Context(), cmd.OutOrStdout(), svc, args[0])
		}),
	}
}

func loadCmd(g *Globals) *cobra.Command {
	var input string
	var quiet bool
	c := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from a docker-archive or OCI-archive tarball (or stdin)",
		Args:  cobra.NoArgs,
		RunE: withImages(g, func(cmd *cobra.Command, svc *image.Service, args []string) error {
			file := input
			if file == "" || file == "-" {
				if isTerminal(os.Stdin) {
					return errdefs.InvalidArgument("requested load from stdin, but stdin is empty")
				}
				f, err := os.CreateTemp("", "hearth-load-*.tar")
				if err != nil {
					return err
				}
				defer os.Remove(f.Name())
				_, err = io.Copy(f, os.Stdin)
				f.Close()
				if err != nil {
					return fmt.Errorf("read stdin: %w", err)
				}
				file = f.Name()
			}
			var p func(image.Progress)
			if !quiet {
				p = newProgress(cmd.OutOrStdout(), isTerminal(os.Stdout)).update
			}
			lines, err := svc.Load(cmd.Context(), tenant, file, p)
			if err != nil {
				return err
			}
			for _, l := range lines {
				fmt.Fprintln(cmd.OutOrStdout(), l)
			}
			return nil
		}),
	}
	c.Flags().StringVarP(&input, "input", "i", "", "read from a tar archive file instead of stdin")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "suppress the load progress")
	return c
}

func saveCmd(g *Globals) *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "save [-o FILE] IMAGE...",
		Short: "Save images to a docker-archive tarball (docker load reads it)",
		Args:  cobra.MinimumNArgs(1),
		RunE: withImages(g, func(cmd *cobra.Command, svc *image.Service, args []string) error {
			if output == "" {
				if isTerminal(os.Stdout) {
					return errdefs.InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
				}
				return svc.Save(cmd.Context(), tenant, args, os.Stdout)
			}
			// Write beside the target and rename: a failed save leaves no
			// half archive under the name.
			tmp, err := os.CreateTemp(dirOf(output), ".hearth-save-*")
			if err != nil {
				return fmt.Errorf("save: %w", err)
			}
			defer os.Remove(tmp.Name())
			w := bufio.NewWriterSize(tmp, 1<<20)
			if err := svc.Save(cmd.Context(), tenant, args, w); err != nil {
				tmp.Close()
				return err
			}
			if err := w.Flush(); err != nil {
				tmp.Close()
				return fmt.Errorf("save: %w", err)
			}
			if err := tmp.Close(); err != nil {
				return fmt.Errorf("save: %w", err)
			}
			os.Chmod(tmp.Name(), 0o644)
			return os.Rename(tmp.Name(), output)
		}),
	}
	c.Flags().StringVarP(&output, "output", "o", "", "write to a file instead of stdout")
	return c
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		if i == 0 {
			return "/"
		}
		return p[:i]
	}
	return "."
}

func lsCmd(g *Globals) *cobra.Command {
	var quiet, digests bool
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list", "images"},
		Short:   "List images",
		Args:    cobra.NoArgs,
		RunE: withImages(g, func(cmd *cobra.Command, svc *image.Service, args []string) error {
			list, err := svc.List(tenant)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if quiet {
				seen := map[string]bool{}
				for _, s := range list {
					if !seen[s.ID.Hex] {
						seen[s.ID.Hex] = true
						fmt.Fprintln(out, image.ShortID(s.ID))
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
			if digests {
				fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tIMAGE ID\tCREATED\tSIZE")
			} else {
				fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
			}
			for _, s := range list {
				repo, tag := "<none>", "<none>"
				if s.Name != "" {
					repo, tag = image.SplitName(image.Familiar(s.Name))
					if strings.HasPrefix(tag, "sha256:") {
						tag = "<none>"
					}
				}
				created := "N/A"
				if !s.Created.IsZero() {
					created = units.HumanDuration(time.Since(s.Created)) + " ago"
				}
				if digests {
					d := "<none>"
					if s.RepoDigest != "" {
						_, d = image.SplitName(s.RepoDigest)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", repo, tag, d, image.ShortID(s.ID), created, units.HumanSize(float64(s.Size)))
				} else {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", repo, tag, image.ShortID(s.ID), created, units.HumanSize(float64(s.Size)))
				}
			}
			return tw.Flush()
		}),
	}
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	c.Flags().BoolVar(&digests, "digests", false, "show digests")
	return c
}

func inspectCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect IMAGE...",
		Short: "Show images' details as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: withImages(g, func(cmd *cobra.Command, svc *image.Service, args []string) error {
			var infos []*image.Info
			var failed error
			for _, a := range args {
				info, err := svc.Inspect(tenant, a)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "hearth: %v\n", err)
					failed = silent
					continue
				}
				infos = append(infos, info)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "    ")
			if infos == nil {
				infos = []*image.Info{}
			}
			if err := enc.Encode(infos); err != nil {
				return err
			}
			return failed
		}),
	}
}

func tagCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE TARGET",
		Short: "Give an image another name",
		Args:  cobra.ExactArgs(2),
		RunE: withImages(g, func(cmd *cobra.Command, svc *image.Service, args []string) error {
			return svc.Tag(tenant, args[0], args[1])
		}),
	}
}

func rmCmd(g *Globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:     "rm [-f] IMAGE...",
		Aliases: []string{"remove", "rmi"},
		Short:   "Remove images",
		Args:    cobra.MinimumNArgs(1),
		RunE: withImages(g, func(cmd *cobra.Command, svc *image.Service, args []string) error {
			var failed error
			for _, a := range args {
				events, err := svc.Remove(tenant, a, force)
				for _, e := range events {
					fmt.Fprintln(cmd.OutOrStdout(), e)
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "hearth: %v\n", err)
					failed = silent
				}
			}
			return failed
		}),
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "remove even an image a pod uses")
	return c
}

func pushCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "push NAME[:TAG]",
		Short: "Push an image to a registry",
		Args:  cobra.ExactArgs(1),
		RunE: withImages(g, func(cmd *cobra.Command, svc *image.Service, args []string) error {
			r, err := image.ParseRef(args[0], svc.Insecure)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			repo, tag := image.SplitName(image.Canonical(r))
			fmt.Fprintf(out, "The push refers to repository [%s]\n", strings.TrimPrefix(repo, "docker.io/"))
			p := newProgress(out, isTerminal(os.Stdout))
			d, err := svc.Push(cmd.Context(), tenant, args[0], func(e image.Progress) {
				// The overall byte count is for a terminal only.
				if e.ID != "" || p.tty {
					if e.ID == "" {
						e.ID = "total"
					}
					p.update(e)
				}
			})
			if err != nil {
				return err
			}
			m, _ := svc.Store.ReadBlob(d)
			fmt.Fprintf(out, "%s: digest: %s size: %d\n", tag, d, len(m))
			return nil
		}),
	}
}

func pruneCmd(g *Globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "prune [-f]",
		Short: "Remove untagged images, unreferenced blobs and unused prepared layers",
		Args:  cobra.NoArgs,
		RunE: withImages(g, func(cmd *cobra.Command, svc *image.Service, args []string) error {
			if !force {
				fmt.Fprint(cmd.OutOrStdout(), "WARNING! This will remove all dangling images.\nAre you sure you want to continue? [y/N] ")
				ans, _ := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(ans)); a != "y" && a != "yes" {
					return nil
				}
			}
			rep, err := svc.Prune(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(rep.Deleted) > 0 {
				fmt.Fprintln(out, "Deleted Images:")
				for _, d := range rep.Deleted {
					fmt.Fprintln(out, d)
				}
				fmt.Fprintln(out)
			}
			fmt.Fprintf(out, "Total reclaimed space: %s\n", units.HumanSize(float64(rep.SpaceReclaimed)))
			return nil
		}),
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "do not prompt for confirmation")
	return c
}

func loginCmd(g *Globals) *cobra.Command {
	var user, password string
	var stdin bool
	c := &cobra.Command{
		Use:   "login [-u USER] [-p PASSWORD | --password-stdin] [SERVER]",
		Short: "Store registry credentials, after checking them with the registry",
		Args:  cobra.MaximumNArgs(1),
		RunE: withImages(g, func(cmd *cobra.Command, svc *image.Service, args []string) error {
			server := ""
			if len(args) == 1 {
				server = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(args[0], "https://"), "http://"), "/")
			}
			if stdin {
				if password != "" {
					return errdefs.InvalidArgument("--password and --password-stdin are mutually exclusive")
				}
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<16))
				if err != nil {
					return err
				}
				password = strings.TrimRight(string(b), "\r\n")
			}
			if user == "" || password == "" {
				return errdefs.InvalidArgument("username and password are required (-u, and -p or --password-stdin)")
			}
			if err := svc.Login(cmd.Context(), tenant, server, user, password); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "Login Succeeded")
			return nil
		}),
	}
	c.Flags().StringVarP(&user, "username", "u", "", "username")
	c.Flags().StringVarP(&password, "password", "p", "", "password")
	c.Flags().BoolVar(&stdin, "password-stdin", false, "take the password from stdin")
	return c
}

func logoutCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logout [SERVER]",
		Short: "Forget a registry's credentials",
		Args:  cobra.MaximumNArgs(1),
		RunE: withImages(g, func(cmd *cobra.Command, svc *image.Service, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			if err := svc.Logout(tenant, server); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removing login credentials for %s\n", firstNonEmpty(server, "docker.io"))
			return nil
		}),
	}
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// silent fails a command whose errors were printed already.
var silent = &quietError{}

type quietError struct{}

func (*quietError) Error() string { return "" }

// withImages opens the image service for a command.
func withImages(g *Globals, fn func(*cobra.Command, *image.Service, []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		svc, err := g.Images()
		if err != nil {
			return err
		}
		return fn(cmd, svc, args)
	}
}
