//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestRunStdioAndExitCode(t *testing.T) {
	t.Parallel()
	r := runPod(t, img.busybox, "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 42")
	if r.code != 42 {
		t.Fatalf("exit code: %s", r)
	}
	if r.stdout != "to-stdout\n" || r.stderr != "to-stderr\n" {
		t.Fatalf("stdout and stderr not kept apart: %s", r)
	}
}

func TestRunGuestKernel(t *testing.T) {
	t.Parallel()
	var uts unix.Utsname
	unix.Uname(&uts)
	hostRelease := unix.ByteSliceToString(uts.Release[:])
	r := runPod(t, img.busybox, "uname", "-r")
	got := strings.TrimSpace(r.stdout)
	if r.code != 0 || got == "" || got == hostRelease {
		t.Fatalf("uname -r in the pod = %q (host %q): %s", got, hostRelease, r)
	}
	rel, err := os.ReadFile(filepath.Join(repo, "bin", "vmlinux"))
	if err != nil || !strings.Contains(string(rel), got) {
		t.Fatalf("uname -r = %q is not the release of bin/vmlinux", got)
	}
}

func TestRunImageConfig(t *testing.T) {
	t.Parallel()
	// Entrypoint, Cmd, Env, WorkingDir and User all come from the image.
	r := runPod(t, img.config)
	if r.code != 0 || r.stdout != "hello from /srv/app as alice:alice\n" {
		t.Fatalf("image config not honoured: %s", r)
	}
	// Arguments replace Cmd and keep the Entrypoint.
	r = runPod(t, img.config, "echo args $GREETING")
	if r.stdout != "args hello\n" {
		t.Fatalf("args with entrypoint: %s", r)
	}
	// --entrypoint replaces it (and the image's Cmd).
	r = runPod(t, "--entrypoint", "/bin/pwd", img.config)
	if r.stdout != "/srv/app\n" {
		t.Fatalf("--entrypoint: %s", r)
	}
}

