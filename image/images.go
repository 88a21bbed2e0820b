package image

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hearth-cloud/hearth/image/store"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

var idRE = regexp.MustCompile(`^(sha256:)?[0-9a-f]{4,64}$`)

// lookupName finds a reference by its canonical name.
func (s *Service) lookupName(tenant, canonical string) (*store.Ref, error) {
	refs, err := s.Store.Refs(tenant)
	if err != nil {
		return nil, err
	}
	for i := range refs {
		if refs[i].Name == canonical {
			return &refs[i], nil
		}
	}
	return nil, errdefs.NotFound("No such image: %s", Familiar(canonical))
}

// Lookup finds one of tenant's images by name (busybox, busybox:1,
// repo@sha256:…) or by ID or a unique ID prefix, as Docker does.
func (s *Service) Lookup(tenant, ref string) (*store.Ref, error) {
	refs, err := s.Store.Refs(tenant)
	if err != nil {
		return nil, err
	}
	if r, err := ParseRef(ref, s.Insecure); err == nil {
		c := Canonical(r)
		for i := range refs {
			if refs[i].Name == c || (refs[i].RepoDigest != "" && refs[i].RepoDigest == c) {
				return &refs[i], nil
			}
		}
		// A digest reference also matches the image's own manifest.
		if repo, dig := SplitName(c); strings.HasPrefix(dig, "sha256:") {
			for i := range refs {
				if refs[i].Manifest.String() != dig || refs[i].Name == "" {
					continue
				}
				if r, _ := SplitName(refs[i].Name); r == repo {
					return &refs[i], nil
				}
			}
		}
	}
	if idRE.MatchString(ref) {
		prefix := strings.TrimPrefix(ref, "sha256:")
		var match *store.Ref
		for i := range refs {
			if strings.HasPrefix(refs[i].ID.Hex, prefix) {
				if match != nil && match.ID != refs[i].ID {
					return nil, errdefs.InvalidArgument("image ID prefix %s is ambiguous", ref)
				}
				if match == nil {
					match = &refs[i]
				}
			}
		}
		if match != nil {
			return match, nil
		}
	}
	return nil, errdefs.NotFound("No such image: %s", ref)
}

// Get returns one of tenant's images for running.
func (s *Service) Get(tenant, ref string) (v1.Image, *store.Ref, error) {
	rec, err := s.Lookup(tenant, ref)
	if err != nil {
		return nil, nil, err
	}
	img, err := s.Store.Image(rec.Manifest)
	if err != nil {
		return nil, nil, err
	}
	return img, rec, nil
}

// GetOrPull returns an image, pulling it first when tenant has none by
// that name (what `docker run` does).
func (s *Service) GetOrPull(ctx context.Context, tenant, ref string, progress func(Progress)) (v1.Image, *store.Ref, error) {
	img, rec, err := s.Get(tenant, ref)
	if err == nil || !errdefs.IsNotFound(err) {
		return img, rec, err
	}
	if _, perr := ParseRef(ref, s.Insecure); perr != nil {
		return nil, nil, err
	}
	if _, err := s.Pull(ctx, tenant, ref, progress); err != nil {
		return nil, nil, err
	}
	return s.Get(tenant, ref)
}

// Summary is a line of `image ls`.
type Summary struct {
	// Name is the canonical name, empty for an untagged image.
	Name       string
	ID         v1.Hash
	Manifest   v1.Hash
	RepoDigest string
	Created    time.Time
	// Size is the bytes of the image's blobs in the store.
	Size int64
}

