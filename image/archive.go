package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hearth-cloud/hearth/image/store"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// maxMetadata bounds a manifest, index or config read from an archive.
const maxMetadata = 16 << 20

// Load reads a docker-archive (`docker save`) or OCI-archive tarball, with
// one image or several, into the store for tenant. It returns Docker's
// "Loaded image: …" lines.
func (s *Service) Load(ctx context.Context, tenant, file string, progress func(Progress)) ([]string, error) {
	unlock, err := s.Store.Writing()
	if err != nil {
		return nil, err
	}
	defer unlock()
	meta, err := scanArchive(file)
	if err != nil {
		return nil, err
	}
	switch {
	case meta.dockerManifest != nil:
		return s.loadDocker(ctx, tenant, file, meta, progress)
	case meta.ociIndex != nil:
		return s.loadOCI(ctx, tenant, file, meta)
	}
	return nil, errdefs.InvalidArgument("invalid archive: neither a docker-archive (no manifest.json) nor an OCI archive (no index.json)")
}

type archiveMeta struct {
	dockerManifest []byte
	ociIndex       []byte
	// links maps a link's path to its target's.
	links map[string]string
}

// scanArchive reads the archive's small metadata files, and checks that
// it is a whole tarball.
func scanArchive(file string) (*archiveMeta, error) {
	f, err := os.Open(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.NotFound("open %s: no such file or directory", file)
		}
		return nil, err
	}
	defer f.Close()
	m := &archiveMeta{links: map[string]string{}}
	tr := tar.NewReader(bufio.NewReader(f))
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errdefs.InvalidArgument("invalid archive: %v", err)
		}
		n++
		name := path.Clean(h.Name)
		switch h.Typeflag {
		case tar.TypeSymlink:
			if strings.HasPrefix(h.Linkname, "/") {
				// Absolute targets are relative to the archive's root.
				m.links[name] = path.Clean(strings.TrimPrefix(h.Linkname, "/"))
			} else {
				m.links[name] = path.Clean(path.Join(path.Dir(name), h.Linkname))
			}
			continue
		case tar.TypeLink:
			m.links[name] = path.Clean(h.Linkname)
			continue
		}
		if name != "manifest.json" && name != "index.json" {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(tr, maxMetadata+1))
		if err != nil {
			return nil, errdefs.InvalidArgument("invalid archive: %s: %v", name, err)
		}
		if len(b) > maxMetadata {
			return nil, errdefs.InvalidArgument("invalid archive: %s is too large", name)
		}
		if name == "manifest.json" {
			m.dockerManifest = b
		} else {
			m.ociIndex = b
		}
	}
	if n == 0 {
		return nil, errdefs.InvalidArgument("invalid archive: empty")
	}
	return m, nil
}

// eachEntry calls fn for every entry of the tarball at file; what names
// the archive's kind goes into errors.
func eachEntry(ctx context.Context, file, kind string, fn func(h *tar.Header, r io.Reader) error) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return errdefs.InvalidArgument("invalid %s: %v", kind, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(h, tr); err != nil {
			return err
		}
	}
}

type storedLayer struct {
	digest v1.Hash
	size   int64
}

