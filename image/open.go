// Package image reads OCI and Docker images, checks they can run here, and
// turns an image's config into the process a container runs.
//
// Reading formats is go-containerregistry's job; this package adds what is
// Hearth's own: choosing the platform, Docker's rules for combining an
// image's config with a user's overrides, and (in layers.go) preparing
// layers as the read-only filesystems cradle attaches to VMs.
package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Platform is the only one Hearth runs.
var Platform = v1.Platform{OS: "linux", Architecture: "amd64"}

// OpenPath opens an image from a docker-archive tarball (`docker save`) or
// an OCI image layout directory. A layout with several images, or an
// index, yields the linux/amd64 one.
func OpenPath(path string) (v1.Image, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.NotFound("image %s: no such file or directory", path)
		}
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	var img v1.Image
	if fi.IsDir() {
		img, err = openLayout(path)
	} else {
		img, err = openDockerArchive(path)
	}
	if err != nil {
		return nil, err
	}
	if err := CheckPlatform(img); err != nil {
		return nil, fmt.Errorf("image %s: %w", path, err)
	}
	return img, nil
}

func openDockerArchive(path string) (v1.Image, error) {
	if err := checkTar(path); err != nil {
		return nil, errdefs.InvalidArgument("image %s: not a docker-archive tarball: %v", path, err)
	}
	img, err := tarball.ImageFromPath(path, nil)
	if err != nil {
		return nil, errdefs.InvalidArgument("image %s: invalid docker-archive: %v", path, err)
	}
	// Reading the config and manifest now turns a corrupt archive into an
	// error here rather than half way through a start.
	if _, err := img.ConfigFile(); err != nil {
		return nil, errdefs.InvalidArgument("image %s: invalid docker-archive: %v", path, err)
	}
	if _, err := img.Manifest(); err != nil {
		return nil, errdefs.InvalidArgument("image %s: invalid docker-archive: %v", path, err)
	}
	return img, nil
}

// checkTar reads the archive's headers through to the end, which catches
// truncated and corrupt files before anything is unpacked.
func checkTar(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	n := 0
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("empty archive")
	}
	return nil
}

func openLayout(dir string) (v1.Image, error) {
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return nil, errdefs.InvalidArgument("image %s: not an OCI image layout (no oci-layout file)", dir)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, errdefs.InvalidArgument("image %s: %v", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, errdefs.InvalidArgument("image %s: %v", dir, err)
	}
	img, err := FromIndex(idx)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", dir, err)
	}
	return img, nil
}

// FromIndex picks the image for Platform out of an index, following
// nested indexes. An index with a single image of unknown platform yields
// that image; CheckPlatform then judges its config.
func FromIndex(idx v1.ImageIndex) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, errdefs.InvalidArgument("read index: %v", err)
	}
	candidates, seen := platformCandidates(m.Manifests)
	for _, d := range candidates {
		if d.MediaType.IsIndex() {
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, errdefs.InvalidArgument("read index %s: %v", d.Digest, err)
			}
			return FromIndex(child)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, errdefs.InvalidArgument("read image %s: %v", d.Digest, err)
		}
		return img, nil
	}
	if len(seen) > 0 {
		return nil, errdefs.FailedPrecondition("no linux/amd64 image in index (it has %v)", seen)
	}
	return nil, errdefs.NotFound("index holds no image")
}

// platformCandidates orders an index's entries for Platform: those that
// declare it first, then those that declare no platform; entries for other
// platforms are left out. seen lists every platform declared.
func platformCandidates(ds []v1.Descriptor) (candidates []v1.Descriptor, seen []string) {
	var unlabelled []v1.Descriptor
	for _, d := range ds {
		if d.Platform == nil {
			unlabelled = append(unlabelled, d)
			continue
		}
		seen = append(seen, d.Platform.OS+"/"+d.Platform.Architecture)
		if d.Platform.OS == Platform.OS && d.Platform.Architecture == Platform.Architecture {
			candidates = append(candidates, d)
		}
	}
	return append(candidates, unlabelled...), seen
}

// CheckPlatform refuses images built for another OS or architecture.
func CheckPlatform(img v1.Image) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return errdefs.InvalidArgument("read image config: %v", err)
	}
	if (cf.OS != "" && cf.OS != Platform.OS) || (cf.Architecture != "" && cf.Architecture != Platform.Architecture) {
		return errdefs.FailedPrecondition("image is for %s/%s; this host runs %s/%s", cf.OS, cf.Architecture, Platform.OS, Platform.Architecture)
	}
	return nil
}
