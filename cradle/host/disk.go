package host

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// DefaultVolumeSize is the size of a block volume created without one.
const DefaultVolumeSize = 1 << 30

// EnsureBlockVolume makes the file at path a usable block volume: a file
// that is missing or empty becomes a sparse file of size bytes holding a
// fresh ext4 filesystem; a file with content is used as it is.
//
// A block volume is a sparse ext4 image rather than a shared directory
// because the guest then owns the filesystem: fsync in the container is a
// flush of the virtio disk, which QEMU turns into an fdatasync of the
// file, and the size limit is the file's size, so a full volume gives
// ENOSPC rather than eating the host's disk.
func EnsureBlockVolume(path string, size int64) error {
	// Two pods that start on a new volume at once must not both format
	// it: the first to hold the lock does, the second finds it made.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("block volume %s: %w", path, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("block volume %s: lock: %w", path, err)
	}
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return errdefs.InvalidArgument("block volume %s is a directory", path)
	case err == nil && fi.Size() > 0:
		return nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("block volume %s: %w", path, err)
	}
	if size <= 0 {
		size = DefaultVolumeSize
	}
	if size < 8<<20 {
		return errdefs.InvalidArgument("block volume %s: size %d is below the 8MiB an ext4 filesystem needs", path, size)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create block volume: %w", err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("size block volume: %w", err)
	}
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		os.Remove(path)
		return errdefs.FailedPrecondition("mkfs.ext4 not found: install e2fsprogs")
	}
	out, err := exec.Command(mkfs, "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", path).CombinedOutput()
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("format block volume %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	// A new volume is empty, as Docker's are: programs that insist on an
	// empty data directory (initdb) would trip over lost+found, and an
	// image's content is copied only into an empty volume. e2fsck
	// recreates it should it ever need one.
	if out, err := exec.Command("debugfs", "-w", "-R", "rmdir lost+found", path).CombinedOutput(); err != nil {
		os.Remove(path)
		return fmt.Errorf("empty block volume %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// InUse reports whether a process (a QEMU with the disk attached
// read-write) holds a lock on the file. QEMU locks the images it opens
// for writing, so a disk another VM writes is never touched here.
func InUse(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false, fmt.Errorf("test the locks of %s: %w", path, err)
	}
	return lk.Type != unix.F_UNLCK, nil
}

// ReplayJournal brings a block volume's ext4 journal up to date on the
// host. A VM that died holding the volume leaves its journal to replay,
// which the guest cannot do on a read-only disk: the mount would fail.
// What the journal holds was synced by the container, so it must not be
// skipped either.
func ReplayJournal(path string) error {
	fsck, err := exec.LookPath("e2fsck")
	if err != nil {
		return errdefs.FailedPrecondition("e2fsck not found: install e2fsprogs")
	}
	out, err := exec.Command(fsck, "-p", "-E", "journal_only", path).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return nil // errors corrected: the journal was replayed
	}
	if err != nil {
		return fmt.Errorf("replay the journal of %s: %w: %s", path, err, bytes.TrimSpace(out))
	}
	return nil
}
