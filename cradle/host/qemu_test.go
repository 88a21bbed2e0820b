package host

import (
	"slices"
	"strings"
	"testing"
)

func fullConfig() VMConfig {
	return VMConfig{
		Name:      "pod-1",
		Accel:     AccelTCG,
		CPUs:      2,
		MemoryMiB: 256,
		Kernel:    "/opt/hearth/vmlinux",
		Initrd:    "/opt/hearth/initrd.cpio",
		Cmdline:   "hearth.debug=1",
		Control:   "/run/hearth/pods/a,b/control.sock",
		Console:   "/var/lib/hearth/pods/a,b/console.log",
		NICs:      []NIC{{FD: 3, MAC: "52:54:0a:58:00:05"}, {FD: 7, MAC: "52:54:0a:59:00:02"}},
		Disks: []Disk{
			{Path: "/var/lib/hearth/layers/sha256/x,y.erofs", Serial: "layer0", ReadOnly: true},
			{Path: "/srv/vol.img", Serial: "vol-data"},
		},
		Shares: []Share{
			{Path: "/srv/sh,are", Tag: "vol-share", ReadOnly: true},
			{Path: "/srv/rw", Tag: "vol-rw"},
		},
	}
}

// values returns every argument that follows flag.
func values(args []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			out = append(out, args[i+1])
		}
	}
	return out
}

// pair reports whether flag and value appear as two adjacent arguments.
func pair(args []string, flag, value string) bool {
	return slices.Contains(values(args, flag), value)
}

func TestVMConfigArgs(t *testing.T) {
	t.Parallel()
	c := fullConfig()
	args, err := c.Args()
	if err != nil {
		t.Fatalf("Args: %v", err)
	}
	machine := values(args, "-machine")
	if len(machine) != 1 {
		t.Fatalf("-machine given %d times: %q", len(machine), machine)
	}
	for _, opt := range []string{"microvm", "acpi=off", "x-option-roms=off", "isa-serial=on"} {
		if !slices.Contains(strings.Split(machine[0], ","), opt) {
			t.Errorf("-machine %q lacks %s", machine[0], opt)
		}
	}
	for _, flag := range []string{"-no-reboot", "-nodefaults", "-no-user-config"} {
		if !slices.Contains(args, flag) {
			t.Errorf("no %s in %q", flag, args)
		}
	}
	want := [][2]string{
		{"-name", "pod-1"},
		{"-m", "256M"},
		{"-smp", "2"},
		{"-accel", "tcg,thread=multi"},
		{"-cpu", "max"},
		{"-kernel", "/opt/hearth/vmlinux"},
		{"-initrd", "/opt/hearth/initrd.cpio"},
		{"-append", BaseCmdline + " hearth.debug=1"},
		{"-display", "none"},
		{"-monitor", "none"},
		// Commas in paths are doubled.
		{"-chardev", "file,id=con,path=/var/lib/hearth/pods/a,,b/console.log"},
		{"-serial", "chardev:con"},
		{"-device", "virtio-serial-device,max_ports=2"},
		{"-chardev", "socket,id=ctl,path=/run/hearth/pods/a,,b/control.sock"},
		{"-device", "virtserialport,chardev=ctl,name=hearth.ctl"},
		{"-netdev", "tap,id=net0,fd=3,vhost=off"},
		{"-device", "virtio-net-device,netdev=net0,mac=52:54:0a:58:00:05"},
		{"-netdev", "tap,id=net1,fd=7,vhost=off"},
		{"-device", "virtio-net-device,netdev=net1,mac=52:54:0a:59:00:02"},
		{"-drive", "id=disk0,file=/var/lib/hearth/layers/sha256/x,,y.erofs,format=raw,if=none,discard=unmap,readonly=on,file.locking=off"},
		{"-device", "virtio-blk-device,drive=disk0,serial=layer0"},
		{"-drive", "id=disk1,file=/srv/vol.img,format=raw,if=none,discard=unmap"},
		{"-device", "virtio-blk-device,drive=disk1,serial=vol-data"},
		{"-fsdev", "local,id=fs0,path=/srv/sh,,are,security_model=passthrough,readonly=on"},
		{"-device", "virtio-9p-device,fsdev=fs0,mount_tag=vol-share"},
		{"-fsdev", "local,id=fs1,path=/srv/rw,security_model=passthrough"},
		{"-device", "virtio-9p-device,fsdev=fs1,mount_tag=vol-rw"},
	}
	for _, w := range want {
		if !pair(args, w[0], w[1]) {
			t.Errorf("no %s %q in\n%q", w[0], w[1], args)
		}
	}
	if got := values(args, "-cpu"); len(got) != 1 {
		t.Errorf("-cpu given %d times", len(got))
	}
	if got := values(args, "-accel"); len(got) != 1 {
		t.Errorf("-accel given %d times", len(got))
	}
	// The read-write disk and share are not read-only.
	for _, flag := range []string{"-drive", "-fsdev"} {
		v := values(args, flag)
		if len(v) != 2 || strings.Contains(v[1], "readonly") {
			t.Errorf("%s values %q: the second should be read-write", flag, v)
		}
	}
}

