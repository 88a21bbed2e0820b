package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/hearth-cloud/hearth/cradle"
	"github.com/hearth-cloud/hearth/cradle/shim"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// PodFile describes a pod of several containers for `cradle launch`, in the
// manner of a Kubernetes Pod: command replaces an image's entrypoint, args
// its cmd.
type PodFile struct {
	Name       string          `json:"name,omitempty"`
	Hostname   string          `json:"hostname,omitempty"`
	CPUs       string          `json:"cpus,omitempty"`
	Memory     string          `json:"memory,omitempty"`
	Volumes    []PodFileVolume `json:"volumes,omitempty"`
	Containers []PodFileCtr    `json:"containers"`
}

// PodFileVolume is storage shared by the pod's containers.
type PodFileVolume struct {
	Name     string `json:"name"`
	Type     string `json:"type"` // dir, block or tmpfs
	Source   string `json:"source,omitempty"`
	Size     string `json:"size,omitempty"`
	ReadOnly bool   `json:"readOnly,omitempty"`
}

// PodFileCtr is one container.
type PodFileCtr struct {
	Name       string       `json:"name"`
	Image      string       `json:"image"`
	Command    []string     `json:"command,omitempty"`
	Args       []string     `json:"args,omitempty"`
	Env        []string     `json:"env,omitempty"`
	WorkingDir string       `json:"workingDir,omitempty"`
	User       string       `json:"user,omitempty"`
	Hostname   string       `json:"hostname,omitempty"`
	Mounts     []spec.Mount `json:"mounts,omitempty"`
}

func launchCmd(g *Globals) *cobra.Command {
	var detach bool
	var accel string
	c := &cobra.Command{
		Use:   "launch [-d] POD.json",
		Short: "Run a pod of several containers described in a file",
		Long: "Run the pod a JSON file describes (name, hostname, cpus, memory, volumes and\n" +
			"containers with image, command, args, env, workingDir, user and mounts).\n" +
			"In the foreground it streams the first container's output and exits with\n" +
			"its code once every container has exited.",
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			l, err := buildFromFile(ctx, g, cmd, args[0])
			if err != nil {
				return &StatusError{125, err}
			}
			rt := g.runtime()
			if l.Network, err = rt.DefaultNetwork(l.ID); err != nil {
				return &StatusError{125, err}
			}
			pod, shimProc, err := rt.Create(ctx, l, cradle.CreateOptions{Accel: accel, Detach: detach})
			if err != nil {
				rt.ReleaseNetwork(l.ID)
				return &StatusError{125, err}
			}
			cancel()
			if detach {
				fmt.Fprintln(cmd.OutOrStdout(), l.ID)
				return nil
			}
			st, err := pod.Client().Attach("", shim.AttachOptions{Owner: true, Start: true})
			if err != nil {
				return &StatusError{125, err}
			}
			code, err := Relay(st, false, false)
			st.Close()
			if err == nil {
				// The first container is done; the pod ends with the last.
				_, err = pod.Client().Wait()
				if errors.Is(err, shim.ErrGone) {
					err = nil
				}
			}
			shimProc.Wait()
			if err != nil {
				return &StatusError{125, err}
			}
			return &ExitError{code}
		},
	}
	c.Flags().BoolVarP(&detach, "detach", "d", false, "run in the background and print the pod ID")
	c.Flags().StringVar(&accel, "accel", "auto", "accelerator: auto, kvm or tcg")
	return c
}

// buildFromFile reads a pod file into a launch spec.
func buildFromFile(ctx context.Context, g *Globals, cmd *cobra.Command, path string) (*spec.Launch, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, errdefs.InvalidArgument("read pod file: %v", err)
	}
	var pf PodFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pf); err != nil {
		return nil, errdefs.InvalidArgument("pod file %s: %v", path, err)
	}
	if len(pf.Containers) == 0 {
		return nil, errdefs.InvalidArgument("pod file %s: no containers", path)
	}
	l := &spec.Launch{Version: spec.Version, ID: cradle.NewID(), Name: pf.Name, Hostname: pf.Hostname}
	if pf.Name != "" && !spec.ValidName(pf.Name) {
		return nil, errdefs.InvalidArgument("invalid pod name %q: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", pf.Name)
	}
	cpus, mem := pf.CPUs, pf.Memory
	if cpus == "" {
		cpus = "1"
	}
	if mem == "" {
		mem = "512m"
	}
	if l.Resources.CPUs, err = ParseCPUs(cpus, runtime.NumCPU()); err != nil {
		return nil, err
	}
	if l.Resources.MemoryMiB, err = ParseMemory(mem); err != nil {
		return nil, err
	}
	for _, v := range pf.Volumes {
		vol := spec.Volume{Name: v.Name, Type: spec.VolumeType(v.Type), Source: v.Source, ReadOnly: v.ReadOnly}
		if v.Size != "" {
			if vol.SizeBytes, err = ParseSize(v.Size); err != nil {
				return nil, err
			}
		}
		l.Volumes = append(l.Volumes, vol)
	}
	bld, err := newBuilder(g, cmd, l)
	if err != nil {
		return nil, err
	}
	for _, pc := range pf.Containers {
		env, err := ParseEnv(pc.Env, os.LookupEnv)
		if err != nil {
			return nil, err
		}
		o := image.Overrides{Entrypoint: pc.Command, Cmd: pc.Args, Env: env, WorkingDir: pc.WorkingDir, User: pc.User}
		c, err := bld.AddContainer(ctx, pc.Name, pc.Image, o, false, false)
		if err != nil {
			return nil, err
		}
		c.Hostname = pc.Hostname
		c.Mounts = pc.Mounts
	}
	l = bld.Finish()
	if err := l.Validate(); err != nil {
		return nil, errdefs.InvalidArgument("pod file %s: %v", path, err)
	}
	return l, nil
}

func waitCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "wait POD",
		Short: "Wait for a pod to exit and print each container's exit code",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := g.runtime().Find(args[0])
			if err != nil {
				return err
			}
			st, err := p.Client().Wait()
			if errors.Is(err, shim.ErrGone) {
				st, err = &p.State, nil
			}
			if err != nil {
				return err
			}
			for _, c := range st.Containers {
				code := -1
				if c.Exit != nil {
					code = c.Exit.Code
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %d\n", c.Name, code)
			}
			return nil
		},
	}
}
