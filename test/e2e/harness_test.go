//go:build e2e

// Package e2e drives the real hearth binary against real QEMU VMs (TCG
// where KVM cannot run guests), with images the tests build themselves.
// `make test` builds bin/ and the kernel first.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/hearth-cloud/hearth/internal/testimage"
)

var (
	repo    string
	hearthB string
	tmpRoot string
	dataDir string
	runDir  string
	img     struct {
		busybox, config, noexec, arm64, layered, layeredBase, hog, echo, oci, corrupt, garbage, volume, app string
	}
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repo = filepath.Join(filepath.Dir(file), "..", "..")
	hearthB = filepath.Join(repo, "bin", "hearth")
	for _, f := range []string{"hearth", "vmlinux", "initrd.cpio"} {
		if _, err := os.Stat(filepath.Join(repo, "bin", f)); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: bin/%s is missing: run `make build kernel` (or `make test`)\n", f)
			return 1
		}
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: cradle needs root (taps, bridges, mounts)")
		return 1
	}
	var err error
	// Short: unix socket paths live under it.
	if tmpRoot, err = os.MkdirTemp("/tmp", "he2e"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dataDir, runDir = filepath.Join(tmpRoot, "d"), filepath.Join(tmpRoot, "r")
	if err := buildImages(filepath.Join(tmpRoot, "img")); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build images:", err)
		return 1
	}
	code := m.Run()
	// Every test removes its pods, and foreground pods remove themselves:
	// anything left is a leak. Report it, then clean up.
	ids, _ := exec.Command(hearthB, "--data-dir", dataDir, "--run-dir", runDir, "cradle", "ls", "-q").Output()
	if len(strings.Fields(string(ids))) > 0 {
		out, _ := exec.Command(hearthB, "--data-dir", dataDir, "--run-dir", runDir, "cradle", "ls").Output()
		fmt.Fprintf(os.Stderr, "e2e: pods left behind:\n%s", out)
		code = 1
	}
	for _, id := range strings.Fields(string(ids)) {
		exec.Command(hearthB, "--data-dir", dataDir, "--run-dir", runDir, "cradle", "rm", "-f", id).Run()
	}
	if q := qemuOf(""); len(q) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: QEMU processes left behind: %v\n", q)
		code = 1
	}
	os.RemoveAll(tmpRoot)
	return code
}

