package guest

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

const testPasswd = `# system users
root:x:0:0:root:/root:/bin/sh

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
this line is malformed
short:x:7
badid:x:notanumber:0::/home/bad:/bin/sh
badgid:x:8:-1::/home/bad:/bin/sh
   alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001:Bob:/home/bob:/bin/sh
nohome:x:1002:1002
emptyhome:x:1003:1003:::/bin/sh
alice:x:2000:2000:Second Alice:/home/alice2:/bin/sh
#carol:x:1004:1004::/home/carol:/bin/sh
`

const testGroup = `# groups
root:x:0:
daemon:x:1:
alice:x:1000:alice
bob:x:1001:
staff:x:50:alice,bob
wheel:x:10:bob,alice
broken:x:oops:alice
short:x
audio:x:29:
video:x:44:carol
`

func TestResolveUser(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec string
		want ExecUser
	}{
		{"", ExecUser{UID: 0, GID: 0, Home: "/root"}},
		{"root", ExecUser{UID: 0, GID: 0, Home: "/root"}},
		{"0", ExecUser{UID: 0, GID: 0, Home: "/root"}},
		{"daemon", ExecUser{UID: 1, GID: 1, Home: "/usr/sbin"}},
		// alice is a member of alice (her primary group, listed), staff
		// and wheel, in file order.
		{"alice", ExecUser{UID: 1000, GID: 1000, Groups: []uint32{1000, 50, 10}, Home: "/home/alice"}},
		{"1000", ExecUser{UID: 1000, GID: 1000, Groups: []uint32{1000, 50, 10}, Home: "/home/alice"}},
		{"bob", ExecUser{UID: 1001, GID: 1001, Groups: []uint32{50, 10}, Home: "/home/bob"}},
		{"1000:50", ExecUser{UID: 1000, GID: 50, Home: "/home/alice"}},
		{"alice:staff", ExecUser{UID: 1000, GID: 50, Home: "/home/alice"}},
		{"alice:50", ExecUser{UID: 1000, GID: 50, Home: "/home/alice"}},
		{"alice:9999", ExecUser{UID: 1000, GID: 9999, Home: "/home/alice"}},
		{"0:wheel", ExecUser{UID: 0, GID: 10, Home: "/root"}},
		{"4242", ExecUser{UID: 4242, GID: 0, Home: "/"}},
		{"4242:4242", ExecUser{UID: 4242, GID: 4242, Home: "/"}},
		{"4242:audio", ExecUser{UID: 4242, GID: 29, Home: "/"}},
		{"4294967295", ExecUser{UID: 4294967295, GID: 0, Home: "/"}},
		// Entries without a home, or with an empty one, leave "/".
		{"nohome", ExecUser{UID: 1002, GID: 1002, Home: "/"}},
		{"emptyhome", ExecUser{UID: 1003, GID: 1003, Home: "/"}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			got, err := ResolveUser(tt.spec, strings.NewReader(testPasswd), strings.NewReader(testGroup))
			if err != nil {
				t.Fatalf("ResolveUser(%q): %v", tt.spec, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ResolveUser(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestResolveUserErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec string
		want string
	}{
		{"mallory", "unable to find user mallory: no matching entries in passwd file"},
		{"mallory:staff", "unable to find user mallory: no matching entries in passwd file"},
		{"carol", "unable to find user carol: no matching entries in passwd file"}, // commented out
		{"badid", "unable to find user badid: no matching entries in passwd file"}, // unparsable uid
		{"-1", "unable to find user -1: no matching entries in passwd file"},
		{"4294967296", "unable to find user 4294967296: no matching entries in passwd file"},
		{"alice:nogroup", "unable to find group nogroup: no matching entries in group file"},
		{"1000:broken", "unable to find group broken: no matching entries in group file"}, // unparsable gid
		{"alice:", `invalid user "alice:": empty group`},
		{":", `invalid user ":": empty group`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			_, err := ResolveUser(tt.spec, strings.NewReader(testPasswd), strings.NewReader(testGroup))
			if err == nil {
				t.Fatalf("ResolveUser(%q) succeeded; want %q", tt.spec, tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("ResolveUser(%q) error %q; want %q", tt.spec, err, tt.want)
			}
		})
	}
}

func TestResolveUserNoFiles(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec    string
		want    ExecUser
		wantErr string
	}{
		{spec: "", want: ExecUser{Home: "/"}},
		{spec: "0", want: ExecUser{Home: "/"}},
		{spec: "1000", want: ExecUser{UID: 1000, Home: "/"}},
		{spec: "1000:50", want: ExecUser{UID: 1000, GID: 50, Home: "/"}},
		{spec: "root", wantErr: "unable to find user root: no matching entries in passwd file"},
		{spec: "0:staff", wantErr: "unable to find group staff: no matching entries in group file"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			t.Parallel()
			got, err := ResolveUser(tt.spec, nil, nil)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("ResolveUser(%q) = %+v, %v; want error %q", tt.spec, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveUser(%q): %v", tt.spec, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ResolveUser(%q) = %+v, want %+v", tt.spec, got, tt.want)
			}
		})
	}
}

func TestResolveUserOneFileMissing(t *testing.T) {
	t.Parallel()
	// passwd without group: a name resolves, with no supplementary groups.
	got, err := ResolveUser("alice", strings.NewReader(testPasswd), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ExecUser{UID: 1000, GID: 1000, Home: "/home/alice"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// group without passwd: a numeric user with a named group.
	got, err = ResolveUser("5:staff", nil, strings.NewReader(testGroup))
	if err != nil {
		t.Fatal(err)
	}
	want = ExecUser{UID: 5, GID: 50, Home: "/"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
}

func TestResolveUserReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name          string
		passwd, group io.Reader
		want          string
	}{
		{"passwd", iotest.ErrReader(boom), strings.NewReader(testGroup), "read passwd file: boom"},
		{"group", strings.NewReader(testPasswd), iotest.ErrReader(boom), "read group file: boom"},
		{"passwd after data", io.MultiReader(strings.NewReader("root:x:0:0::/root:/bin/sh\n"), iotest.ErrReader(boom)), nil, "read passwd file: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ResolveUser("root", tt.passwd, tt.group)
			if err == nil || err.Error() != tt.want || !errors.Is(err, boom) {
				t.Fatalf("ResolveUser = %v; want %q wrapping boom", err, tt.want)
			}
		})
	}
}

func TestResolveUserLongLine(t *testing.T) {
	t.Parallel()
	// A group with many members, longer than bufio's default 64KiB token.
	members := make([]string, 0, 20000)
	for i := range 20000 {
		members = append(members, "user"+strings.Repeat("x", i%7))
	}
	members = append(members, "alice")
	group := "big:x:77:" + strings.Join(members, ",") + "\n"
	if len(group) < 100<<10 {
		t.Fatalf("test line is only %d bytes", len(group))
	}
	got, err := ResolveUser("alice", strings.NewReader(testPasswd), strings.NewReader(group))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Groups, []uint32{77}) {
		t.Fatalf("groups = %v, want [77]", got.Groups)
	}
}
