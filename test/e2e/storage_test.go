//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBindMounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rw, ro := filepath.Join(dir, "rw"), filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o755)
	os.WriteFile(filepath.Join(ro, "given"), []byte("from host\n"), 0o644)
	// rw does not exist yet: like Docker, it is created.
	r := runPod(t, "-v", rw+":/out", "-v", ro+":/in:ro", img.busybox, "sh", "-c",
		"cat /in/given; echo written > /out/file; sync /out/file; touch /in/x 2>&1; mkdir /out/sub && echo deep > /out/sub/f")
	if r.code != 0 || !strings.Contains(r.stdout, "from host") || !strings.Contains(r.stdout, "Read-only file system") {
		t.Fatalf("bind mounts: %s", r)
	}
	for p, want := range map[string]string{"rw/file": "written\n", "rw/sub/f": "deep\n"} {
		if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != want {
			t.Fatalf("host sees %s = %q, %v", p, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(ro, "x")); err == nil {
		t.Fatal("a read-only mount was written")
	}
}

func TestBlockVolume(t *testing.T) {
	t.Parallel()
	vol := filepath.Join(t.TempDir(), "vol.img")
	mount := "type=block,source=" + vol + ",target=/data,size=64m"
	r := runPod(t, "--mount", mount, img.busybox, "sh", "-c", "echo persisted > /data/f && sync /data/f && df -k /data | tail -1")
	if r.code != 0 {
		t.Fatal(r)
	}
	fi, err := os.Stat(vol)
	if err != nil || fi.Size() != 64<<20 {
		t.Fatalf("volume file: %v %v", fi, err)
	}
	if out, err := exec.Command("dumpe2fs", "-h", vol).CombinedOutput(); err != nil || !strings.Contains(string(out), "clean") {
		t.Fatalf("volume is not a clean ext4 filesystem after the pod: %v\n%s", err, out)
	}
	// The data is there for the next pod, also read-only.
	r = runPod(t, "--mount", "type=block,source="+vol+",target=/data,readonly", img.busybox, "sh", "-c", "cat /data/f; touch /data/g 2>&1")
	if !strings.Contains(r.stdout, "persisted") || !strings.Contains(r.stdout, "Read-only file system") {
		t.Fatalf("second pod: %s", r)
	}
	// Writing past the size gives ENOSPC, not corruption.
	r = runPod(t, "--mount", mount, img.busybox, "sh", "-c", "dd if=/dev/zero of=/data/big bs=1M count=100 2>&1; rm /data/big; cat /data/f")
	if !strings.Contains(r.stdout, "No space left on device") || !strings.Contains(r.stdout, "persisted") {
		t.Fatalf("full volume: %s", r)
	}
	if out, err := exec.Command("e2fsck", "-fn", vol).CombinedOutput(); err != nil {
		t.Fatalf("fsck after filling the volume: %v\n%s", err, out)
	}
}

func TestCopyAndStats(t *testing.T) {
	t.Parallel()
	id := startPod(t, img.busybox, "sh", "-c", "mkdir -p /srv/d/sub && echo inner > /srv/d/sub/f && ln -s sub/f /srv/d/link && echo ready && sleep 600")
	waitLog(t, id, "ready")
	dir := t.TempDir()
	// Out of the pod: a directory under a new name, a file into a directory.
	must(t, "cradle", "cp", id+":/srv/d", filepath.Join(dir, "copy"))
	if b, _ := os.ReadFile(filepath.Join(dir, "copy", "sub", "f")); string(b) != "inner\n" {
		t.Fatalf("copied directory: %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "copy", "link")); l != "sub/f" {
		t.Fatalf("symlink copied as %q", l)
	}
	must(t, "cradle", "cp", id+":/srv/d/sub/f", dir)
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "inner\n" {
		t.Fatalf("copied file: %q", b)
	}
	// Into the pod: a directory into a directory, a file under a new name,
	// owner and mode kept.
	os.MkdirAll(filepath.Join(dir, "up"), 0o755)
	os.WriteFile(filepath.Join(dir, "up", "x.sh"), []byte("#!/bin/sh\necho ran-x\n"), 0o750)
	os.Chown(filepath.Join(dir, "up", "x.sh"), 1000, 50)
	must(t, "cradle", "cp", filepath.Join(dir, "up"), id+":/srv")
	must(t, "cradle", "cp", filepath.Join(dir, "f"), id+":/srv/renamed")
	r := hearth(t, "cradle", "exec", id, "sh", "-c", "/srv/up/x.sh; stat -c '%u:%g %a' /srv/up/x.sh; cat /srv/renamed")
	if r.stdout != "ran-x\n1000:50 750\ninner\n" {
		t.Fatalf("copied in: %s", r)
	}
	// Bad input.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"cradle", "cp", id + ":/nonexistent", dir}, "Could not find the file /nonexistent"},
		{[]string{"cradle", "cp", filepath.Join(dir, "f"), id + ":/nonexistent/dir/x"}, "Could not find the file /nonexistent/dir"},
		{[]string{"cradle", "cp", filepath.Join(dir, "nope"), id + ":/srv"}, "no such file or directory"},
		{[]string{"cradle", "cp", dir, filepath.Join(dir, "x")}, "must be POD:PATH"},
		{[]string{"cradle", "cp", "nosuchpod:/x", dir}, "no such pod"},
	} {
		if r := hearth(t, c.args...); r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("cp %v: want %q, got %s", c.args, c.want, r)
		}
	}

	out := must(t, "cradle", "stats", id)
	if !strings.Contains(out, "main") || !strings.Contains(out, "/ 512MiB") {
		t.Fatalf("stats:\n%s", out)
	}
}