func buildImages(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	save := func(name string, im v1.Image) (string, error) {
		p := filepath.Join(dir, name+".tar")
		return p, testimage.WriteDockerArchive(p, "hearth.test/"+name+":latest", im)
	}
	bb, err := testimage.Busybox()
	if err != nil {
		return err
	}
	if img.busybox, err = save("busybox", bb); err != nil {
		return err
	}

	// An image whose config sets everything cradle must honour.
	cfg := testimage.BusyboxConfig
	cfg.Entrypoint = []string{"/bin/sh", "-c"}
	cfg.Cmd = []string{`echo "$GREETING from $(pwd) as $(id -un):$(id -gn)"`}
	cfg.Env = append(cfg.Env, "GREETING=hello")
	cfg.WorkingDir = "/srv/app"
	cfg.User = "alice"
	files, _ := testimage.BusyboxFiles()
	base, err := testimage.Layer(files)
	if err != nil {
		return err
	}
	im, err := testimage.Image(cfg, base)
	if err != nil {
		return err
	}
	if img.config, err = save("config", im); err != nil {
		return err
	}

	// An image that declares a VOLUME with content an unprivileged user
	// owns, as database images do.
	dbFiles, _ := testimage.Layer([]testimage.File{
		{Path: "/var/lib/db", Dir: true, Mode: 0o750, UID: 1000, GID: 1000},
		{Path: "/var/lib/db/seed", Data: []byte("seeded\n"), Mode: 0o640, UID: 1000, GID: 1000},
	})
	vcfg := testimage.BusyboxConfig
	vcfg.Volumes = map[string]struct{}{"/var/lib/db": {}}
	if im, err = testimage.Image(vcfg, base, dbFiles); err != nil {
		return err
	}
	if img.volume, err = save("volume", im); err != nil {
		return err
	}

	app, err := testimage.App()
	if err != nil {
		return err
	}
	if img.app, err = save("app", app); err != nil {
		return err
	}

	noexec, _ := testimage.Layer([]testimage.File{{Path: "/bin/notexec", Mode: 0o644, Data: []byte("#!/bin/sh\necho no\n")}})
	if im, err = testimage.Busybox(noexec); err != nil {
		return err
	}
	if img.noexec, err = save("noexec", im); err != nil {
		return err
	}

	cf, _ := bb.ConfigFile()
	cf = cf.DeepCopy()
	cf.Architecture = "arm64"
	arm, err := mutate.ConfigFile(bb, cf)
	if err != nil {
		return err
	}
	if img.arm64, err = save("arm64", arm); err != nil {
		return err
	}

	// Layers with OCI whiteouts: the top layer deletes a file and a
	// directory of the one below, and makes a directory opaque.
	l1, _ := testimage.Layer([]testimage.File{
		{Path: "/data", Dir: true}, {Path: "/data/old1", Data: []byte("old1")}, {Path: "/data/old2", Data: []byte("old2")},
		{Path: "/gone", Data: []byte("gone")}, {Path: "/gonedir", Dir: true}, {Path: "/gonedir/f", Data: []byte("f")},
		{Path: "/keep", Data: []byte("keep\n")}, {Path: "/keepdir", Dir: true}, {Path: "/keepdir/a", Data: []byte("a")},
	})
	l2, _ := testimage.Layer([]testimage.File{
		{Path: "/data", Dir: true}, {Path: "/data/.wh..wh..opq"}, {Path: "/data/new", Data: []byte("new")},
		{Path: "/.wh.gone"}, {Path: "/.wh.gonedir"},
		{Path: "/keepdir/b", Data: []byte("b"), Mode: 0o600, UID: 1000, GID: 50},
		{Path: "/keepdir/hard", Hardlink: "/keepdir/b"},
	})
	if im, err = testimage.Busybox(l1); err != nil {
		return err
	}
	if img.layeredBase, err = save("layered-base", im); err != nil {
		return err
	}
	if im, err = testimage.Busybox(l1, l2); err != nil {
		return err
	}
	if img.layered, err = save("layered", im); err != nil {
		return err
	}

	hog, err := testimage.GoBinary(hogSrc)
	if err != nil {
		return err
	}
	hl, _ := testimage.Layer([]testimage.File{{Path: "/hog", Mode: 0o755, Data: hog}})
	if im, err = testimage.Busybox(hl); err != nil {
		return err
	}
	if img.hog, err = save("hog", im); err != nil {
		return err
	}

	if im, err = testimage.Echo(); err != nil {
		return err
	}
	if img.echo, err = save("echo", im); err != nil {
		return err
	}

	img.oci = filepath.Join(dir, "oci")
	lp, err := layout.Write(img.oci, empty.Index)
	if err != nil {
		return err
	}
	armDesc := v1.Platform{OS: "linux", Architecture: "arm64"}
	if err := lp.AppendImage(arm, layout.WithPlatform(armDesc)); err != nil {
		return err
	}
	if err := lp.AppendImage(bb, layout.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})); err != nil {
		return err
	}

	b, err := os.ReadFile(img.busybox)
	if err != nil {
		return err
	}
	img.corrupt = filepath.Join(dir, "corrupt.tar")
	if err := os.WriteFile(img.corrupt, b[:len(b)/2], 0o644); err != nil {
		return err
	}
	img.garbage = filepath.Join(dir, "garbage.tar")
	return os.WriteFile(img.garbage, bytes.Repeat([]byte("not a tarball\n"), 100), 0o644)
}

// hogSrc allocates and touches memory until the kernel kills it.
const hogSrc = `package main

import (
	"fmt"
	"os"
)

func main() {
	var keep [][]byte
	for i := 0; ; i++ {
		b := make([]byte, 16<<20)
		for j := range b {
			b[j] = byte(j)
		}
		keep = append(keep, b)
		if i%4 == 0 {
			fmt.Fprintf(os.Stderr, "%d MiB\n", (i+1)*16)
		}
	}
}
`

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %q\nstderr: %q", r.code, r.stdout, r.stderr)
}

// cmdOpts tune how hearth is run.
type cmdOpts struct {
	stdin io.Reader
	env   []string
}

