package cli

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// hostEnv is a lookup function over a fixed environment that records the
// keys it was asked for.
type hostEnv struct {
	vars  map[string]string
	asked []string
}

func (h *hostEnv) lookup(k string) (string, bool) {
	h.asked = append(h.asked, k)
	v, ok := h.vars[k]
	return v, ok
}

func newHostEnv() *hostEnv {
	return &hostEnv{vars: map[string]string{"HOME": "/root", "EMPTY": "", "TERM": "xterm"}}
}

// checkErr fails unless err is an ErrInvalidArgument containing want.
func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q; want it to contain %q", err, want)
	}
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("error %q is not ErrInvalidArgument", err)
	}
}

func TestParseEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		want    []string
		asked   []string
		wantErr string
	}{
		{name: "none", args: nil, want: nil},
		{name: "values", args: []string{"A=1", "B=", "C=x=y", "D= spaced "}, want: []string{"A=1", "B=", "C=x=y", "D= spaced "}},
		{name: "from host", args: []string{"HOME", "A=1", "TERM"}, want: []string{"HOME=/root", "A=1", "TERM=xterm"}, asked: []string{"HOME", "TERM"}},
		{name: "host has it empty", args: []string{"EMPTY"}, want: []string{"EMPTY="}, asked: []string{"EMPTY"}},
		{name: "host lacks it", args: []string{"MISSING", "A=1"}, want: []string{"A=1"}, asked: []string{"MISSING"}},
		{name: "value wins over host", args: []string{"HOME=/x"}, want: []string{"HOME=/x"}},
		{name: "repeated", args: []string{"A=1", "A=2"}, want: []string{"A=1", "A=2"}},
		{name: "no name", args: []string{"A=1", "=x"}, wantErr: "invalid environment variable: =x"},
		{name: "empty", args: []string{""}, wantErr: "invalid environment variable: "},
		{name: "just equals", args: []string{"="}, wantErr: "invalid environment variable: ="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHostEnv()
			got, err := ParseEnv(tt.args, h.lookup)
			if tt.wantErr != "" {
				checkErr(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("ParseEnv: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseEnv(%q) = %q, want %q", tt.args, got, tt.want)
			}
			if !reflect.DeepEqual(h.asked, tt.asked) {
				t.Fatalf("looked up %q, want %q", h.asked, tt.asked)
			}
		})
	}
}

