//go:build bench

// Package bench measures cradle against baselines taken in the same run,
// since the machines Hearth is built on are too noisy for absolute numbers
// alone: the bare QEMU boot floor (the same QEMU and kernel booting a
// busybox init that reboots at once) and `runc run` of the same image.
// Run it with `make bench`; it prints tables and asserts nothing.
package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearth-cloud/hearth/cradle/host"
	"github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/image/layer"
	"github.com/hearth-cloud/hearth/internal/testimage"
)

type env struct {
	repo, hearth, dir, data, run, image, floorInitrd, idleInitrd string
	assets                                                       host.Assets
	accel                                                        string
}

func setup(t *testing.T) *env {
	_, file, _, _ := runtime.Caller(0)
	e := &env{repo: filepath.Join(filepath.Dir(file), "..")}
	e.hearth = filepath.Join(e.repo, "bin", "hearth")
	dir, err := os.MkdirTemp("/tmp", "hbench")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.dir, e.data, e.run = dir, filepath.Join(dir, "d"), filepath.Join(dir, "r")
	img, err := testimage.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	e.image = filepath.Join(dir, "busybox.tar")
	if err := testimage.WriteDockerArchive(e.image, "hearth.bench/busybox:latest", img); err != nil {
		t.Fatal(err)
	}
	e.assets = host.Assets{
		Kernel: filepath.Join(e.repo, "bin", "vmlinux"),
		Initrd: filepath.Join(e.repo, "bin", "initrd.cpio"),
		QEMU:   "qemu-system-x86_64",
	}
	if e.assets.QEMU, err = exec.LookPath(e.assets.QEMU); err != nil {
		t.Fatal(err)
	}
	e.floorInitrd = filepath.Join(dir, "floor.cpio")
	e.idleInitrd = filepath.Join(dir, "idle.cpio")
	if err := busyboxInitrd(e.floorInitrd, "/bin/busybox reboot -f"); err != nil {
		t.Fatal(err)
	}
	if err := busyboxInitrd(e.idleInitrd, "exec /bin/busybox sleep 100000"); err != nil {
		t.Fatal(err)
	}
	e.accel = strings.TrimSpace(e.hearthOut(t, "cradle", "accel"))
	// Warm the layer cache: preparing a layer is a one-off, not a start.
	e.hearthOut(t, "cradle", "run", e.image, "true")
	return e
}

func (e *env) hearthCmd(args ...string) *exec.Cmd {
	return exec.Command(e.hearth, append([]string{"--data-dir", e.data, "--run-dir", e.run}, args...)...)
}

func (e *env) hearthOut(t *testing.T, args ...string) string {
	out, err := e.hearthCmd(args...).CombinedOutput()
	if err != nil {
		t.Fatalf("hearth %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// busyboxInitrd packs busybox and an /init script.
func busyboxInitrd(out, script string) error {
	dir, err := os.MkdirTemp("", "initrd")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	bb, err := os.ReadFile(testimage.BusyboxPath)
	if err != nil {
		return err
	}
	os.WriteFile(filepath.Join(dir, "bin", "busybox"), bb, 0o755)
	os.WriteFile(filepath.Join(dir, "init"), []byte("#!/bin/busybox sh\n"+script+"\n"), 0o755)
	cmd := exec.Command("sh", "-c", "find . | cpio --quiet -o -H newc -R 0:0 > "+out)
	cmd.Dir = dir
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("cpio: %v: %s", err, b)
	}
	return nil
}

// floorVM is the same VM cradle starts, with nothing but the kernel and a
// busybox init.
func (e *env) floorVM(initrd string) *exec.Cmd {
	cfg := host.VMConfig{Name: "hearth-floor", Accel: e.accel, CPUs: 1, MemoryMiB: 512, Kernel: e.assets.Kernel, Initrd: initrd}
	args, err := cfg.Args()
	if err != nil {
		panic(err)
	}
	return exec.Command(e.assets.QEMU, args...)
}

func timeIt(t *testing.T, cmd *exec.Cmd) time.Duration {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out.String())
	}
	return time.Since(start)
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s)-1) + 0.5)
	return s[i]
}

func runs() int {
	if n, err := strconv.Atoi(os.Getenv("HEARTH_BENCH_RUNS")); err == nil && n > 0 {
		return n
	}
	return 10
}

// runcBundle unpacks the image into an OCI bundle that runs `true`.
func (e *env) runcBundle(t *testing.T) string {
	bundle := filepath.Join(e.dir, "bundle")
	rootfs := filepath.Join(bundle, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	img, err := image.OpenPath(e.image)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		if err := layer.Unpack(rc, rootfs); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
	if out, err := exec.Command("runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v %s", err, out)
	}
	var spec map[string]any
	b, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	json.Unmarshal(b, &spec)
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"true"}
	b, _ = json.Marshal(spec)
	os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644)
	return bundle
}

