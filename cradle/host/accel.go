package host

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/cradle/guest"
	"github.com/hearth-cloud/hearth/internal/atomicfile"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// ResolveAccel turns "auto", "kvm" or "tcg" into the accelerator to use.
//
// A /dev/kvm that opens is not proof that KVM runs guests: nested
// paravirtual KVM (the kvm_pvm module) opens fine and then cannot boot our
// kernel. So auto rules kvm_pvm out, and otherwise boots a probe VM under
// KVM once and caches the answer in cacheDir, keyed by the host kernel,
// QEMU and the guest kernel.
func ResolveAccel(ctx context.Context, want string, a Assets, cacheDir string) (string, error) {
	switch want {
	case AccelTCG:
		return AccelTCG, nil
	case AccelKVM:
		if err := kvmUsable(); err != nil {
			return "", err
		}
		return AccelKVM, nil
	case "", "auto":
	default:
		return "", errdefs.InvalidArgument("invalid accelerator %q: want auto, kvm or tcg", want)
	}
	if kvmUsable() != nil {
		return AccelTCG, nil
	}
	key := probeKey(a)
	cache := filepath.Join(cacheDir, "accel.json")
	var c struct{ Key, Accel string }
	if b, err := os.ReadFile(cache); err == nil && json.Unmarshal(b, &c) == nil && c.Key == key {
		return c.Accel, nil
	}
	accel := AccelTCG
	if probeKVM(ctx, a) == nil {
		accel = AccelKVM
	}
	c.Key, c.Accel = key, accel
	if b, err := json.Marshal(c); err == nil {
		os.MkdirAll(cacheDir, 0o755)
		atomicfile.WriteFile(cache, b, 0o644)
	}
	return accel, nil
}

// kvmUsable rules out hosts where KVM cannot run our guests.
func kvmUsable() error {
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return errdefs.FailedPrecondition("kvm: this host's KVM is paravirtual (kvm_pvm) and cannot run cradle guests; use --accel tcg")
	}
	if err := unix.Access("/dev/kvm", unix.R_OK|unix.W_OK); err != nil {
		return errdefs.FailedPrecondition("kvm: /dev/kvm is not usable: %v", err)
	}
	return nil
}

func probeKey(a Assets) string {
	var uts unix.Utsname
	unix.Uname(&uts)
	stamp := func(p string) string {
		fi, err := os.Stat(p)
		if err != nil {
			return p
		}
		return fmt.Sprintf("%s:%d:%d", p, fi.Size(), fi.ModTime().UnixNano())
	}
	return fmt.Sprintf("%s|%s|%s|%s", unix.ByteSliceToString(uts.Release[:]), stamp(a.QEMU), stamp(a.Kernel), stamp(a.Initrd))
}

// probeKVM boots the guest kernel under KVM and waits for init's probe
// power-off.
func probeKVM(ctx context.Context, a Assets) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cfg := VMConfig{Name: "hearth-probe", Accel: AccelKVM, CPUs: 1, MemoryMiB: 128, Kernel: a.Kernel, Initrd: a.Initrd, Cmdline: guest.ProbeEnv + "=1"}
	args, err := cfg.Args()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, a.QEMU, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kvm probe: %w: %s", err, out)
	}
	return nil
}
