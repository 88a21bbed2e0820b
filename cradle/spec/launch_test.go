package spec

import (
	"encoding/json"
	"strings"
	"testing"
)

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// goodLaunch returns a fresh spec that uses every feature Validate checks.
func goodLaunch() *Launch {
	timeout := 5
	return &Launch{
		Version:   Version,
		ID:        testID,
		Name:      "web-1",
		Hostname:  "web",
		Resources: Resources{CPUs: 2, MemoryMiB: 256},
		Network: &Network{
			Interfaces: []Interface{{
				Name:    "eth0",
				MAC:     "52:54:0a:58:00:05",
				Address: "10.88.0.5/16",
				Gateway: "10.88.0.1",
				Bridge:  "hearth0",
			}},
			DNS:    []string{"8.8.8.8", "2001:4860:4860::8888"},
			Search: []string{"example.com"},
		},
		Layers: []Layer{
			{Digest: "sha256:aa", Path: "/var/lib/hearth/layers/a.erofs"},
			{Digest: "sha256:bb", Path: "/var/lib/hearth/layers/b.erofs"},
		},
		Volumes: []Volume{
			{Name: "data", Type: VolumeDir, Source: "/srv/data"},
			{Name: "disk-0", Type: VolumeBlock, Source: "/srv/disk.img", SizeBytes: 1 << 30},
			{Name: "scratch", Type: VolumeTmpfs, SizeBytes: 64 << 20},
		},
		Containers: []Container{
			{
				Name:   "app",
				Layers: []int{0, 1},
				Process: Process{
					Args: []string{"/bin/app", "--flag"},
					Env:  []string{"PATH=/bin", "EMPTY=", "NOVALUE"},
					Cwd:  "/srv",
					User: "1000:1000",
				},
				Mounts: []Mount{
					{Volume: "data", Target: "/data"},
					{Volume: "disk-0", Target: "/var/lib/db", ReadOnly: true},
					{Volume: "scratch", Target: "/tmp/"},
				},
				StopSignal:  15,
				StopTimeout: &timeout,
			},
			{
				Name:     "sidecar",
				Layers:   []int{0},
				Hostname: "side",
				Process:  Process{Args: []string{"sh"}},
				// The same volume may be mounted by several containers.
				Mounts: []Mount{{Volume: "data", Target: "/data"}},
			},
		},
	}
}

