package cli

import (
	"context"
	"fmt"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/spf13/cobra"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/image"
	imagecli "github.com/hearth-cloud/hearth/image/cli"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// builder assembles a launch spec from images: it opens each image,
// prepares its layers once (a layer shared by two containers is one disk),
// and resolves each container's process.
type builder struct {
	svc    *image.Service
	cmd    *cobra.Command
	l      *spec.Launch
	layers map[string]int // diff ID → index in l.Layers
	images []string
}

func newBuilder(g *Globals, cmd *cobra.Command, l *spec.Launch) (*builder, error) {
	svc, err := g.Images()
	if err != nil {
		return nil, err
	}
	return &builder{svc: svc, cmd: cmd, l: l, layers: map[string]int{}}, nil
}

// openImage opens IMAGE: a docker-archive or OCI layout on disk, else a
// reference in the store, pulled (with the docker CLI's output, on
// stderr) when the store has none.
func (b *builder) openImage(ctx context.Context, ref string) (v1.Image, error) {
	if looksLikePath(ref) {
		return image.OpenPath(ref)
	}
	img, _, err := b.svc.Get(image.AdminTenant, ref)
	if err == nil || !errdefs.IsNotFound(err) {
		return img, err
	}
	r, perr := image.ParseRef(ref, b.svc.Insecure)
	if perr != nil {
		return nil, perr
	}
	fmt.Fprintf(b.cmd.ErrOrStderr(), "Unable to find image '%s' locally\n", image.Familiar(image.Canonical(r)))
	if err := imagecli.Pull(ctx, b.cmd.ErrOrStderr(), b.svc, ref); err != nil {
		return nil, err
	}
	img, _, err = b.svc.Get(image.AdminTenant, ref)
	return img, err
}

// looksLikePath tells a file or directory from an image reference: it
// exists, or it is written as a path.
func looksLikePath(ref string) bool {
	if _, err := os.Stat(ref); err == nil {
		return true
	}
	return strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../") || strings.HasSuffix(ref, ".tar")
}

// addContainer appends a container running image ref and returns it, for
// the caller to complete.
func (b *builder) addContainer(ctx context.Context, name, ref string, o image.Overrides, tty, stdin bool) (*spec.Container, error) {
	img, err := b.openImage(ctx, ref)
	if err != nil {
		return nil, err
	}
	if err := image.CheckPlatform(img); err != nil {
		return nil, fmt.Errorf("image %s: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, errdefs.InvalidArgument("image %s: %v", ref, err)
	}
	proc, err := image.ResolveProcess(cf.Config, o)
	if err != nil {
		return nil, err
	}
	proc.Terminal, proc.OpenStdin = tty, stdin
	c := spec.Container{Name: name, Process: proc}
	// Layers go by the config's diff IDs: a cached layer is found without
	// reading (or, for an archive, compressing) anything.
	for _, d := range cf.RootFS.DiffIDs {
		i, ok := b.layers[d.String()]
		if !ok {
			p, cached := b.svc.Layers.Lookup(d)
			if !cached {
				ly, err := img.LayerByDiffID(d)
				if err != nil {
					return nil, errdefs.InvalidArgument("image %s: layer %s: %v", ref, d, err)
				}
				if p, err = b.svc.Layers.Prepare(ctx, ly); err != nil {
					return nil, fmt.Errorf("image %s: %w", ref, err)
				}
			}
			i = len(b.l.Layers)
			b.l.Layers = append(b.l.Layers, spec.Layer{Digest: d.String(), Path: p})
			b.layers[d.String()] = i
		}
		c.Layers = append(c.Layers, i)
	}
	b.l.Containers = append(b.l.Containers, c)
	if b.l.Labels == nil {
		b.l.Labels = map[string]string{}
	}
	if len(b.images) == 0 {
		id, _ := img.ConfigName()
		b.l.Labels["hearth.image"] = ref
		b.l.Labels["hearth.image.id"] = id.String()
	}
	b.images = append(b.images, ref)
	return &b.l.Containers[len(b.l.Containers)-1], nil
}

// finish completes the processes' environments as Docker does: HOSTNAME,
// and TERM for a terminal, unless the image or user set them.
func (b *builder) finish() *spec.Launch {
	host := b.l.Hostname
	if host == "" {
		host = b.l.ID[:12]
	}
	for i := range b.l.Containers {
		c := &b.l.Containers[i]
		h := host
		if c.Hostname != "" {
			h = c.Hostname
		}
		extra := []string{"HOSTNAME=" + h}
		if c.Process.Terminal {
			extra = append(extra, "TERM=xterm")
		}
		c.Process.Env = image.MergeEnv(extra, c.Process.Env)
	}
	return b.l
}