func TestRunFlags(t *testing.T) {
	t.Parallel()
	envFile := filepath.Join(t.TempDir(), "env")
	os.WriteFile(envFile, []byte("# comment\nFROM_FILE=file value\n\nOVERRIDDEN=file\nHOSTVAR\n"), 0o644)
	r := hearthWith(t, cmdOpts{env: []string{"HOSTVAR=from-host"}}, "cradle", "run",
		"--env-file", envFile, "-e", "A=1", "-e", "OVERRIDDEN=flag", "-e", "HOSTVAR",
		"-w", "/work/dir", "-u", "1001:50", "--hostname", "podhost", "--cpus", "2", "--memory", "256m", "--name", "flags",
		img.busybox, "sh", "-c",
		`echo "$A|$FROM_FILE|$OVERRIDDEN|$HOSTVAR|$(pwd)|$(id -u):$(id -g)|$(hostname)|$HOSTNAME|$(nproc)"; grep MemTotal /proc/meminfo`)
	if r.code != 0 {
		t.Fatal(r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	want := "1|file value|flag|from-host|/work/dir|1001:50|podhost|podhost|2"
	if len(lines) != 2 || lines[0] != want {
		t.Fatalf("got %q, want %q", lines, want)
	}
	var kb int
	if f := strings.Fields(lines[1]); len(f) >= 2 {
		kb = atoi(f[1])
	}
	if kb < 180*1024 || kb > 256*1024 {
		t.Fatalf("MemTotal %d kB for --memory 256m", kb)
	}

	// A user by name gets its primary and supplementary groups; with an
	// explicit group there are no supplementary groups (as runc does).
	r = runPod(t, "-u", "bob", img.busybox, "id")
	if r.stdout != "uid=1001(bob) gid=1001(bob) groups=50(staff)\n" {
		t.Fatalf("-u bob: %s", r)
	}
	r = runPod(t, "-u", "alice:staff", img.busybox, "id")
	if r.stdout != "uid=1000(alice) gid=50(staff)\n" {
		t.Fatalf("-u alice:staff: %s", r)
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	r := runPod(t, img.busybox, "no-such-command")
	if r.code != 127 || !strings.Contains(r.stderr, `"no-such-command": executable file not found in $PATH`) {
		t.Fatalf("missing command: %s", r)
	}
	r = runPod(t, img.noexec, "/bin/notexec")
	if r.code != 126 || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("not executable: %s", r)
	}
	// The shell's child killed by SIGKILL: the shell passes on 128+9.
	r = runPod(t, img.busybox, "sh", "-c", "sleep 600 & kill -KILL $!; wait $!")
	if r.code != 137 {
		t.Fatalf("killed by SIGKILL: %s", r)
	}
}

func TestRunStdin(t *testing.T) {
	t.Parallel()
	r := hearthWith(t, cmdOpts{stdin: strings.NewReader("line one\nline two\n")}, "cradle", "run", "-i", img.busybox, "sh", "-c", "wc -l; echo done")
	if r.code != 0 || r.stdout != "2\ndone\n" {
		t.Fatalf("-i: %s", r)
	}
	// Without -i the container's stdin is empty.
	r = hearthWith(t, cmdOpts{stdin: strings.NewReader("ignored\n")}, "cradle", "run", img.busybox, "sh", "-c", "cat; echo end")
	if r.code != 0 || r.stdout != "end\n" {
		t.Fatalf("without -i: %s", r)
	}
	// Large input arrives whole.
	big := strings.Repeat("0123456789abcdef", 1<<16)
	r = hearthWith(t, cmdOpts{stdin: strings.NewReader(big)}, "cradle", "run", "-i", img.busybox, "wc", "-c")
	if strings.TrimSpace(r.stdout) != "1048576" {
		t.Fatalf("1 MiB of stdin: %s", r)
	}
}

func TestRunLayers(t *testing.T) {
	t.Parallel()
	// OCI whiteouts: deleted file and directory, opaque directory; owner,
	// mode and hard links kept.
	r := runPod(t, img.layered, "sh", "-c",
		"ls /data; ls /gone /gonedir 2>&1; cat /keep; ls /keepdir; stat -c '%u:%g %a %h' /keepdir/b")
	want := "new\nls: /gone: No such file or directory\nls: /gonedir: No such file or directory\nkeep\na\nb\nhard\n1000:50 600 2\n"
	if r.code != 0 || r.stdout != want {
		t.Fatalf("layers: %s\nwant %q", r, want)
	}
	// The lower image alone still has what the upper layer removed.
	r = runPod(t, img.layeredBase, "sh", "-c", "ls /data; cat /gone")
	if r.stdout != "old1\nold2\ngone" {
		t.Fatalf("base image: %s", r)
	}

	// Each layer is prepared once: both images share the base layers, and
	// a second start unpacks nothing.
	files, _ := filepath.Glob(filepath.Join(dataDir, "layers", "sha256", "*.erofs"))
	stamp := map[string]int64{}
	for _, f := range files {
		fi, _ := os.Stat(f)
		stamp[f] = fi.ModTime().UnixNano()
	}
	runPod(t, img.layered, "true")
	after, _ := filepath.Glob(filepath.Join(dataDir, "layers", "sha256", "*.erofs"))
	for _, f := range after {
		fi, _ := os.Stat(f)
		if old, ok := stamp[f]; ok && old != fi.ModTime().UnixNano() {
			t.Errorf("layer %s was prepared again", filepath.Base(f))
		}
	}
	tmp, _ := filepath.Glob(filepath.Join(dataDir, "layers", "sha256", "*.tmp*"))
	if len(tmp) > 0 {
		t.Errorf("layer cache left temporary files: %v", tmp)
	}
}

func TestRunOCILayout(t *testing.T) {
	t.Parallel()
	// The layout holds an arm64 and an amd64 image; the amd64 one runs.
	r := runPod(t, img.oci, "uname", "-m")
	if r.code != 0 || r.stdout != "x86_64\n" {
		t.Fatalf("OCI layout: %s", r)
	}
}

func TestRunReadOnlyRootfs(t *testing.T) {
	t.Parallel()
	r := runPod(t, "--read-only", "--tmpfs", "/scratch", img.busybox, "sh", "-c", "touch /x 2>&1; touch /scratch/y && echo scratch-ok")
	if !strings.Contains(r.stdout, "Read-only file system") || !strings.Contains(r.stdout, "scratch-ok") {
		t.Fatalf("--read-only: %s", r)
	}
}

func TestRunTmpfsCountsAgainstMemory(t *testing.T) {
	t.Parallel()
	r := runPod(t, "--tmpfs", "/t:size=8m", img.busybox, "sh", "-c", "dd if=/dev/zero of=/t/f bs=1M count=16 2>&1; df -k /t | tail -1")
	if !strings.Contains(r.stdout, "No space left on device") || !strings.Contains(r.stdout, "8192") {
		t.Fatalf("tmpfs size: %s", r)
	}
}