func TestLaunchValidateGood(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Launch)
	}{
		{"full", func(*Launch) {}},
		{"minimal", func(l *Launch) {
			*l = Launch{Version: Version, ID: testID, Resources: Resources{CPUs: 1, MemoryMiB: MinMemoryMiB},
				Containers: []Container{{Name: "c", Process: Process{Args: []string{"x"}}}}}
		}},
		{"max cpus", func(l *Launch) { l.Resources.CPUs = MaxCPUs }},
		{"no network", func(l *Launch) { l.Network = nil }},
		{"network without gateway", func(l *Launch) { l.Network.Interfaces[0].Gateway = "" }},
		{"16 character volume name", func(l *Launch) {
			l.Volumes[0].Name = "abcdefghijklmnop"
			l.Containers[0].Mounts[0].Volume = "abcdefghijklmnop"
			l.Containers[1].Mounts[0].Volume = "abcdefghijklmnop"
		}},
		{"stop timeout zero", func(l *Launch) { z := 0; l.Containers[0].StopTimeout = &z }},
		{"stop signal 64", func(l *Launch) { l.Containers[0].StopSignal = 64 }},
		{"container with no layers", func(l *Launch) { l.Containers[1].Layers = nil }},
		{"128 character name", func(l *Launch) { l.Name = strings.Repeat("a", 128) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := goodLaunch()
			tt.mutate(l)
			if err := l.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
}

func TestLaunchValidateBad(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Launch)
		want   string // substring of the error
	}{
		{"version 0", func(l *Launch) { l.Version = 0 }, "launch spec version 0 not supported"},
		{"version 2", func(l *Launch) { l.Version = 2 }, "launch spec version 2"},
		{"empty id", func(l *Launch) { l.ID = "" }, "pod id"},
		{"short id", func(l *Launch) { l.ID = testID[:63] }, "pod id"},
		{"upper-case id", func(l *Launch) { l.ID = strings.ToUpper(testID) }, "pod id"},
		{"id with trailing newline", func(l *Launch) { l.ID = testID + "\n" }, "pod id"},
		{"bad name", func(l *Launch) { l.Name = "-web" }, `invalid pod name "-web"`},
		{"name with slash", func(l *Launch) { l.Name = "a/b" }, "invalid pod name"},
		{"name too long", func(l *Launch) { l.Name = strings.Repeat("a", 129) }, "invalid pod name"},
		{"bad hostname", func(l *Launch) { l.Hostname = "web_1" }, `invalid hostname "web_1"`},
		{"hostname too long", func(l *Launch) { l.Hostname = strings.Repeat("h", 64) }, "invalid hostname"},
		{"zero cpus", func(l *Launch) { l.Resources.CPUs = 0 }, "invalid cpu count 0"},
		{"negative cpus", func(l *Launch) { l.Resources.CPUs = -1 }, "invalid cpu count -1"},
		{"too many cpus", func(l *Launch) { l.Resources.CPUs = MaxCPUs + 1 }, "invalid cpu count 65"},
		{"memory too small", func(l *Launch) { l.Resources.MemoryMiB = MinMemoryMiB - 1 }, "invalid memory 63 MiB"},
		{"bad interface name", func(l *Launch) { l.Network.Interfaces[0].Name = "Eth0" }, `interface 0: invalid or duplicate name "Eth0"`},
		{"duplicate interface", func(l *Launch) {
			l.Network.Interfaces = append(l.Network.Interfaces, l.Network.Interfaces[0])
		}, `interface 1: invalid or duplicate name "eth0"`},
		{"bad MAC", func(l *Launch) { l.Network.Interfaces[0].MAC = "52:54:00:12:34" }, `interface eth0: invalid MAC "52:54:00:12:34"`},
		{"upper-case MAC", func(l *Launch) { l.Network.Interfaces[0].MAC = "52:54:00:AB:34:56" }, "invalid MAC"},
		{"address without prefix", func(l *Launch) { l.Network.Interfaces[0].Address = "10.88.0.5" }, `interface eth0: invalid address "10.88.0.5"`},
		{"garbage address", func(l *Launch) { l.Network.Interfaces[0].Address = "nope" }, "invalid address"},
		{"bad gateway", func(l *Launch) { l.Network.Interfaces[0].Gateway = "10.88.0.1/16" }, `interface eth0: invalid gateway "10.88.0.1/16"`},
		{"no bridge", func(l *Launch) { l.Network.Interfaces[0].Bridge = "" }, "interface eth0: no bridge"},
		{"bad dns", func(l *Launch) { l.Network.DNS = []string{"8.8.8.8", "dns.google"} }, `invalid DNS server "dns.google"`},
		{"relative layer path", func(l *Launch) { l.Layers[1].Path = "layers/b.erofs" }, `layer 1: path "layers/b.erofs" is not absolute`},
		{"empty layer path", func(l *Launch) { l.Layers[0].Path = "" }, `layer 0: path "" is not absolute`},
		{"volume name upper-case", func(l *Launch) { l.Volumes[0].Name = "Data" }, `volume name "Data"`},
		{"volume name too long", func(l *Launch) { l.Volumes[0].Name = "abcdefghijklmnopq" }, `volume name "abcdefghijklmnopq"`},
		{"volume name empty", func(l *Launch) { l.Volumes[0].Name = "" }, `volume name ""`},
		{"volume name leading dash", func(l *Launch) { l.Volumes[0].Name = "-a" }, `volume name "-a"`},
		{"duplicate volume", func(l *Launch) {
			l.Volumes = append(l.Volumes, Volume{Name: "data", Type: VolumeTmpfs})
		}, `volume "data" defined twice`},
		{"dir volume relative source", func(l *Launch) { l.Volumes[0].Source = "srv/data" }, `volume "data": source "srv/data" is not an absolute path`},
		{"block volume no source", func(l *Launch) { l.Volumes[1].Source = "" }, `volume "disk-0": source "" is not an absolute path`},
		{"tmpfs with source", func(l *Launch) { l.Volumes[2].Source = "/x" }, `volume "scratch": tmpfs takes no source`},
		{"unknown volume type", func(l *Launch) { l.Volumes[0].Type = "nfs" }, `volume "data": unknown type "nfs"`},
		{"empty volume type", func(l *Launch) { l.Volumes[0].Type = "" }, `volume "data": unknown type ""`},
		{"negative volume size", func(l *Launch) { l.Volumes[1].SizeBytes = -1 }, `volume "disk-0": negative size`},
		{"no containers", func(l *Launch) { l.Containers = nil }, "pod has no containers"},
		{"bad container name", func(l *Launch) { l.Containers[1].Name = "" }, `container 1: invalid name ""`},
		{"duplicate container name", func(l *Launch) { l.Containers[1].Name = "app" }, `container name "app" used twice`},
		{"layer index too large", func(l *Launch) { l.Containers[0].Layers = []int{0, 2} }, `container "app": layer index 2 out of range`},
		{"negative layer index", func(l *Launch) { l.Containers[0].Layers = []int{-1} }, `container "app": layer index -1 out of range`},
		{"layer index without layers", func(l *Launch) { l.Layers = nil }, `container "app": layer index 0 out of range`},
		{"mount of unknown volume", func(l *Launch) { l.Containers[1].Mounts[0].Volume = "nope" }, `container "sidecar": mount of unknown volume "nope"`},
		{"relative mount target", func(l *Launch) { l.Containers[0].Mounts[0].Target = "data" }, `container "app": mount target "data" is not an absolute path`},
		{"mount over root", func(l *Launch) { l.Containers[0].Mounts[0].Target = "/" }, `container "app": cannot mount a volume over /`},
		{"mount over root, unclean", func(l *Launch) { l.Containers[0].Mounts[0].Target = "/./" }, "cannot mount a volume over /"},
		{"duplicate mount point", func(l *Launch) { l.Containers[0].Mounts[1].Target = "/data/" }, `container "app": duplicate mount point /data`},
		{"duplicate mount point, unclean", func(l *Launch) { l.Containers[0].Mounts[2].Target = "/x/../data" }, "duplicate mount point /data"},
		{"empty args", func(l *Launch) { l.Containers[0].Process.Args = nil }, `container "app": no command given`},
		{"empty first arg", func(l *Launch) { l.Containers[0].Process.Args = []string{"", "x"} }, `container "app": no command given`},
		{"relative cwd", func(l *Launch) { l.Containers[0].Process.Cwd = "srv" }, `container "app": working directory "srv" is not an absolute path`},
		{"env without key", func(l *Launch) { l.Containers[0].Process.Env = []string{"=x"} }, `container "app": invalid environment variable "=x"`},
		{"empty env entry", func(l *Launch) { l.Containers[0].Process.Env = []string{""} }, `invalid environment variable ""`},
		{"env with NUL", func(l *Launch) { l.Containers[0].Process.Env = []string{"A=b\x00c"} }, "invalid environment variable"},
		{"negative stop signal", func(l *Launch) { l.Containers[0].StopSignal = -1 }, `container "app": invalid stop signal -1`},
		{"stop signal 65", func(l *Launch) { l.Containers[0].StopSignal = 65 }, `container "app": invalid stop signal 65`},
		{"negative stop timeout", func(l *Launch) { n := -1; l.Containers[0].StopTimeout = &n }, `container "app": negative stop timeout`},
		{"bad container hostname", func(l *Launch) { l.Containers[1].Hostname = "a b" }, `container "sidecar": invalid hostname "a b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := goodLaunch()
			tt.mutate(l)
			err := l.Validate()
			if err == nil {
				t.Fatalf("Validate accepted the spec; want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate error %q; want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLaunchJSONRoundTrip(t *testing.T) {
	t.Parallel()
	l := goodLaunch()
	b, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	var got Launch
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("decoded spec does not validate: %v", err)
	}
	b2, err := json.Marshal(&got)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) {
		t.Fatalf("round trip changed the spec:\n%s\n%s", b, b2)
	}
}

func TestProcessValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		p    Process
		want string // "" for valid
	}{
		{"simple", Process{Args: []string{"true"}}, ""},
		{"full", Process{Args: []string{"/bin/sh", "-c", "echo"}, Env: []string{"A=1", "B=", "C"}, Cwd: "/", User: "alice:staff", Terminal: true}, ""},
		{"empty value with equals in value", Process{Args: []string{"x"}, Env: []string{"A==b=c"}}, ""},
		{"nil args", Process{}, "no command given"},
		{"empty args", Process{Args: []string{}}, "no command given"},
		{"empty command", Process{Args: []string{""}}, "no command given"},
		{"relative cwd", Process{Args: []string{"x"}, Cwd: "tmp"}, `working directory "tmp" is not an absolute path`},
		{"dot cwd", Process{Args: []string{"x"}, Cwd: "."}, "not an absolute path"},
		{"env without key", Process{Args: []string{"x"}, Env: []string{"A=1", "=1"}}, `invalid environment variable "=1"`},
		{"env NUL in key", Process{Args: []string{"x"}, Env: []string{"A\x00B"}}, "invalid environment variable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.p.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v; want error containing %q", err, tt.want)
			}
		})
	}
}

func TestValidName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    string
		want bool
	}{
		{"a", true},
		{"A.b_c-9", true},
		{"9", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{".a", false},
		{"_a", false},
		{"a b", false},
		{"a/b", false},
		{"é", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.s); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.s, got, tt.want)
		}
	}
}

// Regression: Process.Validate checks the environment for NUL bytes but not
// the arguments, which no exec can carry and which corrupt the guest
// stub's NUL-separated config (see cradle/guest/stub).
func TestProcessValidateNUL(t *testing.T) {
	t.Parallel()
	for _, p := range []Process{
		{Args: []string{"id", "x\x000\x000\x000\x000"}},
		{Args: []string{"a\x00b"}},
		{Args: []string{"x"}, Cwd: "/a\x00b"},
		{Args: []string{"x"}, User: "1000\x00"},
	} {
		if err := p.Validate(); err == nil {
			t.Errorf("Validate accepted %q (cwd %q, user %q)", p.Args, p.Cwd, p.User)
		}
	}
}
