// Package cli is `hearth cradle`: running and managing pods on this host
// without the control plane. Its flags follow `docker run` and friends,
// and so do its exit codes: 125 when the pod could not be run, 126 when the
// command cannot be invoked, 127 when it is not found, and otherwise the
// container's own code.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"

	"github.com/hearth-cloud/hearth/cradle"
	"github.com/hearth-cloud/hearth/cradle/host"
	"github.com/hearth-cloud/hearth/cradle/launch"
	"github.com/hearth-cloud/hearth/cradle/podlog"
	"github.com/hearth-cloud/hearth/cradle/shim"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/image"
	imagecli "github.com/hearth-cloud/hearth/image/cli"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Globals are the root command's flags.
type Globals struct {
	DataDir  string
	RunDir   string
	LogLevel string
	Log      *slog.Logger
	// Images opens the image service: `run` takes images from its store,
	// pulling them when missing.
	Images func() (*image.Service, error)
}

func (g *Globals) runtime() *cradle.Runtime {
	return &cradle.Runtime{DataDir: g.DataDir, RunDir: g.RunDir, Log: g.Log, LogLevel: g.LogLevel}
}

// ExitError carries an exit code out of a command.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// StatusError is a failure the CLI reports with a code other than 1.
type StatusError struct {
	Code int
	Err  error
}

func (e *StatusError) Error() string { return e.Err.Error() }
func (e *StatusError) Unwrap() error { return e.Err }

// newBuilder is a launch builder for the admin: image files on disk are
// allowed, and pulls show the docker CLI's output on stderr.
func newBuilder(g *Globals, cmd *cobra.Command, l *spec.Launch) (*launch.Builder, error) {
	svc, err := g.Images()
	if err != nil {
		return nil, err
	}
	b := launch.New(svc, image.AdminTenant, l)
	b.AllowPaths = true
	b.Pull = func(ctx context.Context, ref string) error {
		if r, err := image.ParseRef(ref, svc.Insecure); err == nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "Unable to find image '%s' locally\n", image.Familiar(image.Canonical(r)))
		}
		return imagecli.Pull(ctx, cmd.ErrOrStderr(), svc, ref)
	}
	return b, nil
}

// minArgs is cobra.MinimumNArgs with Docker's exit code for usage errors.
func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.MinimumNArgs(n)(cmd, args); err != nil {
			return &StatusError{125, fmt.Errorf("%w\nSee '%s --help'.", err, cmd.CommandPath())}
		}
		return nil
	}
}

// Command returns `hearth cradle`.
func Command(g *Globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "cradle",
		Short: "Run and manage pods on this host, each in its own microVM",
	}
	c.AddCommand(runCmd(g), launchCmd(g), execCmd(g), lsCmd(g), waitCmd(g), stopCmd(g), killCmd(g), logsCmd(g), rmCmd(g), inspectCmd(g), cpCmd(g), statsCmd(g), accelCmd(g), shimCmd(g))
	return c
}

type runFlags struct {
	detach, interactive, tty, readOnly bool
	env, envFiles, volumes, mounts     []string
	tmpfs                              []string
	workdir, user, entrypoint          string
	cpus, memory, hostname, accel      string
	name                               string
	stopTimeout                        int
}

