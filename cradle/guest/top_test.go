package guest

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	line := "42 (a (weird) name) S 7 42 42 34816 42 4194560 100 0 0 0 250 130 0 0 20 0 1 0 5000 1000 100 18446744073709551615"
	s, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if s.comm != "a (weird) name" || s.ppid != 7 || s.ttyNr != 34816 || s.utime != 250 || s.stime != 130 || s.starttime != 5000 {
		t.Fatalf("parsed %+v", s)
	}
	for _, bad := range []string{"", "1 comm S 1", "1 (x) S 1 2 3", "1 (x) S z 1 1 0 1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 1 1"} {
		if _, err := parseStat(bad); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
}

func TestPsFormats(t *testing.T) {
	if got := ttyName(0); got != "?" {
		t.Errorf("ttyName(0) = %q", got)
	}
	if got := ttyName(136<<8 | 3); got != "pts/3" {
		t.Errorf("ttyName(pts/3) = %q", got)
	}
	for ticks, want := range map[uint64]string{0: "00:00:00", 6100: "00:01:01", 100 * 90061: "1-01:01:01"} {
		if got := cpuTime(ticks); got != want {
			t.Errorf("cpuTime(%d) = %q, want %q", ticks, got, want)
		}
	}
	now := time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC)
	if got := startTime(now.Add(-time.Hour), now); got != "12:00" {
		t.Errorf("startTime today = %q", got)
	}
	if got := startTime(now.AddDate(0, 0, -3), now); got != "Nov26" {
		t.Errorf("startTime this year = %q", got)
	}
	if got := cpuPercent(50, time.Second); got != 50 {
		t.Errorf("cpuPercent = %d", got)
	}
	names := userNames([]byte("root:x:0:0::/root:/bin/sh\nbad\nwww:x:33:33::/:/bin/false\n"))
	if names[0] != "root" || names[33] != "www" || len(names) != 2 {
		t.Errorf("userNames = %v", names)
	}
}

// TestPsRowSelf reads this test's own process, as top reads a container's.
func TestPsRowSelf(t *testing.T) {
	row, err := psRow(os.Getpid(), map[int]string{}, bootTime(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(row) != len(topTitles) || row[1] != strconv.Itoa(os.Getpid()) || row[2] != strconv.Itoa(os.Getppid()) {
		t.Fatalf("row %q", row)
	}
	if !strings.Contains(row[7], "guest.test") {
		t.Errorf("CMD %q does not name the test binary", row[7])
	}
}
