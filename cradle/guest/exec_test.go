package guest

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestProcessEnv(t *testing.T) {
	t.Parallel()
	u := ExecUser{UID: 1000, Home: "/home/alice"}
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"empty", nil, []string{"PATH=" + defaultPath, "HOME=/home/alice"}},
		{"has PATH", []string{"PATH=/bin"}, []string{"PATH=/bin", "HOME=/home/alice"}},
		{"has HOME", []string{"A=1", "HOME=/x"}, []string{"A=1", "HOME=/x", "PATH=" + defaultPath}},
		{"has both", []string{"HOME=", "PATH="}, []string{"HOME=", "PATH="}},
		{"prefix is not the key", []string{"PATHS=1", "HOMEDIR=2"}, []string{"PATHS=1", "HOMEDIR=2", "PATH=" + defaultPath, "HOME=/home/alice"}},
		{"bare key is not a value", []string{"PATH"}, []string{"PATH", "PATH=" + defaultPath, "HOME=/home/alice"}},
		{"lower case is another key", []string{"path=/x", "home=/y"}, []string{"path=/x", "home=/y", "PATH=" + defaultPath, "HOME=/home/alice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Spare capacity: processEnv must not write into the caller's
			// backing array, nor change the entries it has.
			in := make([]string, len(tt.env), len(tt.env)+4)
			copy(in, tt.env)
			got := processEnv(in, u)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("processEnv(%q) = %q, want %q", tt.env, got, tt.want)
			}
			for i, e := range in[:cap(in)] {
				if i < len(tt.env) && e != tt.env[i] || i >= len(tt.env) && e != "" {
					t.Fatalf("processEnv changed the caller's array: %q", in[:cap(in)])
				}
			}
		})
	}
}