func runCmd(g *Globals) *cobra.Command {
	var f runFlags
	c := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND] [ARG...]",
		Short: "Run a command in a new pod",
		Long: "Run IMAGE (a docker-archive tarball or an OCI image layout directory) in a new microVM.\n" +
			"The command exits with the container's exit code.",
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd, g, &f, args[0], args[1:])
		},
	}
	fl := c.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background and print the pod ID")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "keep stdin open")
	fl.BoolVarP(&f.tty, "tty", "t", false, "allocate a pseudo-TTY")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable (KEY=VALUE, or KEY to take the host's)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read environment variables from a file")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&f.user, "user", "u", "", "user: name|uid[:group|gid]")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint")
	fl.StringVar(&f.cpus, "cpus", "1", "number of virtual CPUs")
	fl.StringVarP(&f.memory, "memory", "m", "512m", "memory of the VM")
	fl.StringVar(&f.hostname, "hostname", "", "hostname of the pod")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind a host directory: HOSTDIR:CTRDIR[:ro]")
	fl.StringArrayVar(&f.mounts, "mount", nil, "attach storage: type=bind|block|tmpfs,source=…,target=…[,readonly][,size=…]")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs: /path[:size=…]")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the container's root filesystem read-only")
	fl.StringVar(&f.accel, "accel", "auto", "accelerator: auto, kvm or tcg")
	fl.StringVar(&f.name, "name", "", "name of the pod")
	fl.IntVar(&f.stopTimeout, "stop-timeout", 10, "seconds to wait for the container to stop before killing it")
	return c
}

// buildLaunch turns `cradle run` arguments into a launch spec.
func buildLaunch(ctx context.Context, g *Globals, f *runFlags, cmd *cobra.Command, ref string, args []string) (*spec.Launch, error) {
	l := &spec.Launch{Version: spec.Version, ID: cradle.NewID(), Name: f.name, Hostname: f.hostname}
	if f.name != "" && !spec.ValidName(f.name) {
		return nil, errdefs.InvalidArgument("invalid pod name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", f.name)
	}
	var err error
	if l.Resources.CPUs, err = ParseCPUs(f.cpus, runtime.NumCPU()); err != nil {
		return nil, err
	}
	if l.Resources.MemoryMiB, err = ParseMemory(f.memory); err != nil {
		return nil, err
	}
	if f.stopTimeout < 0 {
		return nil, errdefs.InvalidArgument("invalid stop timeout %d", f.stopTimeout)
	}
	var env []string
	for _, ef := range f.envFiles {
		e, err := ParseEnvFile(ef, os.LookupEnv)
		if err != nil {
			return nil, err
		}
		env = append(env, e...)
	}
	e, err := ParseEnv(f.env, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	env = append(env, e...)

	var ms []mountSpec
	for _, v := range f.volumes {
		m, err := ParseVolume(v)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	for _, v := range f.mounts {
		m, err := ParseMount(v)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	for _, v := range f.tmpfs {
		m, err := ParseTmpfs(v)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}

	o := image.Overrides{Cmd: args, Env: env, WorkingDir: f.workdir, User: f.user}
	if cmd.Flags().Changed("entrypoint") {
		o.Entrypoint = []string{}
		if f.entrypoint != "" {
			o.Entrypoint = []string{f.entrypoint}
		}
	}
	b, err := newBuilder(g, cmd, l)
	if err != nil {
		return nil, err
	}
	c, err := b.AddContainer(ctx, "main", ref, o, f.tty, f.interactive)
	if err != nil {
		return nil, err
	}
	c.ReadonlyRootfs = f.readOnly
	c.StopTimeout = &f.stopTimeout
	if l.Volumes, c.Mounts, err = volumes(ms); err != nil {
		return nil, err
	}
	return b.Finish(), nil
}

func run(cmd *cobra.Command, g *Globals, f *runFlags, ref string, args []string) error {
	ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	l, err := buildLaunch(ctx, g, f, cmd, ref, args)
	if err != nil {
		return &StatusError{125, err}
	}
	g.Log.Debug("launch spec ready", "pod", l.ID[:12])
	rt := g.runtime()
	if l.Network, err = rt.DefaultNetwork(l.ID); err != nil {
		return &StatusError{125, err}
	}
	pod, shimProc, err := rt.Create(ctx, l, cradle.CreateOptions{Accel: f.accel, Detach: f.detach})
	if err != nil {
		rt.ReleaseNetwork(l.ID)
		return &StatusError{125, err}
	}
	cancel()
	g.Log.Debug("pod created", "pod", l.ID[:12])
	if f.detach {
		fmt.Fprintln(cmd.OutOrStdout(), l.ID)
		return nil
	}
	code, err := attachAndStart(pod, f.interactive, f.tty)
	g.Log.Debug("container exited", "pod", l.ID[:12])
	// The supervisor removes the pod once it has exited; wait for it, so
	// nothing is left when the command returns.
	shimProc.Wait()
	if err != nil {
		return &StatusError{125, err}
	}
	return &ExitError{code}
}

// attachAndStart attaches to the pod's container as its owner, starts the
// pod, and relays stdio and signals until the container exits.
func attachAndStart(pod *cradle.Pod, interactive, tty bool) (int, error) {
	st, err := pod.Client().Attach("", shim.AttachOptions{Stdin: interactive, Owner: true, Start: true})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return Relay(st, interactive, tty)
}

// Relay connects the terminal to a process stream: raw mode and window
// size for a TTY, signals forwarded otherwise. It returns the exit code.
func Relay(st *shim.Stream, interactive, tty bool) (int, error) {
	stdinFd := int(os.Stdin.Fd())
	if tty && term.IsTerminal(stdinFd) {
		old, err := term.MakeRaw(stdinFd)
		if err == nil {
			defer term.Restore(stdinFd, old)
		}
		sendSize := func() {
			if ws, err := unix.IoctlGetWinsize(stdinFd, unix.TIOCGWINSZ); err == nil {
				st.Resize(ws.Row, ws.Col)
			}
		}
		sendSize()
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				sendSize()
			}
		}()
	}
	// Like docker's --sig-proxy: signals to the CLI go to the container.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			st.Signal(s.(syscall.Signal))
		}
	}()
	var in io.Reader
	if interactive {
		in = os.Stdin
	}
	stdout := io.Writer(os.Stdout)
	es, err := st.Relay(in, stdout, os.Stderr)
	if err != nil {
		return 0, err
	}
	if es.Error != "" {
		fmt.Fprintf(os.Stderr, "hearth: %s\n", es.Error)
	}
	return es.Code, nil
}

