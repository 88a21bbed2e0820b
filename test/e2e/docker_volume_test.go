//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

// TestDockerVolumes: named, anonymous and shared volumes, binds and
// tmpfs with the docker CLI; their data through container removal, a
// restart of hearth and a SIGKILL of QEMU; size limits, read-only
// mounts, the one-writer rule and Docker's errors.
func TestDockerVolumes(t *testing.T) {
	t.Parallel()
	d := newDockerEnv(t)
	d.n.must("image", "load", "-q", "-i", img.volume)
	const volImg = "hearth.test/volume:latest"
	volDir := filepath.Join(d.n.Data, "volumes", "admin")

	// Create, list, inspect; creating again answers with the same.
	d.ok(t, "volume", "create", "--label", "app=db", "data")
	d.ok(t, "volume", "create", "data")
	if out := d.ok(t, "volume", "ls", "--format", "{{.Name}} {{.Driver}}"); out != "data local\n" {
		t.Errorf("volume ls: %q", out)
	}
	if out := d.ok(t, "volume", "inspect", "data", "--format", "{{.Labels.app}} {{.Scope}} {{.Status.Type}} {{.Status.SharedWriters}}"); out != "db local disk false\n" {
		t.Errorf("volume inspect: %q", out)
	}
	if out := d.ok(t, "volume", "ls", "-q", "--filter", "label=app=db"); out != "data\n" {
		t.Errorf("volume ls --filter label: %q", out)
	}

	// Bad input, with Docker's messages.
	d.fails(t, 1, `"bad@name" includes invalid characters for a local volume name`, "volume", "create", "bad@name")
	d.fails(t, 1, `invalid size: "lots"`, "volume", "create", "--opt", "size=lots", "v2")
	d.fails(t, 1, `invalid option: "foo"`, "volume", "create", "--opt", "foo=1", "v2")
	d.fails(t, 1, `plugin "nfs" not found`, "volume", "create", "--driver", "nfs", "v2")
	d.fails(t, 1, "get nosuch: no such volume", "volume", "inspect", "nosuch")
	d.fails(t, 1, "get nosuch: no such volume", "volume", "rm", "nosuch")
	d.ok(t, "volume", "rm", "-f", "nosuch")
	d.fails(t, 125, "mount path must be absolute", "run", "--rm", "-v", "data:rel", dockerImg, "true")
	d.fails(t, 125, "includes invalid characters for a local volume name", "run", "--rm", "-v", "no@pe:/d", dockerImg, "true")
	code, body, _ := d.api(t, "POST", "/volumes/create", `{"Name":`)
	apiError(t, "malformed JSON", code, body, http.StatusBadRequest, "invalid JSON")
	if out := d.ok(t, "volume", "ls", "-q"); out != "data\n" {
		t.Errorf("bad input left volumes: %q", out)
	}

	// Data outlives its container; :ro is enforced.
	d.ok(t, "run", "--rm", "-v", "data:/d", dockerImg, "sh", "-c", "echo one > /d/f")
	if out := d.ok(t, "run", "--rm", "-v", "data:/d", dockerImg, "cat", "/d/f"); out != "one\n" {
		t.Errorf("read back: %q", out)
	}
	d.fails(t, 1, "Read-only file system", "run", "--rm", "-v", "data:/d:ro", dockerImg, "sh", "-c", "cat /d/f && echo x > /d/g")
	// One volume on two paths of a container is one disk.
	if out := d.ok(t, "run", "--rm", "-v", "data:/a", "-v", "data:/b:ro", dockerImg, "sh", "-c", "echo two > /a/t && cat /b/t && rm /a/t"); out != "two\n" {
		t.Errorf("a volume on two paths: %q", out)
	}
	d.fails(t, 1, "Read-only file system", "run", "--rm", "--mount", "type=volume,src=data,dst=/d,readonly", dockerImg, "touch", "/d/g")

	// A new named volume takes the image's content, owners and modes
	// kept; volume-nocopy leaves it empty. An image's VOLUME gets an
	// anonymous volume, filled too, that rm -v removes.
	if out := d.ok(t, "run", "--rm", "-v", "fresh:/var/lib/db", volImg, "sh", "-c", "stat -c '%u:%g %a' /var/lib/db /var/lib/db/seed; cat /var/lib/db/seed"); out != "1000:1000 750\n1000:1000 640\nseeded\n" {
		t.Errorf("image content in a new volume: %q", out)
	}
	if out := d.ok(t, "run", "--rm", "--mount", "type=volume,src=empty,dst=/var/lib/db,volume-nocopy", volImg, "ls", "-A", "/var/lib/db"); out != "" {
		t.Errorf("volume-nocopy: %q, want an empty volume", out)
	}
	d.ok(t, "run", "--name", "anon", volImg, "sh", "-c", "cat /var/lib/db/seed > /var/lib/db/copy")
	mounts := d.inspect(t, "anon").Mounts
	if len(mounts) != 1 || mounts[0].Type != "volume" || !hex64.MatchString(mounts[0].Name) || mounts[0].Destination != "/var/lib/db" || !mounts[0].RW {
		t.Fatalf("inspect Mounts of an image volume: %+v", mounts)
	}
	anonVol := mounts[0].Name
	if !strings.HasPrefix(mounts[0].Source, volDir) {
		t.Errorf("mount source %s is not under %s", mounts[0].Source, volDir)
	}
	if out := d.ok(t, "volume", "ls", "-q", "--filter", "dangling=false"); out != anonVol+"\n" {
		t.Errorf("volume ls dangling=false: %q, want the anonymous volume", out)
	}
	d.ok(t, "rm", "-v", "anon")
	d.fails(t, 1, "no such volume", "volume", "inspect", anonVol)
	// --rm takes its anonymous volumes along; -v /path makes one too.
	d.ok(t, "run", "--rm", "-v", "/scratch", volImg, "touch", "/scratch/x")
	if out := d.ok(t, "volume", "ls", "-q"); out != "data\nempty\nfresh\n" {
		t.Errorf("after --rm containers: volumes %q", out)
	}

	// tmpfs is memory in the VM, bounded.
	if out := d.ok(t, "run", "--rm", "--tmpfs", "/t:size=4m", dockerImg, "sh", "-c", "grep ' /t ' /proc/mounts | cut -d' ' -f1,3; dd if=/dev/zero of=/t/z bs=1M count=8 2>&1 | grep -o 'No space left on device'"); !strings.HasPrefix(out, "tmpfs tmpfs\n") || !strings.Contains(out, "No space left on device") {
		t.Errorf("tmpfs: %q", out)
	}

	// A full volume is ENOSPC in the container, and stays usable.
	d.ok(t, "volume", "create", "--opt", "size=32m", "small")
	r := d.docker(t, "run", "--rm", "-v", "small:/s", dockerImg, "dd", "if=/dev/zero", "of=/s/big", "bs=1M", "count=64")
	if r.code == 0 || !strings.Contains(r.stderr, "No space left on device") {
		t.Errorf("writing past the size: %s", r)
	}
	if out := d.ok(t, "run", "--rm", "-v", "small:/s", dockerImg, "sh", "-c", "rm /s/big && echo fine > /s/f && cat /s/f"); out != "fine\n" {
		t.Errorf("a full volume after rm: %q", out)
	}

	// One writer at a time on a disk volume; a volume in use is not
	// removed.
	d.ok(t, "run", "-d", "--name", "holder", "-v", "data:/d", dockerImg, "sleep", "1000")
	d.fails(t, 125, "volume data is in use by container holder", "run", "--rm", "-v", "data:/d:ro", dockerImg, "true")
	if out := d.ok(t, "ps", "-a", "-q"); len(strings.Fields(out)) != 1 {
		t.Errorf("a --rm container that could not start is left: %q", out)
	}
	d.fails(t, 1, "volume is in use", "volume", "rm", "data")
	code, body, _ = d.api(t, "DELETE", "/volumes/data", "")
	apiError(t, "rm of a volume in use", code, body, http.StatusConflict, "remove data: volume is in use")

	// A shared volume takes several writers, and says so.
	d.ok(t, "volume", "create", "--opt", "shared=true", "shared")
	if out := d.ok(t, "volume", "inspect", "shared", "--format", "{{.Status.SharedWriters}}"); out != "true\n" {
		t.Errorf("shared volume: %q", out)
	}
	d.ok(t, "run", "-d", "--name", "sw", "-v", "shared:/s", dockerImg, "sh", "-c", "echo a > /s/a; sleep 1000")
	if out := d.ok(t, "run", "--rm", "-v", "shared:/s", dockerImg, "sh", "-c", "until [ -f /s/a ]; do sleep 0.2; done; cat /s/a; echo b > /s/b"); out != "a\n" {
		t.Errorf("second writer of a shared volume: %q", out)
	}
	if out := d.ok(t, "exec", "sw", "cat", "/s/b"); out != "b\n" {
		t.Errorf("first writer sees the second's write: %q", out)
	}

	// A bind mount from the admin socket.
	host := t.TempDir()
	d.ok(t, "run", "--rm", "-v", host+":/b", dockerImg, "sh", "-c", "echo bound > /b/x")
	if b, err := os.ReadFile(filepath.Join(host, "x")); err != nil || string(b) != "bound\n" {
		t.Errorf("bind mount: %q %v", b, err)
	}
	// A single file, as compose files bind configuration: read-only, and
	// written through.
	if r := d.docker(t, "run", "--rm", "-v", filepath.Join(host, "x")+":/etc/app.conf:ro", dockerImg, "sh", "-c", "cat /etc/app.conf; ls /etc | grep -c '^x$'; echo no > /etc/app.conf"); r.stdout != "bound\n0\n" || !strings.Contains(r.stderr, "Read-only file system") {
		t.Errorf("a read-only single-file bind: %s", r)
	}
	d.ok(t, "run", "--rm", "-v", filepath.Join(host, "x")+":/conf", dockerImg, "sh", "-c", "echo rewritten > /conf")
	if b, _ := os.ReadFile(filepath.Join(host, "x")); string(b) != "rewritten\n" {
		t.Errorf("a write to a single-file bind: %q", b)
	}

	// hearth is killed and restarts: the holder runs on, its volume
	// mounted, what it wrote there.
	d.ok(t, "exec", "holder", "sh", "-c", "echo kept > /d/k")
	d.n.Kill()
	d.n.start()
	if out := d.ok(t, "exec", "holder", "cat", "/d/f", "/d/k"); out != "one\nkept\n" {
		t.Errorf("after a restart of hearth: %q", out)
	}

	// What a container synced survives a SIGKILL of its QEMU.
	d.ok(t, "exec", "holder", "sh", "-c", "echo synced > /d/s && sync /d/s")
	sandbox := d.inspect(t, "holder").NetworkSettings.SandboxID
	killed := false
	for _, pid := range qemuUnder(d.n.Run) {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); strings.Contains(string(b), sandbox) {
			killed = syscall.Kill(pid, syscall.SIGKILL) == nil
		}
	}
	if !killed {
		t.Fatalf("no QEMU of the holder (%s) to kill", sandbox)
	}
	d.waitStatus(t, "holder", container.StateExited)
	if out := d.ok(t, "run", "--rm", "-v", "data:/d:ro", dockerImg, "cat", "/d/s", "/d/f"); out != "synced\none\n" {
		t.Errorf("after SIGKILL of QEMU: %q", out)
	}

	// system df counts volumes and their users.
	var df struct {
		Volumes []struct {
			Name      string
			UsageData struct{ Size, RefCount int64 }
		}
	}
	code, body, _ = d.api(t, "GET", "/system/df", "")
	if err := json.Unmarshal(body, &df); code != http.StatusOK || err != nil {
		t.Fatalf("system df: %d %v %s", code, err, body)
	}
	for _, v := range df.Volumes {
		if v.Name == "data" && (v.UsageData.RefCount != 1 || v.UsageData.Size <= 0) {
			t.Errorf("system df of data: %+v", v.UsageData)
		}
	}

	// prune: only anonymous volumes unless -a; never one in use.
	d.ok(t, "create", "--name", "keeper", "-v", "/anon2", "-v", "fresh:/f", dockerImg, "true")
	d.ok(t, "rm", "keeper")
	if out := d.ok(t, "volume", "prune", "-f"); !strings.Contains(out, "Deleted Volumes") || len(strings.Fields(d.ok(t, "volume", "ls", "-q"))) != 5 {
		t.Errorf("volume prune: %q, left %q", out, d.ok(t, "volume", "ls", "-q"))
	}
	d.ok(t, "volume", "prune", "-af")
	if out := d.ok(t, "volume", "ls", "-q"); out != "data\nshared\n" {
		t.Errorf("after prune -a, with data and shared in use: %q", out)
	}
	d.ok(t, "rm", "-f", "holder", "sw")
	d.ok(t, "volume", "rm", "data", "shared")
	if out := d.ok(t, "volume", "ls", "-q"); out != "" {
		t.Errorf("volumes left: %q", out)
	}
	eventually(t, 30*time.Second, "the volumes' files to go", func() bool {
		ents, _ := os.ReadDir(volDir)
		return len(ents) == 0
	})
	d.assertNothingLeft(t, "volumes")
}
