// Command hearth is the one Hearth binary: the node daemon and every CLI
// subcommand. It only wires packages together.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/hearth-cloud/hearth/api/admin"
	cradlecli "github.com/hearth-cloud/hearth/cradle/cli"
	imagecli "github.com/hearth-cloud/hearth/image/cli"
	macrocli "github.com/hearth-cloud/hearth/macro/cli"
	tenantcli "github.com/hearth-cloud/hearth/tenancy/cli"
)

func main() {
	os.Exit(Main(os.Args[1:]))
}

// Main runs the CLI and returns the process's exit code.
func Main(args []string) int {
	g := &cradlecli.Globals{}
	var logFormat string
	root := &cobra.Command{
		Use:           "hearth",
		Short:         "Hearth: a self-hostable cloud where every pod is its own microVM",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(g.LogLevel)); err != nil {
				return fmt.Errorf("invalid --log-level %q", g.LogLevel)
			}
			opts := &slog.HandlerOptions{Level: lvl}
			switch logFormat {
			case "text":
				g.Log = slog.New(slog.NewTextHandler(os.Stderr, opts))
			case "json":
				g.Log = slog.New(slog.NewJSONHandler(os.Stderr, opts))
			default:
				return fmt.Errorf("invalid --log-format %q: want text or json", logFormat)
			}
			slog.SetDefault(g.Log)
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.DataDir, "data-dir", "/var/lib/hearth", "persistent state")
	pf.StringVar(&g.RunDir, "run-dir", "/run/hearth", "sockets")
	pf.StringVar(&g.LogLevel, "log-level", "info", "debug, info, warn or error")
	pf.StringVar(&logFormat, "log-format", "text", "text or json")
	sys := &System{Globals: g}
	g.Images = sys.Images
	root.AddCommand(cradlecli.Command(g), imagecli.Command(&imagecli.Globals{Images: sys.Images}))
	mg := &macrocli.Globals{Log: func() *slog.Logger { return g.Log }}
	root.AddCommand(macrocli.Commands(mg)...)
	root.AddCommand(tenantcli.Command(func() *admin.Client { return admin.NewClient(filepath.Join(g.RunDir, "hearth.sock")) }))
	cobra.OnInitialize(func() { mg.DataDir, mg.RunDir, mg.LogLevel = g.DataDir, g.RunDir, g.LogLevel })
	root.SetArgs(args)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return &cradlecli.StatusError{Code: 125, Err: fmt.Errorf("%w\nSee '%s --help'.", err, c.CommandPath())}
	})

	err := root.Execute()
	var exit *cradlecli.ExitError
	if errors.As(err, &exit) {
		return exit.Code
	}
	if err == nil {
		return 0
	}
	code := 1
	var st *cradlecli.StatusError
	if errors.As(err, &st) {
		code = st.Code
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(os.Stderr, "hearth: %s\n", msg)
	}
	return code
}