func execCmd(g *Globals) *cobra.Command {
	var interactive, tty bool
	var env []string
	var user, workdir, container string
	c := &cobra.Command{
		Use:   "exec [flags] POD COMMAND [ARG...]",
		Short: "Run a command in a running pod",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			pod, err := g.runtime().Find(args[0])
			if err != nil {
				return err
			}
			e, err := ParseEnv(env, os.LookupEnv)
			if err != nil {
				return err
			}
			ctr := pod.Launch.Containers[0]
			if container != "" {
				found := false
				for _, c := range pod.Launch.Containers {
					if c.Name == container {
						ctr, found = c, true
					}
				}
				if !found {
					return errdefs.NotFound("no such container in pod %s: %s", args[0], container)
				}
			}
			p := spec.Process{
				Args:      args[1:],
				Env:       image.MergeEnv(ctr.Process.Env, e),
				Cwd:       ctr.Process.Cwd,
				User:      ctr.Process.User,
				Terminal:  tty,
				OpenStdin: interactive,
			}
			if tty {
				p.Env = image.MergeEnv(p.Env, []string{"TERM=xterm"})
			}
			if workdir != "" {
				p.Cwd = workdir
			}
			if user != "" {
				p.User = user
			}
			var size *spec.WindowSize
			if tty {
				if ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ); err == nil {
					size = &spec.WindowSize{Rows: ws.Row, Cols: ws.Col}
				}
			}
			st, err := pod.Client().Exec(ctr.Name, p, size)
			if err != nil {
				return podErr(pod, err)
			}
			defer st.Close()
			code, err := Relay(st, interactive, tty)
			if err != nil {
				return err
			}
			return &ExitError{code}
		},
	}
	fl := c.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&interactive, "interactive", "i", false, "keep stdin open")
	fl.BoolVarP(&tty, "tty", "t", false, "allocate a pseudo-TTY")
	fl.StringArrayVarP(&env, "env", "e", nil, "set an environment variable")
	fl.StringVarP(&user, "user", "u", "", "user: name|uid[:group|gid]")
	fl.StringVarP(&workdir, "workdir", "w", "", "working directory")
	fl.StringVarP(&container, "container", "c", "", "container of the pod (default: the first)")
	return c
}

