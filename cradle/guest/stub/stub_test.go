package stub

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// same compares configs, taking a nil and an empty list as equal.
func same(a, b *Config) bool {
	norm := func(c Config) Config {
		if len(c.Args) == 0 {
			c.Args = nil
		}
		if len(c.Env) == 0 {
			c.Env = nil
		}
		if len(c.Groups) == 0 {
			c.Groups = nil
		}
		return c
	}
	return reflect.DeepEqual(norm(*a), norm(*b))
}

func manyGroups(n int) []uint32 {
	g := make([]uint32, n)
	for i := range g {
		g[i] = uint32(i * 7919)
	}
	return g
}

func TestEncodeDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		c    Config
	}{
		{"zero", Config{}},
		{"typical", Config{
			Rootfs: "/run/hearth/c/app/rootfs",
			Cwd:    "/srv",
			Path:   "/usr/bin/env",
			Args:   []string{"env", "-i", "FOO=bar"},
			Env:    []string{"PATH=/usr/bin:/bin", "HOME=/root"},
			UID:    1000, GID: 50,
			Groups: []uint32{50, 10, 1000},
		}},
		{"empty lists", Config{Rootfs: "/r", Cwd: "/", Path: "/bin/sh", Args: []string{}, Env: []string{}, Groups: []uint32{}}},
		{"empty strings", Config{Args: []string{"", "", ""}, Env: []string{""}}},
		{"unicode", Config{
			Rootfs: "/ßüñ/日本語", Cwd: "/émoji/🔥", Path: "/bin/ç",
			Args: []string{"échø", "你好, 世界", "\u00a0\t\n"},
			Env:  []string{"LANG=fr_FR.UTF-8", "GREETING=Grüß Gott 🙂"},
		}},
		{"separators in strings", Config{Args: []string{"1", "2", "a b", "3\n4", "\xff\xfe"}, Env: []string{"NUMERIC=0"}}},
		{"max ids", Config{UID: 1<<32 - 1, GID: 1<<32 - 1, Groups: []uint32{0, 1<<32 - 1}}},
		{"many groups", Config{Args: []string{"x"}, Groups: manyGroups(1 << 16)}},
		{"many args", Config{Args: strings.Split(strings.Repeat("a,", 5000), ","), Env: []string{"X=" + strings.Repeat("y", 1<<20)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := Encode(&tt.c)
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(Encode(c)): %v", err)
			}
			if !same(got, &tt.c) {
				t.Fatalf("round trip changed the config:\n got  %+v\n want %+v", got, tt.c)
			}
		})
	}
}

func TestEncodeFormat(t *testing.T) {
	t.Parallel()
	c := Config{Rootfs: "/r", Cwd: "/c", Path: "/p", Args: []string{"a", "b"}, Env: []string{"E=1"}, UID: 10, GID: 20, Groups: []uint32{30, 0}}
	want := "/r\x00/c\x00/p\x002\x00a\x00b\x001\x00E=1\x0010\x0020\x002\x0030\x000\x00"
	if got := string(Encode(&c)); got != want {
		t.Fatalf("Encode = %q, want %q", got, want)
	}
}

func TestDecodeCorrupt(t *testing.T) {
	t.Parallel()
	good := Encode(&Config{Rootfs: "/r", Cwd: "/", Path: "/bin/sh", Args: []string{"sh", "-c", "true"}, Env: []string{"A=1"}, UID: 1, GID: 2, Groups: []uint32{3, 4}})
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"no NUL", []byte("/rootfs")},
		{"strings only", []byte("/r\x00/\x00/bin/sh\x00")},
		{"missing final NUL", good[:len(good)-1]},
		{"non-numeric arg count", []byte("/r\x00/\x00/p\x00x\x00")},
		{"negative arg count", []byte("/r\x00/\x00/p\x00-1\x00")},
		{"empty arg count", []byte("/r\x00/\x00/p\x00\x000\x000\x000\x000\x00")},
		{"arg count too large for the data", []byte("/r\x00/\x00/p\x005\x00a\x00b\x00")},
		{"huge arg count", []byte("/r\x00/\x00/p\x004294967295\x00")},
		{"arg count over uint32", []byte("/r\x00/\x00/p\x004294967296\x00")},
		{"arg count 65537", []byte("/r\x00/\x00/p\x0065537\x00")},
		{"arg count eleven digits", []byte("/r\x00/\x00/p\x0000000000001\x00a\x000\x000\x000\x000\x00")},
		{"huge env count", []byte("/r\x00/\x00/p\x000\x0099999999\x00")},
		{"non-numeric uid", []byte("/r\x00/\x00/p\x000\x000\x00root\x000\x000\x00")},
		{"uid with sign", []byte("/r\x00/\x00/p\x000\x000\x00+1\x000\x000\x00")},
		{"uid with space", []byte("/r\x00/\x00/p\x000\x000\x00 1\x000\x000\x00")},
		{"uid over uint32", []byte("/r\x00/\x00/p\x000\x000\x004294967296\x000\x000\x00")},
		{"missing gid", []byte("/r\x00/\x00/p\x000\x000\x000\x00")},
		{"missing group count", []byte("/r\x00/\x00/p\x000\x000\x000\x000\x00")},
		{"huge group count", []byte("/r\x00/\x00/p\x000\x000\x000\x000\x004000000000\x00")},
		{"group count 65537", []byte("/r\x00/\x00/p\x000\x000\x000\x000\x0065537\x00")},
		{"group count too large for the data", []byte("/r\x00/\x00/p\x000\x000\x000\x000\x002\x001\x00")},
		{"non-numeric group", []byte("/r\x00/\x00/p\x000\x000\x000\x000\x001\x00wheel\x00")},
		{"all NULs", bytes.Repeat([]byte{0}, 64)},
	}
	// Every strict prefix of a good encoding is corrupt.
	for i := range len(good) {
		tests = append(tests, struct {
			name string
			in   []byte
		}{"prefix " + strconv.Itoa(i), good[:i]})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Decode(tt.in)
			if err == nil {
				t.Fatalf("Decode(%q) = %+v; want an error", tt.in, c)
			}
			if err != errCorrupt {
				t.Fatalf("Decode(%q) error %v; want errCorrupt", tt.in, err)
			}
			if c != nil {
				t.Fatalf("Decode(%q) returned a config with its error", tt.in)
			}
		})
	}
}

