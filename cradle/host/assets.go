package host

import (
	"os"
	"os/exec"
	"path/filepath"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Assets are the files every VM boots from.
type Assets struct {
	Kernel string // uncompressed vmlinux (PVH ELF)
	Initrd string // initramfs holding hearth-init as /init
	QEMU   string // path of qemu-system-x86_64
}

// FindAssets locates the kernel and initramfs: the environment variables
// HEARTH_KERNEL and HEARTH_INITRD when set, else vmlinux and initrd.cpio
// beside the running binary (where `make build` and `make kernel` put
// them). It also finds QEMU on PATH.
func FindAssets() (Assets, error) {
	var a Assets
	dir := ""
	if exe, err := os.Executable(); err == nil {
		dir = filepath.Dir(exe)
	}
	a.Kernel = envOr("HEARTH_KERNEL", filepath.Join(dir, "vmlinux"))
	a.Initrd = envOr("HEARTH_INITRD", filepath.Join(dir, "initrd.cpio"))
	if _, err := os.Stat(a.Kernel); err != nil {
		return a, errdefs.FailedPrecondition("guest kernel not found at %s: build it with `make kernel`", a.Kernel)
	}
	if _, err := os.Stat(a.Initrd); err != nil {
		return a, errdefs.FailedPrecondition("guest init not found at %s: build it with `make build`", a.Initrd)
	}
	name := envOr("HEARTH_QEMU", QEMUBinary)
	q, err := exec.LookPath(name)
	if err != nil {
		return a, errdefs.FailedPrecondition("%s not found: install qemu-system-x86 (`apt-get install qemu-system-x86`, or `make run`)", name)
	}
	a.QEMU = q
	return a, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
