// Package launch assembles cradle launch specs from images: it opens each
// image (from the image store, pulling what is missing, or, for the admin,
// from a file on disk), prepares its layers once (a layer shared by two
// containers is one disk), and resolves each container's process by
// Docker's rules. `hearth cradle` and the node agent both build pods with
// it.
package launch

import (
	"context"
	"fmt"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Builder assembles one launch spec.
type Builder struct {
	Images *image.Service
	// Tenant's images are the ones names resolve to.
	Tenant string
	// AllowPaths lets IMAGE be a docker-archive or OCI layout on disk,
	// which only the admin may read.
	AllowPaths bool
	// Pull fetches a reference the store lacks; nil pulls silently.
	Pull func(ctx context.Context, ref string) error

	l      *spec.Launch
	layers map[string]int // diff ID → index in l.Layers
	images []string
}

// New starts building onto l.
func New(svc *image.Service, tenant string, l *spec.Launch) *Builder {
	return &Builder{Images: svc, Tenant: tenant, l: l, layers: map[string]int{}}
}

// openImage opens IMAGE: a file or directory on disk when allowed, else a
// reference in the tenant's store, pulled when missing.
func (b *Builder) openImage(ctx context.Context, ref string) (v1.Image, error) {
	if b.AllowPaths && LooksLikePath(ref) {
		return image.OpenPath(ref)
	}
	img, _, err := b.Images.Get(b.Tenant, ref)
	if err == nil || !errdefs.IsNotFound(err) {
		return img, err
	}
	if _, perr := image.ParseRef(ref, b.Images.Insecure); perr != nil {
		return nil, perr
	}
	if b.Pull != nil {
		err = b.Pull(ctx, ref)
	} else {
		_, err = b.Images.Pull(ctx, b.Tenant, ref, nil)
	}
	if err != nil {
		return nil, err
	}
	img, _, err = b.Images.Get(b.Tenant, ref)
	return img, err
}

// LooksLikePath tells a file or directory from an image reference: it
// exists, or it is written as a path.
func LooksLikePath(ref string) bool {
	if _, err := os.Stat(ref); err == nil {
		return true
	}
	return strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "./") || strings.HasPrefix(ref, "../") || strings.HasSuffix(ref, ".tar")
}

// AddContainer appends a container running image ref and returns it, for
// the caller to complete.
func (b *Builder) AddContainer(ctx context.Context, name, ref string, o image.Overrides, tty, stdin bool) (*spec.Container, error) {
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
			p, cached := b.Images.Layers.Lookup(d)
			if !cached {
				ly, err := img.LayerByDiffID(d)
				if err != nil {
					return nil, errdefs.InvalidArgument("image %s: layer %s: %v", ref, d, err)
				}
				if p, err = b.Images.Layers.Prepare(ctx, ly); err != nil {
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

// Finish completes the processes' environments as Docker does: HOSTNAME,
// and TERM for a terminal, unless the image or user set them.
func (b *Builder) Finish() *spec.Launch {
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
