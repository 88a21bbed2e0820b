// Package layer prepares image layers for cradle: each layer becomes a
// read-only EROFS filesystem image, made once per layer and shared by
// every image and VM that uses it. Unpacking keeps OCI whiteouts in the
// form overlayfs reads, since the guest stacks the layers with overlayfs.
package layer

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/internal/atomicfile"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Cache turns image layers into read-only EROFS filesystem images,
// once per layer: the file is named by the layer's diff ID, so every image
// and every VM that shares a layer shares the one file, and a second start
// of an image unpacks nothing.
//
// EROFS because it is made for exactly this (read-only, compact, fast to
// mount, page-cache friendly) and the guest kernel mounts it directly from
// a virtio-blk disk. Layers stay separate disks that the guest stacks with
// overlayfs, so whiteouts are kept in overlayfs form: a 0/0 character
// device for a deleted path and the trusted.overlay.opaque xattr for an
// opaque directory.
type Cache struct {
	Dir string
}

// Path is where the prepared form of the layer with diffID lives.
func (c *Cache) Path(diffID v1.Hash) string {
	return filepath.Join(c.Dir, diffID.Algorithm, diffID.Hex+".erofs")
}

// Lookup returns the prepared layer with diffID, if there is one.
func (c *Cache) Lookup(diffID v1.Hash) (string, bool) {
	p := c.Path(diffID)
	_, err := os.Stat(p)
	return p, err == nil
}