// hearth runs the hearth binary with the suite's data and run dirs.
func hearth(t *testing.T, args ...string) result {
	t.Helper()
	return hearthWith(t, cmdOpts{}, args...)
}

func hearthWith(t *testing.T, o cmdOpts, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := hearthCmd(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = o.stdin
	cmd.Env = append(os.Environ(), o.env...)
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run hearth %v: %v", args, err)
	}
	return r
}

func hearthCmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, hearthB, append([]string{"--data-dir", dataDir, "--run-dir", runDir}, args...)...)
}

// must runs hearth and fails the test unless it exits 0.
func must(t *testing.T, args ...string) string {
	t.Helper()
	r := hearth(t, args...)
	if r.code != 0 {
		t.Fatalf("hearth %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// runPod runs a foreground pod and returns what it printed and its exit code.
func runPod(t *testing.T, args ...string) result {
	t.Helper()
	return hearth(t, append([]string{"cradle", "run"}, args...)...)
}

// startPod starts a detached pod and removes it when the test ends.
func startPod(t *testing.T, args ...string) string {
	t.Helper()
	id := strings.TrimSpace(must(t, append([]string{"cradle", "run", "-d"}, args...)...))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q, want a pod ID", id)
	}
	t.Cleanup(func() { hearth(t, "cradle", "rm", "-f", id) })
	return id
}

type podInfo struct {
	Launch struct {
		ID         string            `json:"id"`
		Name       string            `json:"name"`
		Labels     map[string]string `json:"labels"`
		Containers []struct {
			Name string `json:"name"`
		} `json:"containers"`
	} `json:"launch"`
	State struct {
		Status     string `json:"status"`
		ShimPID    int    `json:"shimPid"`
		VMPID      int    `json:"vmPid"`
		IP         string `json:"ip"`
		Accel      string `json:"accel"`
		Kernel     string `json:"kernel"`
		Containers []struct {
			Name   string `json:"name"`
			Status string `json:"status"`
			Exit   *struct {
				Code      int    `json:"code"`
				Error     string `json:"error"`
				OOMKilled bool   `json:"oomKilled"`
			} `json:"exit"`
		} `json:"containers"`
	} `json:"state"`
}

func inspect(t *testing.T, id string) podInfo {
	t.Helper()
	var p podInfo
	if err := json.Unmarshal([]byte(must(t, "cradle", "inspect", id)), &p); err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return p
}

func podIP(t *testing.T, id string) string {
	ip, _, _ := strings.Cut(inspect(t, id).State.IP, "/")
	if ip == "" {
		t.Fatalf("pod %s has no IP", id)
	}
	return ip
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func linkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// tapOf is the host tap of a pod's first NIC.
func tapOf(id string) string { return "hth" + id[:11] + "0" }

// podsLeft lists the suite's pods.
func podsLeft(t *testing.T) []string {
	return strings.Fields(must(t, "cradle", "ls", "-q"))
}

// qemuOf lists QEMU processes started for pods of this suite.
func qemuOf(id string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cl := string(b)
		if strings.Contains(cl, "qemu-system") && strings.Contains(cl, runDir) && (id == "" || strings.Contains(cl, "hearth-"+id[:12])) {
			out = append(out, pid)
		}
	}
	return out
}

// assertGone checks a pod left nothing on the host.
func assertGone(t *testing.T, id string) {
	t.Helper()
	eventually(t, 30*time.Second, "pod "+id[:12]+" to be cleaned up", func() bool {
		_, err := os.Stat(filepath.Join(dataDir, "cradle", "pods", id))
		return os.IsNotExist(err) && len(qemuOf(id)) == 0 && !linkExists(tapOf(id))
	})
	socks, _ := filepath.Glob(filepath.Join(runDir, "cradle", id[:16]+"*"))
	if len(socks) > 0 {
		t.Errorf("pod %s left sockets %v", id[:12], socks)
	}
}

// waitLog waits until a pod's first container has printed want.
func waitLog(t *testing.T, id, want string) {
	t.Helper()
	eventually(t, time.Minute, "pod output "+want, func() bool {
		return strings.Contains(hearth(t, "cradle", "logs", id).stdout, want)
	})
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