func TestItoaAtoi(t *testing.T) {
	t.Parallel()
	for _, n := range []uint32{0, 1, 9, 10, 99, 100, 65535, 65536, 1<<31 - 1, 1 << 31, 1<<32 - 1} {
		s := itoa(n)
		if s != strconv.FormatUint(uint64(n), 10) {
			t.Errorf("itoa(%d) = %q", n, s)
		}
		got, ok := atoi(s)
		if !ok || got != n {
			t.Errorf("atoi(%q) = %d, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "-1", "+1", "1a", " 1", "4294967296", "99999999999", "12345678901", "0x10", "1.0"} {
		if n, ok := atoi(s); ok {
			t.Errorf("atoi(%q) = %d, want failure", s, n)
		}
	}
	// Leading zeros are numbers.
	if n, ok := atoi("007"); !ok || n != 7 {
		t.Errorf(`atoi("007") = %d, %v`, n, ok)
	}
}

func FuzzDecode(f *testing.F) {
	seeds := []*Config{
		{},
		{Rootfs: "/r", Cwd: "/", Path: "/bin/sh", Args: []string{"sh"}, Env: []string{"A=1"}, UID: 1, GID: 2, Groups: []uint32{3}},
		{Args: []string{"", "ü"}, Groups: []uint32{1<<32 - 1}},
	}
	for _, c := range seeds {
		f.Add(Encode(c))
	}
	f.Add([]byte("/r\x00/\x00/p\x0065536\x00"))
	f.Add([]byte("\x00\x00\x00x\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			if c != nil {
				t.Fatalf("Decode returned a config with error %v", err)
			}
			return
		}
		// What decodes encodes back to something that decodes the same.
		c2, err := Decode(Encode(c))
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(b))): %v", err)
		}
		if !same(c, c2) {
			t.Fatalf("round trip changed the config:\n%+v\n%+v", c, c2)
		}
	})
}

// FuzzEncodeDecode checks Decode(Encode(c)) == c for configs built from
// fuzzed strings. Strings holding NUL cannot be encoded (exec could not
// pass them either), so they are left out.
func FuzzEncodeDecode(f *testing.F) {
	f.Add("/r", "/", "/bin/sh", "sh\n-c\ntrue", "A=1", uint32(0), uint32(0), uint32(3))
	f.Add("", "", "", "", "", uint32(1<<32-1), uint32(7), uint32(0))
	f.Fuzz(func(t *testing.T, rootfs, cwd, path, args, env string, uid, gid, ngroups uint32) {
		for _, s := range []string{rootfs, cwd, path, args, env} {
			if strings.IndexByte(s, 0) >= 0 {
				t.Skip("NUL in a string")
			}
		}
		c := &Config{Rootfs: rootfs, Cwd: cwd, Path: path, UID: uid, GID: gid}
		if args != "" {
			c.Args = strings.Split(args, "\n")
		}
		if env != "" {
			c.Env = strings.Split(env, "\n")
		}
		for i := range ngroups % 100 {
			c.Groups = append(c.Groups, uid^i)
		}
		got, err := Decode(Encode(c))
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", c, err)
		}
		if !same(got, c) {
			t.Fatalf("round trip changed the config:\n got  %+v\n want %+v", got, c)
		}
	})
}

// Regression: Encode writes strings holding NUL as they are, so a NUL in an
// argument shifts every later field, and Decode ignores what is left over:
// an argument can set the UID, GID and environment the stub runs with.
func TestEncodeNUL(t *testing.T) {
	t.Parallel()
	c := &Config{Rootfs: "/r", Cwd: "/", Path: "/bin/id", Args: []string{"id", "x\x000\x000\x000\x000"}, Env: []string{"A=1"}, UID: 1000, GID: 1000}
	got, err := Decode(Encode(c))
	if err == nil && !same(got, c) {
		t.Fatalf("Decode(Encode(c)): args %q env %q uid %d gid %d; want args %q env %q uid %d gid %d, or an error",
			got.Args, got.Env, got.UID, got.GID, c.Args, c.Env, c.UID, c.GID)
	}
}

// Regression: Decode accepts trailing bytes after the last field.
func TestDecodeTrailing(t *testing.T) {
	t.Parallel()
	b := append(Encode(&Config{Args: []string{"x"}}), "junk\x00"...)
	if c, err := Decode(b); err == nil {
		t.Fatalf("Decode with trailing data = %+v; want errCorrupt", c)
	}
}