// Prepare returns the EROFS image of a layer, building it when missing.
// Concurrent callers for one layer build it once.
func (c *Cache) Prepare(ctx context.Context, l v1.Layer) (string, error) {
	diffID, err := l.DiffID()
	if err != nil {
		return "", fmt.Errorf("layer diff id: %w", err)
	}
	if diffID.Algorithm != "sha256" {
		return "", errdefs.InvalidArgument("layer %s: unsupported digest algorithm", diffID)
	}
	out := c.Path(diffID)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, diffID.Hex+".lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock layer %s: %w", diffID, err)
	}
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	// Whoever held the lock before us may have died mid-way: nobody else
	// can be working on this layer now, so its leftovers go.
	stale, _ := filepath.Glob(filepath.Join(dir, diffID.Hex+".tmp*"))
	for _, s := range stale {
		os.RemoveAll(s)
	}

	tmpDir := filepath.Join(dir, diffID.Hex+".tmp-dir")
	tmpImg := filepath.Join(dir, diffID.Hex+".tmp-img")
	defer os.RemoveAll(tmpDir)
	defer os.Remove(tmpImg)
	if err := os.Mkdir(tmpDir, 0o755); err != nil {
		return "", err
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", diffID, err)
	}
	h := sha256.New()
	err = Unpack(io.TeeReader(rc, h), tmpDir)
	// Drain to the end, so the digest covers the whole stream.
	if err == nil {
		_, err = io.Copy(h, rc)
	}
	rc.Close()
	if err != nil {
		return "", errdefs.InvalidArgument("layer %s: %v", diffID, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != diffID.Hex {
		return "", errdefs.InvalidArgument("layer %s: content has digest sha256:%s; the image is corrupt", diffID, got)
	}
	if err := mkfsErofs(ctx, tmpImg, tmpDir); err != nil {
		return "", fmt.Errorf("layer %s: %w", diffID, err)
	}
	if err := syncFile(tmpImg); err != nil {
		return "", err
	}
	if err := os.Rename(tmpImg, out); err != nil {
		return "", err
	}
	if err := atomicfile.SyncDir(dir); err != nil {
		return "", err
	}
	return out, nil
}

// Prune removes prepared layers whose diff ID is not in keep, and what
// builds that died left behind. It returns the removed diff IDs and the
// bytes freed.
func (c *Cache) Prune(keep map[string]bool) ([]string, int64, error) {
	var removed []string
	var freed int64
	files, err := filepath.Glob(filepath.Join(c.Dir, "sha256", "*"))
	if err != nil {
		return nil, 0, err
	}
	for _, f := range files {
		base := filepath.Base(f)
		hexID, kind, _ := strings.Cut(base, ".")
		if kind == "lock" {
			continue
		}
		d := "sha256:" + hexID
		if kind == "erofs" && keep[d] {
			continue
		}
		// Take the layer's lock so a build in progress is not pulled
		// from under its builder.
		lock, err := os.OpenFile(filepath.Join(c.Dir, "sha256", hexID+".lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return removed, freed, err
		}
		if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			lock.Close()
			continue
		}
		if fi, err := os.Stat(f); err == nil {
			freed += fi.Size()
		}
		err = os.RemoveAll(f)
		if err == nil && kind == "erofs" {
			removed = append(removed, d)
			os.Remove(lock.Name())
		}
		lock.Close()
		if err != nil {
			return removed, freed, err
		}
	}
	return removed, freed, nil
}

func mkfsErofs(ctx context.Context, out, dir string) error {
	bin, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		return errdefs.FailedPrecondition("mkfs.erofs not found: install erofs-utils (`apt-get install erofs-utils`)")
	}
	cmd := exec.CommandContext(ctx, bin, "--quiet", "--preserve-mtime", out, dir)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.erofs: %w: %s", err, strings.TrimSpace(string(b)))
	}
	return nil
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// OCI whiteout names.
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// Unpack writes a layer tar stream into dir in overlayfs form (see
// Cache). Paths are resolved inside dir, so no entry, and no symlink
// an entry follows, can write outside it. It must run as root, since it
// keeps owners and creates device nodes.
func Unpack(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	// Directory times are set last (creating entries inside changes
	// them); the last entry for a path wins.
	dirTimes := map[string]time.Time{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		name := path.Clean("/" + hdr.Name)
		parentRel, base := path.Split(name)
		parent, err := securejoin.SecureJoin(dir, parentRel)
		if err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		if err := os.MkdirAll(parent, 0o755); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
		if name == "/" {
			if hdr.Typeflag == tar.TypeDir {
				if err := applyMeta(dir, hdr); err != nil {
					return err
				}
				dirTimes[dir] = hdr.ModTime
			}
			continue
		}
		if base == whiteoutOpaque {
			if err := unix.Lsetxattr(parent, opaqueXattr, []byte("y"), 0); err != nil {
				return fmt.Errorf("%s: opaque directory: %w", hdr.Name, err)
			}
			continue
		}
		if strings.HasPrefix(base, whiteoutPrefix) {
			victim := strings.TrimPrefix(base, whiteoutPrefix)
			if victim == "" || victim == "." || victim == ".." {
				return fmt.Errorf("%s: invalid whiteout", hdr.Name)
			}
			target := filepath.Join(parent, victim)
			if err := os.RemoveAll(target); err != nil {
				return err
			}
			if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
				return fmt.Errorf("%s: whiteout: %w", hdr.Name, err)
			}
			continue
		}
		target := filepath.Join(parent, base)
		// A later entry replaces an earlier one, except that a directory
		// over a directory only updates it.
		if fi, err := os.Lstat(target); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := os.RemoveAll(target); err != nil {
				return err
			}
			for p := range dirTimes {
				if p == target || strings.HasPrefix(p, target+"/") {
					delete(dirTimes, p)
				}
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
			dirTimes[target] = hdr.ModTime
		case tar.TypeReg, tar.TypeRegA:
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		case tar.TypeLink:
			lname := path.Clean("/" + hdr.Linkname)
			lparent, lbase := path.Split(lname)
			lp, err := securejoin.SecureJoin(dir, lparent)
			if err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
			if err := os.Link(filepath.Join(lp, lbase), target); err != nil {
				return fmt.Errorf("%s: hard link to %s: %w", hdr.Name, hdr.Linkname, err)
			}
			// A hard link shares its target's metadata.
			continue
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			mode := uint32(hdr.Mode & 0o7777)
			switch hdr.Typeflag {
			case tar.TypeChar:
				mode |= unix.S_IFCHR
			case tar.TypeBlock:
				mode |= unix.S_IFBLK
			default:
				mode |= unix.S_IFIFO
			}
			dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
			if err := unix.Mknod(target, mode, int(dev)); err != nil {
				return fmt.Errorf("%s: %w", hdr.Name, err)
			}
		default:
			// Global headers and the like carry no file.
			continue
		}
		if err := applyMeta(target, hdr); err != nil {
			return err
		}
	}
	for p, t := range dirTimes {
		setTimes(p, t)
	}
	return nil
}

// applyMeta sets owner, xattrs, mode and time of an unpacked entry.
func applyMeta(p string, hdr *tar.Header) error {
	if err := os.Lchown(p, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("%s: chown: %w", hdr.Name, err)
	}
	for k, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			if err := unix.Lsetxattr(p, x, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
				return fmt.Errorf("%s: xattr %s: %w", hdr.Name, x, err)
			}
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// After chown, which clears setuid bits.
		if err := os.Chmod(p, hdr.FileInfo().Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
			return fmt.Errorf("%s: chmod: %w", hdr.Name, err)
		}
	}
	if hdr.Typeflag != tar.TypeDir {
		setTimes(p, hdr.ModTime)
	}
	return nil
}

func setTimes(p string, mtime time.Time) {
	ts := []unix.Timespec{unix.NsecToTimespec(mtime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
}