// podErr explains a failed call to a pod's supervisor.
func podErr(p *cradle.Pod, err error) error {
	if errors.Is(err, shim.ErrGone) {
		return errdefs.Conflict("pod %s is not running", p.Launch.ID[:12])
	}
	var ce *spec.CallError
	if errors.As(err, &ce) && ce.Kind == spec.ErrConflict {
		return errdefs.Conflict("%s", ce.Message)
	}
	return err
}

func lsCmd(g *Globals) *cobra.Command {
	var quiet bool
	c := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"ps", "list"},
		Short:   "List pods",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			pods, err := g.runtime().List()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if quiet {
				for _, p := range pods {
					fmt.Fprintln(out, p.Launch.ID[:12])
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "POD ID\tNAME\tIMAGE\tCOMMAND\tSTATUS\tIP\tACCEL")
			for _, p := range pods {
				ip, _, _ := strings.Cut(p.State.IP, "/")
				command := ""
				if len(p.Launch.Containers) > 0 {
					command = strings.Join(p.Launch.Containers[0].Process.Args, " ")
					if len(command) > 24 {
						command = command[:21] + "..."
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%q\t%s\t%s\t%s\n", p.Launch.ID[:12], p.Launch.Name, p.Launch.Labels["hearth.image"], command, describe(p.State), ip, p.State.Accel)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print pod IDs")
	return c
}

// describe renders a pod's status as `docker ps` does.
func describe(s spec.PodState) string {
	switch s.Status {
	case spec.StatusRunning:
		return "Up " + humanDuration(time.Since(s.StartedAt))
	case spec.StatusExited:
		code := 0
		if len(s.Containers) > 0 && s.Containers[0].Exit != nil {
			code = s.Containers[0].Exit.Code
		}
		return fmt.Sprintf("Exited (%d) %s ago", code, humanDuration(time.Since(s.FinishedAt)))
	case spec.StatusDead:
		return "Dead"
	}
	return "Created"
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return "Less than a second"
	case d < time.Minute:
		return fmt.Sprintf("%d seconds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

func stopCmd(g *Globals) *cobra.Command {
	var timeout int
	c := &cobra.Command{
		Use:   "stop [-t SECONDS] POD...",
		Short: "Stop pods: the stop signal, then SIGKILL after the timeout",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 {
				return errdefs.InvalidArgument("invalid timeout %d", timeout)
			}
			return eachPod(g, cmd, args, func(p *cradle.Pod) error {
				return g.runtime().Stop(p, time.Duration(timeout)*time.Second)
			})
		},
	}
	c.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before killing")
	return c
}

func killCmd(g *Globals) *cobra.Command {
	var sig, container string
	c := &cobra.Command{
		Use:   "kill [-s SIGNAL] POD...",
		Short: "Send a signal to a pod's container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := ParseSignal(sig)
			if err != nil {
				return err
			}
			return eachPod(g, cmd, args, func(p *cradle.Pod) error {
				if err := p.Client().Signal(container, s); err != nil {
					return podErr(p, err)
				}
				return nil
			})
		},
	}
	c.Flags().StringVarP(&sig, "signal", "s", "KILL", "signal to send")
	c.Flags().StringVarP(&container, "container", "c", "", "container of the pod (default: the first)")
	return c
}

// ParseSignal accepts KILL, SIGKILL, kill or 9.
func ParseSignal(s string) (syscall.Signal, error) {
	if v, err := strconv.Atoi(s); err == nil {
		if v <= 0 || v > 64 {
			return 0, errdefs.InvalidArgument("invalid signal: %s", s)
		}
		return syscall.Signal(v), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if v := unix.SignalNum(name); v != 0 {
		return v, nil
	}
	return 0, errdefs.InvalidArgument("invalid signal: %s", s)
}

func logsCmd(g *Globals) *cobra.Command {
	var follow bool
	var container string
	c := &cobra.Command{
		Use:   "logs [-f] POD",
		Short: "Print a pod's container output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := g.runtime().Find(args[0])
			if err != nil {
				return err
			}
			name := p.Launch.Containers[0].Name
			if container != "" {
				name = container
			}
			st, err := p.Client().Logs(name, follow)
			if errors.Is(err, shim.ErrGone) {
				// The pod has exited: its log is all there is.
				return podlog.Copy(p.Paths.LaunchLog(&p.Launch, name), cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			if err != nil {
				return podErr(p, err)
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

func rmCmd(g *Globals) *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "rm [-f] POD...",
		Short: "Remove pods",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt := g.runtime()
			return eachPod(g, cmd, args, func(p *cradle.Pod) error {
				if err := rt.Remove(p, force); err != nil {
					return err
				}
				rt.ReleaseNetwork(p.Launch.ID)
				return nil
			})
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "stop a running pod first")
	return c
}

func inspectCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect POD",
		Short: "Print a pod's launch spec and state as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := g.runtime().Find(args[0])
			if err != nil {
				return err
			}
			if st, err := p.Client().State(); err == nil {
				p.State = *st
			}
			return writeJSON(cmd.OutOrStdout(), map[string]any{"launch": p.Launch, "state": p.State})
		},
	}
}

// eachPod runs fn for every named pod, printing each name as Docker does,
// and fails if any failed.
func eachPod(g *Globals, cmd *cobra.Command, refs []string, fn func(*cradle.Pod) error) error {
	var failed error
	for _, ref := range refs {
		p, err := g.runtime().Find(ref)
		if err == nil {
			err = fn(p)
		}
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "hearth: %v\n", err)
			failed = &StatusError{1, errors.New("")}
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), ref)
	}
	return failed
}

