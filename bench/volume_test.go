//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-cloud/hearth/internal/testimage"
)

// diskFigures reads the disk program's line: seqwrite, seqread (MiB/s),
// randread, randwrite (IOPS).
func diskFigures(t *testing.T, line string) map[string]float64 {
	out := map[string]float64{}
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		var f float64
		if _, err := fmt.Sscan(v, &f); err != nil {
			t.Fatalf("disk printed %q", line)
		}
		out[k] = f
	}
	if len(out) != 4 {
		t.Fatalf("disk printed %q", line)
	}
	return out
}

// TestBenchVolume measures a pod's I/O on a named volume (an ext4 disk
// image on virtio-blk): sequential write with its fsync and read in 1 MiB
// blocks, and 4 KiB random reads and writes, all O_DIRECT. The baseline
// is the same static program run on the host, in a directory on the
// filesystem that holds the volume.
func TestBenchVolume(t *testing.T) {
	e := setup(t)
	n := dockerNode(t, e, "vo1", 11)
	docker := func(args ...string) string { return dockerOK(t, e, n, args...) }
	loadImage(t, e, n, "hearth.bench/disk:latest", testimage.Disk)
	bin, err := testimage.GoBinary(testimage.DiskSrc)
	if err != nil {
		t.Fatal(err)
	}
	hostBin := filepath.Join(e.dir, "disk")
	if err := os.WriteFile(hostBin, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	hostDir := filepath.Join(n.Data, "bench-host")
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	docker("volume", "create", "--opt", "size=2g", "bench")
	defer dockerCmd(e, n, "volume", "rm", "-f", "bench").Run()

	const mib, secs = "256", "3"
	// Best of three each, alternating, as the machine is noisy.
	best := func(m, into map[string]float64) {
		for k, v := range m {
			into[k] = max(into[k], v)
		}
	}
	pod, host := map[string]float64{}, map[string]float64{}
	for i := 0; i < 3; i++ {
		out, err := exec.Command(hostBin, hostDir, mib, secs).CombinedOutput()
		if err != nil {
			t.Fatalf("disk on the host: %v\n%s", err, out)
		}
		best(diskFigures(t, strings.TrimSpace(string(out))), host)
		best(diskFigures(t, docker("run", "--rm", "-v", "bench:/v", "hearth.bench/disk:latest", "/disk", "/v", mib, secs)), pod)
	}

	w := os.Stdout
	fmt.Fprintf(w, "\nVolume I/O (a pod's ext4 disk volume on virtio-blk, accelerator %s; best of 3, O_DIRECT, %s MiB file)\n\n", e.accel, mib)
	fmt.Fprintf(w, "| %-28s | %12s | %12s | %6s |\n", "test", "pod volume", "host", "ratio")
	fmt.Fprintf(w, "|%s|%s|%s|%s|\n", strings.Repeat("-", 30), strings.Repeat("-", 14), strings.Repeat("-", 14), strings.Repeat("-", 8))
	for _, row := range []struct{ key, name, unit string }{
		{"seqwrite", "sequential write + fsync", "MiB/s"},
		{"seqread", "sequential read", "MiB/s"},
		{"randread", "4 KiB random read", "IOPS"},
		{"randwrite", "4 KiB random write + fsync", "IOPS"},
	} {
		fmt.Fprintf(w, "| %-28s | %6.0f %-5s | %6.0f %-5s | %5.2fx |\n", row.name, pod[row.key], row.unit, host[row.key], row.unit, pod[row.key]/host[row.key])
	}
}