// makeRoot builds a container tree for lookPath:
//
//	/bin/sh                 exec
//	/bin/noexec             0644
//	/bin/dir/               a directory
//	/bin/abslink  -> /opt/tools/tool       (absolute, inside the root)
//	/bin/rellink  -> ../opt/tools/tool
//	/bin/hostlink -> <a host file outside the root>
//	/bin/escape   -> ../../../../../../<the same host file>
//	/bin/dangling -> /nowhere
//	/bin/loop     -> loop
//	/bin/linkdir  -> /opt/tools            (a symlinked directory)
//	/usr/bin/tool           exec
//	/usr/local/bin/tool     exec
//	/usr/local/bin/noexec2  0600
//	/usr/local/bin/onlyuser 0100
//	/usr/bin/noexec2        exec
//	/opt/tools/tool         exec
//	/work/script            exec
//	/work/data              0644
//	/work/sub/run           exec
//
// It returns the root and the host file's name (relative to /).
func makeRoot(t *testing.T) (string, string) {
	t.Helper()
	root := t.TempDir()
	// A file that exists on the host but not in the root.
	hostDir := t.TempDir()
	hostFile := filepath.Join(hostDir, "hostonly")
	if err := os.WriteFile(hostFile, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]os.FileMode{
		"bin/sh":                 0o755,
		"bin/noexec":             0o644,
		"usr/bin/tool":           0o755,
		"usr/local/bin/tool":     0o755,
		"usr/local/bin/noexec2":  0o600,
		"usr/bin/noexec2":        0o700,
		"opt/tools/tool":         0o755,
		"work/script":            0o755,
		"work/data":              0o644,
		"work/sub/run":           0o755,
		"usr/local/bin/onlyuser": 0o100,
	}
	for name, mode := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(root, "bin/dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"bin/abslink":  "/opt/tools/tool",
		"bin/rellink":  "../opt/tools/tool",
		"bin/hostlink": hostFile,
		"bin/escape":   "../../../../../../../../.." + hostFile,
		"bin/dangling": "/nowhere",
		"bin/loop":     "loop",
		"bin/linkdir":  "/opt/tools",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	return root, hostFile
}

func TestLookPath(t *testing.T) {
	t.Parallel()
	root, hostFile := makeRoot(t)
	const notFound = "executable file not found in $PATH"
	tests := []struct {
		name     string
		cwd      string
		cmd      string
		env      []string
		want     string // the path to exec, when found
		wantCode int    // else the error
		wantMsg  string
	}{
		{name: "default PATH", cmd: "sh", want: "/bin/sh"},
		{name: "default PATH order", cmd: "tool", want: "/usr/local/bin/tool"},
		{name: "PATH order", cmd: "tool", env: []string{"PATH=/usr/bin:/usr/local/bin"}, want: "/usr/bin/tool"},
		{name: "last PATH wins", cmd: "tool", env: []string{"PATH=/nope", "A=b", "PATH=/opt/tools"}, want: "/opt/tools/tool"},
		{name: "mode 0100", cmd: "onlyuser", want: "/usr/local/bin/onlyuser"},
		{name: "absolute symlink resolves in root", cmd: "abslink", env: []string{"PATH=/bin"}, want: "/bin/abslink"},
		{name: "relative symlink", cmd: "rellink", env: []string{"PATH=/bin"}, want: "/bin/rellink"},
		{name: "symlinked PATH dir", cmd: "tool", env: []string{"PATH=/bin/linkdir"}, want: "/bin/linkdir/tool"},
		{name: "PATH dir with dot-dot", cmd: "tool", env: []string{"PATH=/../../../opt/tools"}, want: "/opt/tools/tool"},
		{name: "empty PATH element is cwd", cwd: "/work", cmd: "script", env: []string{"PATH=/bin:"}, want: "script"},
		{name: "relative PATH element", cwd: "/work", cmd: "run", env: []string{"PATH=sub"}, want: "sub/run"},
		{name: "skips non-executable for a later one", cmd: "noexec2", want: "/usr/bin/noexec2"},

		{name: "missing", cmd: "nope", wantCode: 127, wantMsg: `exec: "nope": ` + notFound},
		{name: "missing with empty PATH", cmd: "sh", env: []string{"PATH="}, wantCode: 127, wantMsg: `exec: "sh": ` + notFound},
		{name: "symlink to host file", cmd: "hostlink", env: []string{"PATH=/bin"}, wantCode: 127, wantMsg: `exec: "hostlink": ` + notFound},
		{name: "symlink escaping with dot-dot", cmd: "escape", env: []string{"PATH=/bin"}, wantCode: 127, wantMsg: `exec: "escape": ` + notFound},
		{name: "host PATH dir", cmd: filepath.Base(hostFile), env: []string{"PATH=" + filepath.Dir(hostFile)}, wantCode: 127, wantMsg: notFound},
		{name: "dangling symlink", cmd: "dangling", env: []string{"PATH=/bin"}, wantCode: 127, wantMsg: notFound},
		{name: "symlink loop", cmd: "loop", env: []string{"PATH=/bin"}, wantCode: 127, wantMsg: notFound},
		{name: "not executable", cmd: "noexec", wantCode: 126, wantMsg: `exec: "noexec": permission denied`},
		{name: "directory", cmd: "dir", wantCode: 126, wantMsg: `exec: "dir": permission denied`},
		{name: "directory on PATH name", cmd: "bin", env: []string{"PATH=/"}, wantCode: 126, wantMsg: "permission denied"},

		{name: "absolute", cmd: "/usr/bin/tool", want: "/usr/bin/tool"},
		{name: "absolute ignores PATH", cmd: "/usr/bin/tool", env: []string{"PATH="}, want: "/usr/bin/tool"},
		{name: "absolute through symlink", cmd: "/bin/abslink", want: "/bin/abslink"},
		{name: "relative to cwd", cwd: "/work", cmd: "./script", want: "./script"},
		{name: "relative subdir", cwd: "/work", cmd: "sub/run", want: "sub/run"},
		{name: "relative dot-dot", cwd: "/work/sub", cmd: "../script", want: "../script"},
		{name: "relative from root", cwd: "/", cmd: "bin/sh", want: "bin/sh"},
		{name: "relative wrong cwd", cwd: "/", cmd: "./script", wantCode: 127, wantMsg: `exec: "./script": no such file or directory`},
		{name: "absolute missing", cmd: "/nope/x", wantCode: 127, wantMsg: `exec: "/nope/x": no such file or directory`},
		{name: "absolute to host file", cmd: hostFile, wantCode: 127, wantMsg: "no such file or directory"},
		{name: "absolute symlink to host file", cmd: "/bin/hostlink", wantCode: 127, wantMsg: `exec: "/bin/hostlink": no such file or directory`},
		{name: "absolute not executable", cmd: "/work/data", wantCode: 126, wantMsg: `exec: "/work/data": permission denied`},
		{name: "absolute directory", cmd: "/bin/dir", wantCode: 126, wantMsg: `exec: "/bin/dir": permission denied`},
		{name: "relative not executable", cwd: "/work", cmd: "./data", wantCode: 126, wantMsg: `exec: "./data": permission denied`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cwd := tt.cwd
			if cwd == "" {
				cwd = "/"
			}
			got, err := lookPath(root, cwd, tt.cmd, tt.env)
			if tt.wantCode == 0 {
				if err != nil {
					t.Fatalf("lookPath(%q): %v", tt.cmd, err)
				}
				if got != tt.want {
					t.Fatalf("lookPath(%q) = %q, want %q", tt.cmd, got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("lookPath(%q) = %q; want error %d", tt.cmd, got, tt.wantCode)
			}
			var ee *execError
			if !errors.As(err, &ee) {
				t.Fatalf("lookPath(%q) error %T %v; want *execError", tt.cmd, err, err)
			}
			if ee.Code != tt.wantCode || !strings.Contains(ee.Msg, tt.wantMsg) || ee.Error() != ee.Msg {
				t.Fatalf("lookPath(%q) = %d %q; want %d %q", tt.cmd, ee.Code, ee.Msg, tt.wantCode, tt.wantMsg)
			}
		})
	}
}