// loadDocker stores a docker-archive's images. Layers are stored
// uncompressed, named by their diff IDs, under OCI manifests: nothing is
// compressed just to be named.
func (s *Service) loadDocker(ctx context.Context, tenant, file string, meta *archiveMeta, progress func(Progress)) ([]string, error) {
	var entries []dockerEntry
	if err := json.Unmarshal(meta.dockerManifest, &entries); err != nil {
		return nil, errdefs.InvalidArgument("invalid docker-archive: manifest.json: %v", err)
	}
	if len(entries) == 0 {
		return nil, errdefs.InvalidArgument("invalid docker-archive: manifest.json lists no image")
	}
	resolve := func(p string) string {
		p = path.Clean(p)
		for i := 0; i < 8; i++ {
			t, ok := meta.links[p]
			if !ok {
				break
			}
			p = t
		}
		return p
	}
	want := map[string]bool{}
	for _, e := range entries {
		want[resolve(e.Config)] = true
		for _, l := range e.Layers {
			want[resolve(l)] = true
		}
	}

	configs := map[string][]byte{}
	layers := map[string]storedLayer{}
	err := eachEntry(ctx, file, "docker-archive", func(h *tar.Header, tr io.Reader) error {
		p := path.Clean(h.Name)
		if !want[p] || h.Typeflag != tar.TypeReg {
			return nil
		}
		if isConfigPath(entries, p, resolve) {
			b, err := io.ReadAll(io.LimitReader(tr, maxMetadata+1))
			if err != nil || len(b) > maxMetadata {
				return errdefs.InvalidArgument("invalid docker-archive: config %s unreadable", p)
			}
			configs[p] = b
			return nil
		}
		report(progress, Progress{ID: shortPath(p), Status: "Loading layer", Total: h.Size})
		r, err := maybeGunzip(tr)
		if err != nil {
			return errdefs.InvalidArgument("invalid docker-archive: layer %s: %v", p, err)
		}
		d, n, err := s.Store.WriteBlobUnknown(r)
		if err != nil {
			return fmt.Errorf("load layer %s: %w", p, err)
		}
		layers[p] = storedLayer{d, n}
		return nil
	})
	if err != nil {
		return nil, err
	}

	var out []string
	for _, e := range entries {
		cfgBytes, ok := configs[resolve(e.Config)]
		if !ok {
			return nil, errdefs.InvalidArgument("invalid docker-archive: config %s is missing", e.Config)
		}
		cf, err := v1.ParseConfigFile(bytes.NewReader(cfgBytes))
		if err != nil {
			return nil, errdefs.InvalidArgument("invalid docker-archive: config %s: %v", e.Config, err)
		}
		if len(cf.RootFS.DiffIDs) != len(e.Layers) {
			return nil, errdefs.InvalidArgument("invalid docker-archive: %d layers listed, the config has %d", len(e.Layers), len(cf.RootFS.DiffIDs))
		}
		m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1}
		for i, lp := range e.Layers {
			sl, ok := layers[resolve(lp)]
			if !ok {
				return nil, errdefs.InvalidArgument("invalid docker-archive: layer %s is missing", lp)
			}
			if sl.digest != cf.RootFS.DiffIDs[i] {
				return nil, errdefs.InvalidArgument("invalid docker-archive: layer %s has digest %s, the config says %s: the archive is corrupt", lp, sl.digest, cf.RootFS.DiffIDs[i])
			}
			m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.OCIUncompressedLayer, Size: sl.size, Digest: sl.digest})
		}
		cd, err := s.Store.WriteBlobBytes(cfgBytes)
		if err != nil {
			return nil, err
		}
		m.Config = v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(cfgBytes)), Digest: cd}
		mb, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		md, err := s.Store.WriteBlobBytes(mb)
		if err != nil {
			return nil, err
		}
		lines, err := s.addLoaded(tenant, e.RepoTags, md, cd)
		if err != nil {
			return nil, err
		}
		out = append(out, lines...)
	}
	return out, nil
}

// dockerEntry is one image of a docker-archive's manifest.json.
type dockerEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func isConfigPath(entries []dockerEntry, p string, resolve func(string) string) bool {
	for _, e := range entries {
		if resolve(e.Config) == p {
			return true
		}
	}
	return false
}

func shortPath(p string) string {
	b := path.Base(path.Dir(p))
	if b == "." || b == "sha256" {
		b = path.Base(p)
	}
	if len(b) > 12 {
		b = b[:12]
	}
	return b
}

// maybeGunzip decompresses a gzip stream and passes anything else on.
func maybeGunzip(r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(2)
	if err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		return gzip.NewReader(br)
	}
	return br, nil
}

// addLoaded records a loaded image's names (or, untagged, its ID).
func (s *Service) addLoaded(tenant string, tags []string, manifest, id v1.Hash) ([]string, error) {
	now := time.Now().UTC()
	if len(tags) == 0 {
		err := s.Store.UpdateRefs(tenant, func(refs []store.Ref) ([]store.Ref, error) {
			for _, r := range refs {
				if r.ID == id {
					return refs, nil
				}
			}
			return append(refs, store.Ref{Manifest: manifest, ID: id, Added: now}), nil
		})
		return []string{"Loaded image ID: " + id.String()}, err
	}
	var out []string
	for _, t := range tags {
		r, err := ParseRef(t, s.Insecure)
		if err != nil {
			return nil, errdefs.InvalidArgument("invalid docker-archive: bad tag %q", t)
		}
		if err := s.setRef(tenant, store.Ref{Name: Canonical(r), Manifest: manifest, ID: id, Added: now}); err != nil {
			return nil, err
		}
		out = append(out, "Loaded image: "+Familiar(Canonical(r)))
	}
	return out, nil
}