// List returns tenant's images, newest first.
func (s *Service) List(tenant string) ([]Summary, error) {
	refs, err := s.Store.Refs(tenant)
	if err != nil {
		return nil, err
	}
	var out []Summary
	for _, r := range refs {
		sum := Summary{Name: r.Name, ID: r.ID, Manifest: r.Manifest, RepoDigest: r.RepoDigest}
		if img, err := s.Store.Image(r.Manifest); err == nil {
			if cf, err := img.ConfigFile(); err == nil {
				sum.Created = cf.Created.Time
			}
			if m, err := img.Manifest(); err == nil {
				sum.Size = m.Config.Size
				for _, l := range m.Layers {
					sum.Size += l.Size
				}
			}
		}
		out = append(out, sum)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// Info is `image inspect`, in the shape of Docker's.
type Info struct {
	ID           string    `json:"Id"`
	RepoTags     []string  `json:"RepoTags"`
	RepoDigests  []string  `json:"RepoDigests"`
	Created      time.Time `json:"Created"`
	Architecture string    `json:"Architecture"`
	Os           string    `json:"Os"`
	Size         int64     `json:"Size"`
	Config       v1.Config `json:"Config"`
	RootFS       struct {
		Type   string   `json:"Type"`
		Layers []string `json:"Layers"`
	} `json:"RootFS"`
	Manifest string `json:"Manifest"`
}

// Inspect describes one of tenant's images.
func (s *Service) Inspect(tenant, ref string) (*Info, error) {
	rec, err := s.Lookup(tenant, ref)
	if err != nil {
		return nil, err
	}
	img, err := s.Store.Image(rec.Manifest)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	info := &Info{ID: rec.ID.String(), Created: cf.Created.Time, Architecture: cf.Architecture, Os: cf.OS, Config: cf.Config, Manifest: rec.Manifest.String(), RepoTags: []string{}, RepoDigests: []string{}}
	info.RootFS.Type = "layers"
	for _, d := range cf.RootFS.DiffIDs {
		info.RootFS.Layers = append(info.RootFS.Layers, d.String())
	}
	if m, err := img.Manifest(); err == nil {
		for _, l := range m.Layers {
			info.Size += l.Size
		}
	}
	refs, _ := s.Store.Refs(tenant)
	for _, r := range refs {
		if r.ID != rec.ID {
			continue
		}
		if r.Name != "" && !strings.Contains(r.Name, "@") {
			info.RepoTags = append(info.RepoTags, Familiar(r.Name))
		}
		if r.RepoDigest != "" && !contains(info.RepoDigests, Familiar(r.RepoDigest)) {
			info.RepoDigests = append(info.RepoDigests, Familiar(r.RepoDigest))
		}
	}
	return info, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Tag gives one of tenant's images another name.
func (s *Service) Tag(tenant, src, dst string) error {
	rec, err := s.Lookup(tenant, src)
	if err != nil {
		return err
	}
	r, err := ParseRef(dst, s.Insecure)
	if err != nil {
		return err
	}
	if strings.Contains(Canonical(r), "@") {
		return errdefs.InvalidArgument("refusing to create a tag with a digest reference")
	}
	return s.setRef(tenant, store.Ref{Name: Canonical(r), Manifest: rec.Manifest, ID: rec.ID, Added: time.Now().UTC()})
}

// Remove untags an image name, or deletes an image by ID, in Docker's
// manner: the image goes once its last name does, unless a pod uses it
// (then only with force). It returns Docker's Untagged:/Deleted: lines.
func (s *Service) Remove(tenant, ref string, force bool) ([]string, error) {
	rec, err := s.Lookup(tenant, ref)
	if err != nil {
		return nil, err
	}
	byID := rec.Name == "" || (idRE.MatchString(ref) && !s.isName(tenant, ref))
	var events []string
	err = s.Store.UpdateRefs(tenant, func(refs []store.Ref) ([]store.Ref, error) {
		var same []store.Ref
		for _, r := range refs {
			if r.ID == rec.ID {
				same = append(same, r)
			}
		}
		names := 0
		for _, r := range same {
			if r.Name != "" {
				names++
			}
		}
		if byID && names > 1 && !force {
			return nil, errdefs.Conflict("conflict: unable to delete %s (must be forced) - image is referenced in multiple repositories", ShortID(rec.ID))
		}
		last := byID || names <= 1
		if last && !force {
			if pods := s.inUse(rec.ID); len(pods) > 0 {
				return nil, errdefs.Conflict("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", ref, short(pods[0]), ShortID(rec.ID))
			}
		}
		out := refs[:0]
		for _, r := range refs {
			drop := false
			if r.ID == rec.ID {
				drop = last || r.Name == rec.Name
			}
			if !drop {
				out = append(out, r)
				continue
			}
			if r.Name != "" {
				events = append(events, "Untagged: "+Familiar(r.Name))
			}
		}
		if last {
			events = append(events, "Deleted: "+rec.ID.String())
		}
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	res, err := s.Store.GC()
	if err != nil {
		return events, err
	}
	for _, b := range res.Blobs {
		if b != rec.ID {
			events = append(events, "Deleted: "+b.String())
		}
	}
	return events, nil
}

func (s *Service) isName(tenant, ref string) bool {
	r, err := ParseRef(ref, s.Insecure)
	if err != nil {
		return false
	}
	_, err = s.lookupName(tenant, Canonical(r))
	return err == nil
}

func (s *Service) inUse(id v1.Hash) []string {
	if s.InUse == nil {
		return nil
	}
	return s.InUse(id)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// PruneReport says what Prune removed.
type PruneReport struct {
	Deleted        []string
	SpaceReclaimed int64
}

// Prune removes untagged images no pod uses (of every tenant), blobs no
// reference reaches, and prepared layers no image or pod needs.
func (s *Service) Prune(ctx context.Context) (*PruneReport, error) {
	rep := &PruneReport{}
	tenants, err := s.Store.Tenants()
	if err != nil {
		return nil, err
	}
	for _, t := range tenants {
		err := s.Store.UpdateRefs(t, func(refs []store.Ref) ([]store.Ref, error) {
			out := refs[:0]
			for _, r := range refs {
				if r.Name == "" && len(s.inUse(r.ID)) == 0 {
					rep.Deleted = append(rep.Deleted, "deleted: "+r.ID.String())
					continue
				}
				out = append(out, r)
			}
			return out, nil
		})
		if err != nil {
			return nil, err
		}
	}
	res, err := s.Store.GC()
	if err != nil {
		return nil, err
	}
	for _, b := range res.Blobs {
		rep.Deleted = append(rep.Deleted, "deleted: "+b.String())
	}
	rep.SpaceReclaimed += res.Bytes

	// Prepared layers: keep what any stored image or existing pod uses.
	keep := map[string]bool{}
	if s.LayersInUse != nil {
		keep = s.LayersInUse()
	}
	for _, t := range tenants {
		refs, _ := s.Store.Refs(t)
		for _, r := range refs {
			img, err := s.Store.Image(r.Manifest)
			if err != nil {
				continue
			}
			if cf, err := img.ConfigFile(); err == nil {
				for _, d := range cf.RootFS.DiffIDs {
					keep[d.String()] = true
				}
			}
		}
	}
	removed, bytes, err := s.Layers.Prune(keep)
	if err != nil {
		return rep, fmt.Errorf("prune prepared layers: %w", err)
	}
	for _, d := range removed {
		rep.Deleted = append(rep.Deleted, "deleted prepared layer: "+d)
	}
	rep.SpaceReclaimed += bytes
	return rep, nil
}

// Forget drops every reference and registry login of tenant (a removed
// tenant); the blobs only it used go with the next prune.
func (s *Service) Forget(tenant string) error {
	if err := s.Store.UpdateRefs(tenant, func([]store.Ref) ([]store.Ref, error) { return nil, nil }); err != nil {
		return fmt.Errorf("forget the images of tenant %s: %w", tenant, err)
	}
	if s.Auth != nil {
		if err := s.Auth.Forget(tenant); err != nil {
			return fmt.Errorf("forget the registry logins of tenant %s: %w", tenant, err)
		}
	}
	return nil
}
