package guest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-cloud/hearth/cradle/spec"
)

// topTitles are the columns of `ps -ef`, which `docker top` shows by
// default. The VM has no ps of its own to run, so init reads /proc.
var topTitles = []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; it is 100 on
// every Linux architecture Hearth runs on.
const clockTicks = 100

// procStat is what top needs of /proc/PID/stat.
type procStat struct {
	comm      string
	ppid      int
	ttyNr     int
	utime     uint64 // ticks
	stime     uint64
	starttime uint64 // ticks after boot
}

// parseStat reads a /proc/PID/stat line. The command name sits in
// parentheses and may itself hold spaces and parentheses, so the fields
// are counted from the last ')'.
func parseStat(line string) (procStat, error) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("malformed stat %q", line)
	}
	f := strings.Fields(line[end+1:])
	// f[0] is field 3 (state).
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("short stat %q", line)
	}
	var s procStat
	s.comm = line[open+1 : end]
	var err error
	num := func(i int) uint64 {
		v, e := strconv.ParseUint(f[i-3], 10, 64)
		if e != nil && err == nil {
			err = fmt.Errorf("stat field %d: %w", i, e)
		}
		return v
	}
	s.ppid = int(num(4))
	tty, terr := strconv.ParseInt(f[7-3], 10, 64)
	if terr != nil {
		return procStat{}, fmt.Errorf("stat field 7: %w", terr)
	}
	s.ttyNr = int(tty)
	s.utime, s.stime, s.starttime = num(14), num(15), num(22)
	return s, err
}

// ttyName names a tty_nr as ps does; containers only have ptys.
func ttyName(nr int) string {
	if nr == 0 {
		return "?"
	}
	major, minor := (nr>>8)&0xfff, (nr&0xff)|((nr>>12)&0xfff00)
	if major >= 136 && major <= 143 {
		return fmt.Sprintf("pts/%d", (major-136)*256+minor)
	}
	return fmt.Sprintf("%d,%d", major, minor)
}

// cpuTime formats ticks as ps's TIME: [DD-]HH:MM:SS.
func cpuTime(ticks uint64) string {
	s := ticks / clockTicks
	d, h, m := s/86400, (s/3600)%24, (s/60)%60
	if d > 0 {
		return fmt.Sprintf("%d-%02d:%02d:%02d", d, h, m, s%60)
	}
	return fmt.Sprintf("%02d:%02d:%02d", h, m, s%60)
}

// startTime formats a start as ps's STIME: the time today, else the day.
func startTime(t, now time.Time) string {
	if t.YearDay() == now.YearDay() && t.Year() == now.Year() {
		return t.Format("15:04")
	}
	if t.Year() == now.Year() {
		return t.Format("Jan02")
	}
	return t.Format("2006")
}

// cpuPercent is ps's C: CPU time over lifetime, in whole percent.
func cpuPercent(ticks uint64, alive time.Duration) int {
	if alive <= 0 {
		return 0
	}
	return int(float64(ticks) / clockTicks / alive.Seconds() * 100)
}

// userNames maps UIDs to names from a passwd file.
func userNames(passwd []byte) map[int]string {
	names := map[int]string{}
	sc := bufio.NewScanner(bytes.NewReader(passwd))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 3 {
			continue
		}
		if uid, err := strconv.Atoi(f[2]); err == nil {
			if _, dup := names[uid]; !dup {
				names[uid] = f[0]
			}
		}
	}
	return names
}

// top lists the processes of a container's cgroup as `ps -ef` would.
func (g *Guest) top(c *container) (*spec.ProcessList, error) {
	c.mu.Lock()
	cg, pid := c.cgroup, c.pid
	c.mu.Unlock()
	if pid == 0 || isClosed(c.exited) {
		return nil, &callError{spec.ErrConflict, fmt.Sprintf("container %s is not running", c.spec.Name)}
	}
	var pids []int
	if cg != "" {
		b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
		if err != nil {
			return nil, fmt.Errorf("list processes: %w", err)
		}
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
	} else {
		pids = []int{pid}
	}
	sort.Ints(pids)
	passwd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/passwd", pid))
	names := userNames(passwd)
	boot := bootTime()
	now := time.Now()
	out := &spec.ProcessList{Titles: topTitles, Processes: [][]string{}}
	for _, p := range pids {
		row, err := psRow(p, names, boot, now)
		if err != nil {
			continue // it exited meanwhile
		}
		out.Processes = append(out.Processes, row)
	}
	return out, nil
}

// psRow is one process's `ps -ef` line.
func psRow(pid int, names map[int]string, boot, now time.Time) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	st, err := parseStat(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, err
	}
	uid := -1
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(status), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "Uid:" {
				uid, _ = strconv.Atoi(f[1])
			}
		}
	}
	user := strconv.Itoa(uid)
	if n, ok := names[uid]; ok {
		user = n
	}
	started := boot.Add(time.Duration(st.starttime) * time.Second / clockTicks)
	cmd := fmt.Sprintf("[%s]", st.comm)
	if raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(raw) > 0 {
		cmd = strings.TrimSpace(strings.ReplaceAll(string(bytes.TrimRight(raw, "\x00")), "\x00", " "))
	}
	ticks := st.utime + st.stime
	return []string{user, strconv.Itoa(pid), strconv.Itoa(st.ppid),
		strconv.Itoa(cpuPercent(ticks, now.Sub(started))), startTime(started, now),
		ttyName(st.ttyNr), cpuTime(ticks), cmd}, nil
}

// bootTime is when the VM's kernel booted, from /proc/stat's btime.
func bootTime() time.Time {
	b, err := os.ReadFile("/proc/stat")
	if err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "btime "); ok {
				if s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
					return time.Unix(s, 0)
				}
			}
		}
	}
	return time.Now()
}