func TestVMConfigArgsVariants(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*VMConfig)
		has     [][2]string // flag, value pairs that must appear
		hasNot  []string    // substrings no argument may contain
		wantErr string
	}{
		{name: "kvm", mutate: func(c *VMConfig) { c.Accel = AccelKVM },
			has: [][2]string{{"-accel", "kvm"}, {"-cpu", "host"}}, hasNot: []string{"tcg", "thread=multi"}},
		{name: "tcg", mutate: func(c *VMConfig) { c.Accel = AccelTCG },
			has: [][2]string{{"-accel", "tcg,thread=multi"}, {"-cpu", "max"}}, hasNot: []string{"kvm"}},
		{name: "no control", mutate: func(c *VMConfig) { c.Control = "" },
			hasNot: []string{"virtio-serial", "virtserialport", "id=ctl"}},
		{name: "no console", mutate: func(c *VMConfig) { c.Console = "" },
			has: [][2]string{{"-serial", "none"}}, hasNot: []string{"id=con", "chardev:con"}},
		{name: "no extra cmdline", mutate: func(c *VMConfig) { c.Cmdline = "" },
			has: [][2]string{{"-append", BaseCmdline}}},
		{name: "no devices", mutate: func(c *VMConfig) { c.NICs, c.Disks, c.Shares = nil, nil, nil },
			hasNot: []string{"-netdev", "-drive", "-fsdev", "virtio-net", "virtio-blk", "virtio-9p"}},
		{name: "20 byte serial", mutate: func(c *VMConfig) { c.Disks[1].Serial = "vol-0123456789abcdef" },
			has: [][2]string{{"-device", "virtio-blk-device,drive=disk1,serial=vol-0123456789abcdef"}}},
		{name: "21 byte serial", mutate: func(c *VMConfig) { c.Disks[1].Serial = "vol-0123456789abcdefg" },
			wantErr: `vm pod-1: disk serial "vol-0123456789abcdefg" longer than 20`},
		{name: "unknown accel", mutate: func(c *VMConfig) { c.Accel = "xen" },
			wantErr: `vm pod-1: unknown accelerator "xen"`},
		{name: "empty accel", mutate: func(c *VMConfig) { c.Accel = "" },
			wantErr: `unknown accelerator ""`},
		{name: "auto is not an accel", mutate: func(c *VMConfig) { c.Accel = "auto" },
			wantErr: `unknown accelerator "auto"`},
		{name: "zero cpus", mutate: func(c *VMConfig) { c.CPUs = 0 },
			wantErr: "vm pod-1: invalid size 0 cpus, 256 MiB"},
		{name: "zero memory", mutate: func(c *VMConfig) { c.MemoryMiB = 0 },
			wantErr: "invalid size 2 cpus, 0 MiB"},
		{name: "path with several commas", mutate: func(c *VMConfig) { c.Console = "/a,,b,c" },
			has: [][2]string{{"-chardev", "file,id=con,path=/a,,,,b,,c"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := fullConfig()
			tt.mutate(&c)
			args, err := c.Args()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Args = %q, %v; want error %q", args, err, tt.wantErr)
				}
				if args != nil {
					t.Fatalf("Args returned arguments with its error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Args: %v", err)
			}
			if n, m := len(values(args, "-cpu")), len(values(args, "-accel")); n != 1 || m != 1 {
				t.Errorf("-cpu given %d times, -accel %d times", n, m)
			}
			for _, h := range tt.has {
				if !pair(args, h[0], h[1]) {
					t.Errorf("no %s %q in %q", h[0], h[1], args)
				}
			}
			for _, s := range tt.hasNot {
				for _, a := range args {
					if strings.Contains(a, s) {
						t.Errorf("argument %q contains %q", a, s)
					}
				}
			}
		})
	}
}

func TestEscape(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":        "",
		"/a/b":    "/a/b",
		",":       ",,",
		"a,b,,c":  "a,,b,,,,c",
		"/é,x y=": "/é,,x y=",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}