func TestParseEnvFile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string
		want    []string
		wantErr string // with the file's path prepended when it starts with ":"
	}{
		{name: "empty file", content: "", want: nil},
		{name: "values", content: "A=1\nB=two words \nC=\nD=x=y\n", want: []string{"A=1", "B=two words ", "C=", "D=x=y"}},
		{name: "no final newline", content: "A=1\nB=2", want: []string{"A=1", "B=2"}},
		{name: "comments and blank lines", content: "# comment\n\nA=1\n   \n\t# indented comment\n#B=2\nC=3 # not a comment\n", want: []string{"A=1", "C=3 # not a comment"}},
		{name: "leading whitespace", content: "  A=1\n\tB=2\n", want: []string{"A=1", "B=2"}},
		{name: "BOM", content: "\ufeffA=1\nB=2\n", want: []string{"A=1", "B=2"}},
		{name: "BOM before a comment", content: "\ufeff# c\nA=1\n", want: []string{"A=1"}},
		{name: "CRLF", content: "A=1\r\nHOME\r\n", want: []string{"A=1", "HOME=/root"}},
		{name: "from host", content: "HOME\nMISSING\nEMPTY\nTERM\n", want: []string{"HOME=/root", "EMPTY=", "TERM=xterm"}},
		{name: "long line", content: "A=" + strings.Repeat("x", 200<<10) + "\n", want: []string{"A=" + strings.Repeat("x", 200<<10)}},
		{name: "whitespace in key", content: "A=1\nMY KEY=1\n", wantErr: ":2: variable 'MY KEY' contains whitespaces"},
		{name: "whitespace before equals", content: "KEY =1\n", wantErr: ":1: variable 'KEY ' contains whitespaces"},
		{name: "tab in bare key", content: "A\tB\n", wantErr: ":1: variable 'A\tB' contains whitespaces"},
		{name: "no name", content: "# c\n=1\n", wantErr: ":2: no variable name"},
		{name: "line too long", content: "A=" + strings.Repeat("x", 2<<20) + "\n", wantErr: "read env file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "env")
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			h := newHostEnv()
			got, err := ParseEnvFile(p, h.lookup)
			if tt.wantErr != "" {
				want := tt.wantErr
				if strings.HasPrefix(want, ":") {
					want = p + want
				}
				checkErr(t, err, want)
				return
			}
			if err != nil {
				t.Fatalf("ParseEnvFile: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseEnvFile = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseEnvFileMissing(t *testing.T) {
	t.Parallel()
	_, err := ParseEnvFile(filepath.Join(t.TempDir(), "nope"), newHostEnv().lookup)
	checkErr(t, err, "open env file")
	if !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("error %q does not say why", err)
	}
	_, err = ParseEnvFile(t.TempDir(), newHostEnv().lookup)
	checkErr(t, err, "env file")
}

func TestParseMemory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{in: "512m", want: 512},
		{in: "512M", want: 512},
		{in: "512mb", want: 512},
		{in: "512MiB", want: 512},
		{in: "1g", want: 1024},
		{in: "1.5g", want: 1536},
		{in: "2G", want: 2048},
		{in: "1t", want: 1 << 20},
		{in: "64m", want: 64},
		{in: "65536k", want: 64},
		{in: "67108864", want: 64},
		{in: "1073741824", want: 1024},
		{in: "100000000", want: 95}, // rounded down to whole MiB
		{in: "63m", wantErr: `invalid memory size "63m": the minimum for a pod is 64MiB`},
		{in: "67108863", wantErr: "the minimum for a pod is 64MiB"},
		{in: "0", wantErr: "the minimum"},
		{in: "1k", wantErr: "the minimum"},
		{in: "garbage", wantErr: `invalid memory size "garbage"`},
		{in: "", wantErr: `invalid memory size ""`},
		{in: "-1g", wantErr: `invalid memory size "-1g"`},
		{in: "1x", wantErr: `invalid memory size "1x"`},
		{in: "1 g b", wantErr: "invalid memory size"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMemory(tt.in)
			if tt.wantErr != "" {
				checkErr(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("ParseMemory(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseMemory(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	good := map[string]int64{"1": 1, "100m": 100 << 20, "1g": 1 << 30, "4k": 4096, "1.5k": 1536}
	for in, want := range good {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "abc", "1q"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d; want an error", in, got)
		} else {
			checkErr(t, err, "invalid size")
		}
	}
}

func TestParseCPUs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		host    int
		want    int
		wantErr string
	}{
		{in: "0.5", host: 8, want: 1},
		{in: "0.01", host: 8, want: 1},
		{in: "1", host: 8, want: 1},
		{in: "1.0", host: 8, want: 1},
		{in: "1.5", host: 8, want: 2},
		{in: "2.0001", host: 8, want: 3},
		{in: "7.01", host: 8, want: 8},
		{in: "8", host: 8, want: 8},
		{in: "1", host: 1, want: 1},
		{in: "70", host: 128, want: spec.MaxCPUs},
		{in: "0", host: 8, wantErr: "range of CPUs is from 0.01 to 8.00, as there are only 8 CPUs available"},
		{in: "-1", host: 8, wantErr: "range of CPUs is from 0.01 to 8.00"},
		{in: "8.5", host: 8, wantErr: "range of CPUs is from 0.01 to 8.00"},
		{in: "9", host: 8, wantErr: "as there are only 8 CPUs available"},
		{in: "2", host: 1, wantErr: "range of CPUs is from 0.01 to 1.00, as there are only 1 CPUs available"},
		{in: "NaN", host: 8, wantErr: `invalid argument "NaN" for "--cpus" flag: failed to parse NaN as a rational number`},
		{in: "nan", host: 8, wantErr: "failed to parse nan as a rational number"},
		{in: "Inf", host: 8, wantErr: "failed to parse Inf"},
		{in: "-Inf", host: 8, wantErr: "failed to parse -Inf"},
		{in: "abc", host: 8, wantErr: `invalid argument "abc" for "--cpus" flag`},
		{in: "", host: 8, wantErr: `invalid argument "" for "--cpus" flag`},
		{in: "1,5", host: 8, wantErr: "failed to parse 1,5"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseCPUs(tt.in, tt.host)
			if tt.wantErr != "" {
				checkErr(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("ParseCPUs(%q, %d): %v", tt.in, tt.host, err)
			}
			if got != tt.want {
				t.Fatalf("ParseCPUs(%q, %d) = %d, want %d", tt.in, tt.host, got, tt.want)
			}
		})
	}
}

func TestParseVolume(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    mountSpec
		wantErr string
	}{
		{in: "/srv/data:/data", want: mountSpec{Type: spec.VolumeDir, Source: "/srv/data", Target: "/data"}},
		{in: "/srv/data:/data:ro", want: mountSpec{Type: spec.VolumeDir, Source: "/srv/data", Target: "/data", ReadOnly: true}},
		{in: "/srv/data:/data:rw", want: mountSpec{Type: spec.VolumeDir, Source: "/srv/data", Target: "/data"}},
		{in: "/:/host", want: mountSpec{Type: spec.VolumeDir, Source: "/", Target: "/host"}},
		{in: "/srv/data:/data:z", wantErr: `invalid mode "z" in volume specification "/srv/data:/data:z": want ro or rw`},
		{in: "/srv/data:/data:RO", wantErr: `invalid mode "RO"`},
		{in: "/srv/data:/data:", wantErr: `invalid mode ""`},
		{in: "/srv/data", wantErr: `invalid volume specification: "/srv/data": want HOSTDIR:CTRDIR[:ro]`},
		{in: "", wantErr: "invalid volume specification"},
		{in: "/a:/b:ro:x", wantErr: "want HOSTDIR:CTRDIR[:ro]"},
		{in: "data:/data", wantErr: `invalid volume specification: "data:/data": the host path must be absolute (named volumes need ` + "`hearth up`)"},
		{in: ":/data", wantErr: "the host path must be absolute"},
		{in: "./data:/data", wantErr: "the host path must be absolute"},
		{in: "/srv/data:data", wantErr: `invalid volume specification: "/srv/data:data": mount path must be absolute`},
		{in: "/srv/data:", wantErr: "mount path must be absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseVolume(tt.in)
			if tt.wantErr != "" {
				checkErr(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("ParseVolume(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseVolume(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseMount(t *testing.T) {
	t.Parallel()
	bind := func(src, dst string, ro bool) mountSpec {
		return mountSpec{Type: spec.VolumeDir, Source: src, Target: dst, ReadOnly: ro}
	}
	tests := []struct {
		in      string
		want    mountSpec
		wantErr string
	}{
		{in: "type=bind,source=/a,target=/b", want: bind("/a", "/b", false)},
		{in: "type=bind,src=/a,dst=/b", want: bind("/a", "/b", false)},
		{in: "type=bind,src=/a,destination=/b", want: bind("/a", "/b", false)},
		{in: "target=/b,source=/a,type=bind", want: bind("/a", "/b", false)},
		{in: "Type=bind,Source=/a,Target=/b", want: bind("/a", "/b", false)},
		{in: "type=bind,source=/a,target=/b,readonly", want: bind("/a", "/b", true)},
		{in: "type=bind,source=/a,target=/b,ro", want: bind("/a", "/b", true)},
		{in: "type=bind,source=/a,target=/b,readonly=true", want: bind("/a", "/b", true)},
		{in: "type=bind,source=/a,target=/b,readonly=1", want: bind("/a", "/b", true)},
		{in: "type=bind,source=/a,target=/b,ro=false", want: bind("/a", "/b", false)},
		{in: "type=bind,source=/a,target=/b,readonly,readonly=0", want: bind("/a", "/b", false)},
		{in: "type=block,source=/img/data.ext4,target=/data", want: mountSpec{Type: spec.VolumeBlock, Source: "/img/data.ext4", Target: "/data"}},
		{in: "type=block,source=/img/data.ext4,target=/data,size=1g,readonly", want: mountSpec{Type: spec.VolumeBlock, Source: "/img/data.ext4", Target: "/data", Size: 1 << 30, ReadOnly: true}},
		{in: "type=tmpfs,target=/tmp", want: mountSpec{Type: spec.VolumeTmpfs, Target: "/tmp"}},
		{in: "type=tmpfs,target=/tmp,tmpfs-size=64m", want: mountSpec{Type: spec.VolumeTmpfs, Target: "/tmp", Size: 64 << 20}},
		{in: "type=tmpfs,dst=/tmp,size=1m,ro", want: mountSpec{Type: spec.VolumeTmpfs, Target: "/tmp", Size: 1 << 20, ReadOnly: true}},
		{in: "type=bind,source=/a,target=/b,readonly=maybe", wantErr: "invalid value for readonly: maybe"},
		{in: "type=bind,source=/a,target=/b,ro=", wantErr: "invalid value for ro: "},
		{in: "type=tmpfs,target=/tmp,size=lots", wantErr: `invalid size "lots"`},
		{in: "type=tmpfs,target=/tmp,size=0", wantErr: `invalid size "0"`},
		{in: "type=tmpfs,target=/tmp,size", wantErr: `invalid size ""`},
		{in: "type=tmpfs,source=/x,target=/tmp", wantErr: `invalid mount "type=tmpfs,source=/x,target=/tmp": tmpfs takes no source`},
		{in: "type=volume,source=v,target=/b", wantErr: `unknown type "volume" (want bind, block or tmpfs)`},
		{in: "type=Bind,source=/a,target=/b", wantErr: `unknown type "Bind"`},
		{in: "source=/a,target=/b", wantErr: `invalid mount "source=/a,target=/b": type is required (bind, block or tmpfs)`},
		{in: "type=,source=/a,target=/b", wantErr: "type is required"},
		{in: "type=bind,source=/a,target=/b,foo=bar", wantErr: "unexpected key 'foo' in 'foo=bar'"},
		{in: "type=bind,source=/a,target=/b,consistency=cached", wantErr: "unexpected key 'consistency'"},
		{in: "type=bind,source=/a,target=/b,", wantErr: "unexpected key '' in ''"},
		{in: "", wantErr: "unexpected key ''"},
		{in: "type=bind,source=rel,target=/b", wantErr: "source must be an absolute host path"},
		{in: "type=bind,target=/b", wantErr: "source must be an absolute host path"},
		{in: "type=block,source=disk.img,target=/b", wantErr: "source must be an absolute host path"},
		{in: "type=bind,source=/a,target=rel", wantErr: "target must be an absolute path"},
		{in: "type=bind,source=/a", wantErr: "target must be an absolute path"},
		{in: "type=tmpfs,target=tmp", wantErr: "target must be an absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMount(tt.in)
			if tt.wantErr != "" {
				checkErr(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("ParseMount(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseMount(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseTmpfs(t *testing.T) {
	t.Parallel()
	tmpfs := func(target string, size int64, ro bool) mountSpec {
		return mountSpec{Type: spec.VolumeTmpfs, Target: target, Size: size, ReadOnly: ro}
	}
	tests := []struct {
		in      string
		want    mountSpec
		wantErr string
	}{
		{in: "/tmp", want: tmpfs("/tmp", 0, false)},
		{in: "/tmp:", want: tmpfs("/tmp", 0, false)},
		{in: "/run:size=64m", want: tmpfs("/run", 64<<20, false)},
		{in: "/run:rw,noexec,nosuid,nodev,exec,size=1g,mode=1777", want: tmpfs("/run", 1<<30, false)},
		{in: "/run:ro", want: tmpfs("/run", 0, true)},
		{in: "/run:ro,size=1m", want: tmpfs("/run", 1<<20, true)},
		{in: "/run:size=1m,,", want: tmpfs("/run", 1<<20, false)},
		{in: "tmp", wantErr: `invalid tmpfs "tmp": mount path must be absolute`},
		{in: "", wantErr: "mount path must be absolute"},
		{in: ":size=1m", wantErr: "mount path must be absolute"},
		{in: "/tmp:bogus", wantErr: `invalid tmpfs option "bogus"`},
		{in: "/tmp:uid=1000", wantErr: `invalid tmpfs option "uid=1000"`},
		{in: "/tmp:size=abc", wantErr: `invalid size "abc"`},
		{in: "/tmp:size", wantErr: `invalid size ""`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseTmpfs(tt.in)
			if tt.wantErr != "" {
				checkErr(t, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("ParseTmpfs(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseTmpfs(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseSignal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want syscall.Signal // 0: an error
	}{
		{"KILL", syscall.SIGKILL},
		{"SIGKILL", syscall.SIGKILL},
		{"kill", syscall.SIGKILL},
		{"sigkill", syscall.SIGKILL},
		{"SigKill", syscall.SIGKILL},
		{"9", syscall.SIGKILL},
		{"TERM", syscall.SIGTERM},
		{"15", syscall.SIGTERM},
		{"HUP", syscall.SIGHUP},
		{"1", syscall.SIGHUP},
		{"USR1", syscall.SIGUSR1},
		{"SIGWINCH", syscall.SIGWINCH},
		{"64", syscall.Signal(64)},
		{"0", 0},
		{"65", 0},
		{"-1", 0},
		{"-9", 0},
		{"99999999999999999999", 0},
		{"bogus", 0},
		{"SIGBOGUS", 0},
		{"SIG", 0},
		{"", 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSignal(tt.in)
			if tt.want == 0 {
				checkErr(t, err, "invalid signal: "+tt.in)
				if got != 0 {
					t.Fatalf("ParseSignal(%q) = %d with its error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseSignal(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParseSignal(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

// Regression: ParseSignal reads a number with fmt.Sscanf("%d"), which stops
// at the first non-digit, so trailing garbage was ignored.
func TestParseSignalRegressions(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"9abc", "1.5", "9 ", "15x"} {
		if got, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) = %d; want an error", in, got)
		}
	}
}
