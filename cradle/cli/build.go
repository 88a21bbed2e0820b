package cli

import (
	"context"
	"fmt"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/image/layer"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// builder assembles a launch spec from images: it opens each image,
// prepares its layers once (a layer shared by two containers is one disk),
// and resolves each container's process.
type builder struct {
	cache  *layer.Cache
	l      *spec.Launch
	layers map[string]int // diff ID → index in l.Layers
	images []string
}

func newBuilder(g *Globals, l *spec.Launch) *builder {
	return &builder{cache: &layer.Cache{Dir: g.DataDir + "/layers"}, l: l, layers: map[string]int{}}
}

// addContainer appends a container running image ref and returns it, for
// the caller to complete.
func (b *builder) addContainer(ctx context.Context, name, ref string, o image.Overrides, tty, stdin bool) (*spec.Container, error) {
	img, err := image.OpenPath(ref)
	if err != nil {
		return nil, err
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
			p, cached := b.cache.Lookup(d)
			if !cached {
				ly, err := img.LayerByDiffID(d)
				if err != nil {
					return nil, errdefs.InvalidArgument("image %s: layer %s: %v", ref, d, err)
				}
				if p, err = b.cache.Prepare(ctx, ly); err != nil {
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
