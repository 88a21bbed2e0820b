// Package store is Hearth's content-addressed image store.
//
// Blobs (manifests, configs, layers) live once under blobs/sha256/<hex>,
// shared by every image and every tenant that has them; a blob is written
// to tmp/, verified against its digest, synced, and only then renamed into
// place, so a blob file that exists can be trusted, whatever crashed while
// it was written. The blob directory is laid out as an OCI image layout, so
// go-containerregistry reads images straight out of it.
//
// References belong to tenants: refs/<tenant>.json maps each of a tenant's
// image names to a manifest digest. A tenant reaches blobs only through its
// own references, so an image one tenant pulled with private credentials is
// invisible to the others until they pull it themselves.
package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/internal/atomicfile"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Store is an image store rooted at a directory.
type Store struct {
	root string
}

// Open opens the store at root, creating it when missing. The leftovers of
// writes that never finished stay in tmp/ until GC, which alone can tell
// they are dead.
func Open(root string) (*Store, error) {
	s := &Store{root: root}
	for _, d := range []string{s.blobDir(), s.tmpDir(), s.refDir(), filepath.Join(root, "locks")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "oci-layout")); err != nil {
		if err := atomicfile.WriteFile(filepath.Join(root, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Root is the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) blobDir() string { return filepath.Join(s.root, "blobs", "sha256") }
func (s *Store) tmpDir() string  { return filepath.Join(s.root, "tmp") }
func (s *Store) refDir() string  { return filepath.Join(s.root, "refs") }

// BlobPath is where the blob with digest d lives.
func (s *Store) BlobPath(d v1.Hash) string { return filepath.Join(s.blobDir(), d.Hex) }

// validDigest accepts sha256 digests only, in their canonical form.
func validDigest(d v1.Hash) bool {
	return d.Algorithm == "sha256" && hexRE.MatchString(d.Hex)
}

var hexRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ValidTenant reports whether s can name a tenant.
func ValidTenant(s string) bool { return tenantRE.MatchString(s) }

// HasBlob reports whether the blob is in the store.
func (s *Store) HasBlob(d v1.Hash) bool {
	if !validDigest(d) {
		return false
	}
	_, err := os.Stat(s.BlobPath(d))
	return err == nil
}

// ReadBlob returns a blob's content (for small blobs: manifests, configs).
func (s *Store) ReadBlob(d v1.Hash) ([]byte, error) {
	if !validDigest(d) {
		return nil, errdefs.InvalidArgument("unsupported digest %s", d)
	}
	b, err := os.ReadFile(s.BlobPath(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errdefs.NotFound("blob %s not in the store", d)
	}
	return b, err
}

// ErrDigestMismatch means content did not hash to the digest it claimed.
var ErrDigestMismatch = errors.New("digest mismatch")

// WriteBlob stores r's content as the blob with digest d (and size, unless
// size < 0), verifying both. Writers of the same blob, in this process or
// another, take turns: the second finds the blob there and reads nothing.
// progress, if set, is told how many bytes have been written so far.
func (s *Store) WriteBlob(d v1.Hash, size int64, r io.Reader, progress func(int64)) error {
	if !validDigest(d) {
		return errdefs.InvalidArgument("unsupported digest %s", d)
	}
	if s.HasBlob(d) {
		return nil
	}
	unlock, err := s.lockFile("blob-" + d.Hex)
	if err != nil {
		return err
	}
	defer unlock()
	if s.HasBlob(d) {
		return nil
	}
	f, err := os.CreateTemp(s.tmpDir(), d.Hex+".*")
	if err != nil {
		return fmt.Errorf("write blob %s: %w", d, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	h := sha256.New()
	w := io.MultiWriter(f, h)
	if progress != nil {
		w = &countingWriter{w: w, fn: progress}
	}
	n, err := io.Copy(w, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write blob %s: %w", d, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("blob %s: %w: got %d bytes, want %d", d, ErrDigestMismatch, n, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
		return fmt.Errorf("blob %s: %w: content is sha256:%s", d, ErrDigestMismatch, got)
	}
	if err := os.Rename(tmp, s.BlobPath(d)); err != nil {
		return fmt.Errorf("write blob %s: %w", d, err)
	}
	return atomicfile.SyncDir(s.blobDir())
}

// WriteBlobBytes stores b, whose digest it computes.
func (s *Store) WriteBlobBytes(b []byte) (v1.Hash, error) {
	sum := sha256.Sum256(b)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	return d, s.WriteBlob(d, int64(len(b)), bytes.NewReader(b), nil)
}

// WriteBlobUnknown stores r's content under the digest it turns out to
// have, for content whose digest is only known once read (an uncompressed
// layer of a docker-archive).
func (s *Store) WriteBlobUnknown(r io.Reader) (v1.Hash, int64, error) {
	f, err := os.CreateTemp(s.tmpDir(), "unknown.*")
	if err != nil {
		return v1.Hash{}, 0, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return v1.Hash{}, 0, fmt.Errorf("write blob: %w", err)
	}
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	unlock, err := s.lockFile("blob-" + d.Hex)
	if err != nil {
		return d, 0, err
	}
	defer unlock()
	if s.HasBlob(d) {
		return d, n, nil
	}
	if err := os.Rename(tmp, s.BlobPath(d)); err != nil {
		return d, 0, err
	}
	return d, n, atomicfile.SyncDir(s.blobDir())
}

type countingWriter struct {
	w  io.Writer
	n  int64
	fn func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.fn(c.n)
	return n, err
}

// lockFile takes an exclusive lock that holds across processes.
func (s *Store) lockFile(name string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.root, "locks", name+".lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return func() { f.Close() }, nil
}

// Writing takes the store's shared lock for a pull, load or tag: blobs
// written under it are safe from a concurrent GC until their reference is
// in place. Call the returned function when done.
func (s *Store) Writing() (func(), error) { return s.gcLock(unix.LOCK_SH) }

func (s *Store) gcLock(how int) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.root, "locks", "gc.lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Ref is one of a tenant's image names.
type Ref struct {
	// Name is the canonical reference (docker.io/library/busybox:latest,
	// or repo@sha256:… for a digest reference); empty for an untagged
	// image, which is known by its ID only.
	Name string `json:"name,omitempty"`
	// Manifest is the digest of the image manifest (linux/amd64).
	Manifest v1.Hash `json:"manifest"`
	// ID is the digest of the image config: Docker's image ID.
	ID v1.Hash `json:"id"`
	// RepoDigest is repo@digest of what was pulled or pushed (the index
	// for a multi-platform image), empty for a loaded image.
	RepoDigest string    `json:"repoDigest,omitempty"`
	Added      time.Time `json:"added"`
}

var tenantRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (s *Store) refFile(tenant string) (string, error) {
	if !tenantRE.MatchString(tenant) {
		return "", errdefs.InvalidArgument("invalid tenant %q", tenant)
	}
	return filepath.Join(s.refDir(), tenant+".json"), nil
}

// Refs returns a tenant's references, sorted by name.
func (s *Store) Refs(tenant string) ([]Ref, error) {
	p, err := s.refFile(tenant)
	if err != nil {
		return nil, err
	}
	return readRefs(p)
}

func readRefs(p string) ([]Ref, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var refs []Ref
	if err := json.Unmarshal(b, &refs); err != nil {
		return nil, fmt.Errorf("corrupt reference file %s: %w", p, err)
	}
	return refs, nil
}

// UpdateRefs changes a tenant's references under its lock; fn's result is
// written durably before UpdateRefs returns.
func (s *Store) UpdateRefs(tenant string, fn func([]Ref) ([]Ref, error)) error {
	p, err := s.refFile(tenant)
	if err != nil {
		return err
	}
	unlock, err := s.lockFile("refs-" + tenant)
	if err != nil {
		return err
	}
	defer unlock()
	refs, err := readRefs(p)
	if err != nil {
		return err
	}
	if refs, err = fn(refs); err != nil {
		return err
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].Name != refs[j].Name {
			return refs[i].Name < refs[j].Name
		}
		return refs[i].ID.Hex < refs[j].ID.Hex
	})
	b, err := json.MarshalIndent(refs, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(p, b, 0o644)
}

// Tenants lists the tenants that have references.
func (s *Store) Tenants() ([]string, error) {
	ents, err := os.ReadDir(s.refDir())
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if t, ok := strings.CutSuffix(e.Name(), ".json"); ok && tenantRE.MatchString(t) {
			out = append(out, t)
		}
	}
	return out, nil
}

// Reachable returns every blob some tenant's reference reaches: manifests,
// configs and layers.
func (s *Store) Reachable() (map[string]bool, error) {
	tenants, err := s.Tenants()
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for _, t := range tenants {
		refs, err := s.Refs(t)
		if err != nil {
			return nil, err
		}
		for _, r := range refs {
			if keep[r.Manifest.Hex] {
				continue
			}
			keep[r.Manifest.Hex] = true
			b, err := s.ReadBlob(r.Manifest)
			if err != nil {
				continue
			}
			m, err := v1.ParseManifest(bytes.NewReader(b))
			if err != nil {
				continue
			}
			keep[m.Config.Digest.Hex] = true
			for _, l := range m.Layers {
				keep[l.Digest.Hex] = true
			}
		}
	}
	return keep, nil
}

// GCResult says what a collection removed.
type GCResult struct {
	Blobs []v1.Hash
	Bytes int64
}

// GC deletes blobs no reference reaches, and whatever unfinished writes
// left in tmp/. It waits for writers in progress (Writing) to finish.
func (s *Store) GC() (GCResult, error) {
	var res GCResult
	unlock, err := s.gcLock(unix.LOCK_EX)
	if err != nil {
		return res, err
	}
	defer unlock()
	keep, err := s.Reachable()
	if err != nil {
		return res, err
	}
	ents, err := os.ReadDir(s.blobDir())
	if err != nil {
		return res, err
	}
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if err := os.Remove(filepath.Join(s.blobDir(), e.Name())); err != nil {
			return res, err
		}
		res.Blobs = append(res.Blobs, v1.Hash{Algorithm: "sha256", Hex: e.Name()})
		res.Bytes += fi.Size()
	}
	// No writer holds the shared lock now, so nothing in tmp/ is live.
	tmps, _ := os.ReadDir(s.tmpDir())
	for _, e := range tmps {
		if fi, err := e.Info(); err == nil {
			res.Bytes += fi.Size()
		}
		os.RemoveAll(filepath.Join(s.tmpDir(), e.Name()))
	}
	return res, nil
}