// loadOCI stores an OCI archive's blobs as they are (each verified against
// the digest its path names) and its index's images.
func (s *Service) loadOCI(ctx context.Context, tenant, file string, meta *archiveMeta) ([]string, error) {
	idx, err := v1.ParseIndexManifest(bytes.NewReader(meta.ociIndex))
	if err != nil {
		return nil, errdefs.InvalidArgument("invalid OCI archive: index.json: %v", err)
	}
	err = eachEntry(ctx, file, "OCI archive", func(h *tar.Header, tr io.Reader) error {
		p := path.Clean(h.Name)
		rest, ok := strings.CutPrefix(p, "blobs/")
		if !ok || h.Typeflag != tar.TypeReg {
			return nil
		}
		alg, hexd, _ := strings.Cut(rest, "/")
		d, err := v1.NewHash(alg + ":" + hexd)
		if err != nil || alg != "sha256" {
			return errdefs.InvalidArgument("invalid OCI archive: unexpected blob %s", p)
		}
		if err := s.Store.WriteBlob(d, h.Size, tr, nil); err != nil {
			if errors.Is(err, store.ErrDigestMismatch) {
				return errdefs.InvalidArgument("invalid OCI archive: %v", err)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// index.json may list several platforms' images directly: take this
	// platform's (and the unlabelled), as from any index.
	entries, seen := platformCandidates(idx.Manifests)
	if len(entries) == 0 && len(seen) > 0 {
		return nil, errdefs.FailedPrecondition("no matching manifest for %s/%s in the archive (it has %v)", Platform.OS, Platform.Architecture, seen)
	}
	var out []string
	for _, desc := range entries {
		md, err := s.platformManifest(desc)
		if err != nil {
			return nil, err
		}
		img, err := s.Store.Image(md)
		if err != nil {
			return nil, errdefs.InvalidArgument("invalid OCI archive: %v", err)
		}
		m, err := img.Manifest()
		if err != nil {
			return nil, errdefs.InvalidArgument("invalid OCI archive: manifest %s: %v", md, err)
		}
		for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
			if !s.Store.HasBlob(d.Digest) {
				return nil, errdefs.InvalidArgument("invalid OCI archive: blob %s is missing", d.Digest)
			}
		}
		var tags []string
		if n := ociName(desc.Annotations); n != "" {
			tags = []string{n}
		}
		lines, err := s.addLoaded(tenant, tags, md, m.Config.Digest)
		if err != nil {
			return nil, err
		}
		out = append(out, lines...)
	}
	if len(out) == 0 {
		return nil, errdefs.InvalidArgument("invalid OCI archive: index.json lists no image")
	}
	return out, nil
}

// platformManifest follows an index in the store to its linux/amd64 image.
func (s *Service) platformManifest(desc v1.Descriptor) (v1.Hash, error) {
	for depth := 0; depth < 4; depth++ {
		if !desc.MediaType.IsIndex() {
			return desc.Digest, nil
		}
		b, err := s.Store.ReadBlob(desc.Digest)
		if err != nil {
			return v1.Hash{}, errdefs.InvalidArgument("invalid OCI archive: index %s is missing", desc.Digest)
		}
		idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
		if err != nil {
			return v1.Hash{}, errdefs.InvalidArgument("invalid OCI archive: index %s: %v", desc.Digest, err)
		}
		candidates, _ := platformCandidates(idx.Manifests)
		if len(candidates) == 0 {
			return v1.Hash{}, errdefs.FailedPrecondition("no matching manifest for %s/%s in the manifest list entries", Platform.OS, Platform.Architecture)
		}
		desc = candidates[0]
	}
	return v1.Hash{}, errdefs.InvalidArgument("invalid OCI archive: indexes nested too deep")
}

// ociName is an OCI index entry's image name: containerd's full name, or
// a ref.name that is a full reference (a bare tag names no repository).
func ociName(a map[string]string) string {
	if n := a["io.containerd.image.name"]; n != "" {
		return n
	}
	n := a["org.opencontainers.image.ref.name"]
	if strings.ContainsAny(n, "/:@") {
		return n
	}
	return ""
}

// Save writes tenant's images as one docker-archive, which `docker load`
// reads. Images named by ID are saved untagged.
func (s *Service) Save(ctx context.Context, tenant string, refs []string, w io.Writer) error {
	if len(refs) == 0 {
		return errdefs.InvalidArgument("no image given")
	}
	m := map[name.Reference]v1.Image{}
	for _, ref := range refs {
		rec, err := s.Lookup(tenant, ref)
		if err != nil {
			return err
		}
		img, err := s.Store.Image(rec.Manifest)
		if err != nil {
			return err
		}
		var key name.Reference
		if rec.Name != "" && !strings.Contains(rec.Name, "@") && s.isName(tenant, ref) {
			if key, err = name.NewTag(rec.Name); err != nil {
				return err
			}
		} else {
			// An untagged entry: the archive gets no RepoTags for it.
			if key, err = name.NewDigest("hearth.invalid/untagged@" + rec.Manifest.String()); err != nil {
				return err
			}
		}
		m[key] = img
	}
	if err := tarball.MultiRefWrite(m, w); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}