func accelCmd(g *Globals) *cobra.Command {
	var want string
	c := &cobra.Command{
		Use:   "accel",
		Short: "Print the accelerator pods use on this host (kvm or tcg)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := host.FindAssets()
			if err != nil {
				return err
			}
			accel, err := host.ResolveAccel(cmd.Context(), want, a, filepath.Join(g.DataDir, "cradle"))
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), accel)
			return nil
		},
	}
	c.Flags().StringVar(&want, "accel", "auto", "accelerator to check: auto, kvm or tcg")
	return c
}

func shimCmd(g *Globals) *cobra.Command {
	var o struct {
		id, accel, kernel, initrd, qemu string
		autostart, autoremove           bool
	}
	c := &cobra.Command{
		Use:    "shim",
		Short:  "Supervise one pod (started by `cradle run`; not to be called directly)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer cancel()
			// The starter's terminal, if any, is not ours.
			signal.Ignore(syscall.SIGHUP, syscall.SIGPIPE)
			opts := shim.Options{
				Paths:      shim.NewPaths(g.DataDir, g.RunDir, o.id),
				Assets:     host.Assets{Kernel: o.kernel, Initrd: o.initrd, QEMU: o.qemu},
				Accel:      o.accel,
				AutoStart:  o.autostart,
				AutoRemove: o.autoremove,
				Ready:      os.NewFile(3, "ready"),
				Log:        g.Log,
			}
			return shim.Run(ctx, opts)
		},
	}
	fl := c.Flags()
	fl.StringVar(&o.id, "id", "", "pod ID")
	fl.StringVar(&o.accel, "accel", "tcg", "accelerator")
	fl.StringVar(&o.kernel, "kernel", "", "guest kernel")
	fl.StringVar(&o.initrd, "initrd", "", "guest initramfs")
	fl.StringVar(&o.qemu, "qemu", "", "QEMU binary")
	fl.BoolVar(&o.autostart, "autostart", false, "start the containers at once")
	fl.BoolVar(&o.autoremove, "autoremove", false, "remove the pod once it has exited")
	return c
}