func TestBenchStart(t *testing.T) {
	e := setup(t)
	bundle := e.runcBundle(t)
	n := runs()
	var cradle, floor, runc []time.Duration
	for i := 0; i < n; i++ {
		// Interleaved, so a noisy moment hits all three alike.
		floor = append(floor, timeIt(t, e.floorVM(e.floorInitrd)))
		cradle = append(cradle, timeIt(t, e.hearthCmd("cradle", "run", e.image, "true")))
		runc = append(runc, timeIt(t, exec.Command("runc", "run", "--bundle", bundle, fmt.Sprintf("hearth-bench-%d", i))))
	}
	row := func(name string, d []time.Duration) string {
		return fmt.Sprintf("| %-44s | %8.0f | %8.0f |", name, ms(pct(d, .5)), ms(pct(d, .9)))
	}
	fmt.Printf("\nStart: wall time of `true`, %d runs each, accelerator %s\n\n", n, e.accel)
	fmt.Println("| what                                         | p50 (ms) | p90 (ms) |")
	fmt.Println("|----------------------------------------------|---------:|---------:|")
	fmt.Println(row("hearth cradle run IMG true", cradle))
	fmt.Println(row("floor: QEMU + kernel + busybox init, reboot", floor))
	fmt.Println(row("runc run (same image)", runc))
	fmt.Printf("\nratio cradle/floor: p50 %.2fx, p90 %.2fx (target 1.15x)\n", ratio(cradle, floor, .5), ratio(cradle, floor, .9))
	fmt.Printf("ratio cradle/runc:  p50 %.1fx, p90 %.1fx\n", ratio(cradle, runc, .5), ratio(cradle, runc, .9))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ratio(a, b []time.Duration, p float64) float64 { return float64(pct(a, p)) / float64(pct(b, p)) }

// cpuTicks is a process's user+system time in clock ticks.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

const clkTck = 100

// rssKB is a process's resident set, and the part of it in its largest
// anonymous mapping (for QEMU: guest RAM it has touched).
func rssKB(pid int) (total, ram int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	var size, rss, biggest int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		switch fs[0] {
		case "Size:":
			size, _ = strconv.ParseInt(fs[1], 10, 64)
		case "Rss:":
			rss, _ = strconv.ParseInt(fs[1], 10, 64)
			total += rss
			if size >= 256*1024 && size > biggest {
				biggest, ram = size, rss
			}
		}
	}
	return total, ram
}

type podPIDs struct {
	State struct {
		ShimPID int `json:"shimPid"`
		VMPID   int `json:"vmPid"`
	} `json:"state"`
}

func TestBenchIdle(t *testing.T) {
	e := setup(t)
	const window = 10 * time.Second

	id := strings.TrimSpace(e.hearthOut(t, "cradle", "run", "-d", e.image, "sleep", "100000"))
	defer e.hearthCmd("cradle", "rm", "-f", id).Run()
	var p podPIDs
	json.Unmarshal([]byte(e.hearthOut(t, "cradle", "inspect", id)), &p)

	floor := e.floorVM(e.idleInitrd)
	if err := floor.Start(); err != nil {
		t.Fatal(err)
	}
	defer floor.Process.Kill()

	time.Sleep(5 * time.Second) // both past boot
	q0, s0, f0 := cpuTicks(p.State.VMPID), cpuTicks(p.State.ShimPID), cpuTicks(floor.Process.Pid)
	time.Sleep(window)
	q1, s1, f1 := cpuTicks(p.State.VMPID), cpuTicks(p.State.ShimPID), cpuTicks(floor.Process.Pid)
	share := func(d int64) float64 { return 100 * float64(d) / clkTck / window.Seconds() }

	qTotal, qRAM := rssKB(p.State.VMPID)
	sTotal, _ := rssKB(p.State.ShimPID)
	fTotal, fRAM := rssKB(floor.Process.Pid)
	podOver := qTotal - qRAM + sTotal
	floorOver := fTotal - fRAM

	fmt.Printf("\nIdle pod over %s, accelerator %s\n\n", window, e.accel)
	fmt.Println("| what                                   | CPU (% of a core) | RSS beyond guest RAM (MiB) | guest RAM touched (MiB) |")
	fmt.Println("|----------------------------------------|------------------:|---------------------------:|------------------------:|")
	fmt.Printf("| cradle pod: QEMU + supervisor         | %17.2f | %26.1f | %23.1f |\n", share(q1-q0+s1-s0), float64(podOver)/1024, float64(qRAM)/1024)
	fmt.Printf("| floor: QEMU + kernel + idle busybox   | %17.2f | %26.1f | %23.1f |\n", share(f1-f0), float64(floorOver)/1024, float64(fRAM)/1024)
	fmt.Printf("\nidle CPU target: at most 1%% of a core; memory overhead ratio pod/floor %.2fx\n", float64(podOver)/float64(floorOver))
}
