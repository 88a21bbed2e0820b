//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInput: each gets a clear one-line error, a non-zero exit, and
// leaves nothing running or half-written.
func TestBadInput(t *testing.T) {
	badEnv := filepath.Join(t.TempDir(), "env")
	os.WriteFile(badEnv, []byte("BAD KEY=1\n"), 0o644)
	cases := []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"missing image", nil, []string{"cradle", "run", "/nonexistent/image.tar", "true"}, 125, "no such file or directory"},
		{"corrupt tarball", nil, []string{"cradle", "run", img.corrupt, "true"}, 125, "not a docker-archive tarball"},
		{"not a tarball", nil, []string{"cradle", "run", img.garbage, "true"}, 125, "not a docker-archive tarball"},
		{"not an image dir", nil, []string{"cradle", "run", "/tmp", "true"}, 125, "not an OCI image layout"},
		{"other architecture", nil, []string{"cradle", "run", img.arm64, "true"}, 125, "image is for linux/arm64"},
		{"unknown user", nil, []string{"cradle", "run", "-u", "nobody2", img.busybox, "true"}, 126, "unable to find user nobody2"},
		{"unknown group", nil, []string{"cradle", "run", "-u", "alice:nogroup2", img.busybox, "true"}, 126, "unable to find group nogroup2"},
		{"missing command", nil, []string{"cradle", "run", img.busybox, "nosuchcmd"}, 127, "executable file not found"},
		{"invalid memory", nil, []string{"cradle", "run", "-m", "12zz", img.busybox, "true"}, 125, "invalid memory size"},
		{"too little memory", nil, []string{"cradle", "run", "-m", "1m", img.busybox, "true"}, 125, "minimum"},
		{"invalid cpus", nil, []string{"cradle", "run", "--cpus", "abc", img.busybox, "true"}, 125, "rational number"},
		{"zero cpus", nil, []string{"cradle", "run", "--cpus", "0", img.busybox, "true"}, 125, "range of CPUs"},
		{"too many cpus", nil, []string{"cradle", "run", "--cpus", "999", img.busybox, "true"}, 125, "range of CPUs"},
		{"relative volume", nil, []string{"cradle", "run", "-v", "data:/data", img.busybox, "true"}, 125, "absolute"},
		{"volume mode", nil, []string{"cradle", "run", "-v", "/tmp:/data:rx", img.busybox, "true"}, 125, "invalid mode"},
		{"mount type", nil, []string{"cradle", "run", "--mount", "type=nfs,source=/a,target=/b", img.busybox, "true"}, 125, "unknown type"},
		{"mount size", nil, []string{"cradle", "run", "--mount", "type=block,source=/tmp/x.img,target=/b,size=lots", img.busybox, "true"}, 125, "invalid size"},
		{"env file", nil, []string{"cradle", "run", "--env-file", badEnv, img.busybox, "true"}, 125, "contains whitespaces"},
		{"bad name", nil, []string{"cradle", "run", "--name", "no/slash", img.busybox, "true"}, 125, "invalid pod name"},
		{"bad accel", nil, []string{"cradle", "run", "--accel", "warp", img.busybox, "true"}, 125, "invalid accelerator"},
		{"kernel not built", []string{"HEARTH_KERNEL=/nonexistent/vmlinux"}, []string{"cradle", "run", img.busybox, "true"}, 125, "make kernel"},
		{"qemu missing", []string{"HEARTH_QEMU=/nonexistent/qemu-system-x86_64"}, []string{"cradle", "run", img.busybox, "true"}, 125, "qemu-system-x86"},
		{"unknown flag", nil, []string{"cradle", "run", "--bogus", img.busybox}, 125, "unknown flag"},
		{"no image", nil, []string{"cradle", "run"}, 125, "requires at least 1 arg"},
		{"exec unknown pod", nil, []string{"cradle", "exec", "nosuchpod", "true"}, 1, "no such pod: nosuchpod"},
		{"stop unknown pod", nil, []string{"cradle", "stop", "nosuchpod"}, 1, "no such pod"},
		{"logs unknown pod", nil, []string{"cradle", "logs", "nosuchpod"}, 1, "no such pod"},
		{"bad signal", nil, []string{"cradle", "kill", "-s", "SIGNOPE", "x"}, 1, "invalid signal"},
		{"launch bad file", nil, []string{"cradle", "launch", badEnv}, 125, "pod file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := hearthWith(t, cmdOpts{env: c.env}, c.args...)
			if r.code != c.code || !strings.Contains(r.stderr, c.want) {
				t.Fatalf("want exit %d and %q; got %s", c.code, c.want, r)
			}
			if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) > 2 {
				t.Errorf("error is not short:\n%s", r.stderr)
			}
		})
	}
	if left := podsLeft(t); len(left) != 0 {
		t.Fatalf("bad input left pods: %v", left)
	}
	if q := qemuOf(""); len(q) != 0 {
		t.Fatalf("bad input left QEMU running: %v", q)
	}
}

func TestNameConflict(t *testing.T) {
	t.Parallel()
	startPod(t, "--name", "taken", img.busybox, "sleep", "600")
	r := runPod(t, "--name", "taken", img.busybox, "true")
	if r.code != 125 || !strings.Contains(r.stderr, `"taken" is already in use`) {
		t.Fatalf("name conflict: %s", r)
	}
}
