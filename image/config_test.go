package image

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

func TestResolveProcess(t *testing.T) {
	t.Parallel()
	full := v1.Config{
		Entrypoint: []string{"/entry", "-v"},
		Cmd:        []string{"serve", "--port=80"},
		Env:        []string{"PATH=/usr/bin:/bin", "LANG=C"},
		WorkingDir: "/app",
		User:       "www",
	}
	cmdOnly := v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}
	entryOnly := v1.Config{Entrypoint: []string{"/entry"}}
	tests := []struct {
		name string
		cfg  v1.Config
		o    Overrides
		want spec.Process
	}{
		{"image defaults", full, Overrides{},
			spec.Process{Args: []string{"/entry", "-v", "serve", "--port=80"}, Env: []string{"PATH=/usr/bin:/bin", "LANG=C"}, Cwd: "/app", User: "www"}},
		{"args replace cmd", full, Overrides{Cmd: []string{"migrate"}},
			spec.Process{Args: []string{"/entry", "-v", "migrate"}, Env: full.Env, Cwd: "/app", User: "www"}},
		{"empty args keep cmd", full, Overrides{Cmd: []string{}},
			spec.Process{Args: []string{"/entry", "-v", "serve", "--port=80"}, Env: full.Env, Cwd: "/app", User: "www"}},
		{"entrypoint clears image cmd", full, Overrides{Entrypoint: []string{"/bin/sh"}},
			spec.Process{Args: []string{"/bin/sh"}, Env: full.Env, Cwd: "/app", User: "www"}},
		{"entrypoint and args", full, Overrides{Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "id"}},
			spec.Process{Args: []string{"/bin/sh", "-c", "id"}, Env: full.Env, Cwd: "/app", User: "www"}},
		{"empty entrypoint and args", full, Overrides{Entrypoint: []string{}, Cmd: []string{"ls", "-l"}},
			spec.Process{Args: []string{"ls", "-l"}, Env: full.Env, Cwd: "/app", User: "www"}},
		{"cmd only image", cmdOnly, Overrides{},
			spec.Process{Args: []string{"sh"}, Env: []string{"PATH=/bin"}}},
		{"cmd only image with args", cmdOnly, Overrides{Cmd: []string{"echo", "hi"}},
			spec.Process{Args: []string{"echo", "hi"}, Env: []string{"PATH=/bin"}}},
		{"entrypoint only image", entryOnly, Overrides{},
			spec.Process{Args: []string{"/entry"}}},
		{"entrypoint only image with args", entryOnly, Overrides{Cmd: []string{"a", "b"}},
			spec.Process{Args: []string{"/entry", "a", "b"}}},
		{"empty image with args", v1.Config{}, Overrides{Cmd: []string{"true"}},
			spec.Process{Args: []string{"true"}}},
		{"env merge", full, Overrides{Env: []string{"LANG=en_US.UTF-8", "NEW=1", "PATH=/opt/bin"}},
			spec.Process{Args: []string{"/entry", "-v", "serve", "--port=80"}, Env: []string{"PATH=/opt/bin", "LANG=en_US.UTF-8", "NEW=1"}, Cwd: "/app", User: "www"}},
		{"workdir and user override", full, Overrides{WorkingDir: "/tmp", User: "1000:1000"},
			spec.Process{Args: []string{"/entry", "-v", "serve", "--port=80"}, Env: full.Env, Cwd: "/tmp", User: "1000:1000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfgBefore := deepCopyConfig(tt.cfg)
			got, err := ResolveProcess(tt.cfg, tt.o)
			if err != nil {
				t.Fatalf("ResolveProcess: %v", err)
			}
			if !sameProcess(got, tt.want) {
				t.Fatalf("ResolveProcess = %+v\nwant %+v", got, tt.want)
			}
			if !reflect.DeepEqual(tt.cfg, cfgBefore) {
				t.Fatalf("ResolveProcess changed the image config to %+v", tt.cfg)
			}
		})
	}
}

// ResolveProcess must not write into the image config's arrays, which
// append could do when Entrypoint has spare capacity.
func TestResolveProcessDoesNotAlias(t *testing.T) {
	t.Parallel()
	ep := make([]string, 1, 8)
	ep[0] = "/entry"
	cfg := v1.Config{Entrypoint: ep, Cmd: []string{"a"}, Env: append(make([]string, 0, 8), "A=1")}
	p1, err := ResolveProcess(cfg, Overrides{Env: []string{"B=2"}})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ResolveProcess(cfg, Overrides{Cmd: []string{"b"}, Env: []string{"C=3"}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p1.Args, []string{"/entry", "a"}) || !reflect.DeepEqual(p1.Env, []string{"A=1", "B=2"}) {
		t.Fatalf("first process changed by the second: %+v", p1)
	}
	if !reflect.DeepEqual(p2.Args, []string{"/entry", "b"}) || !reflect.DeepEqual(p2.Env, []string{"A=1", "C=3"}) {
		t.Fatalf("second process %+v", p2)
	}
}

func TestResolveProcessErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  v1.Config
		o    Overrides
		want string
	}{
		{"empty image", v1.Config{}, Overrides{}, "no command specified"},
		{"entrypoint cleared, no args", v1.Config{Entrypoint: []string{"/e"}, Cmd: []string{"x"}}, Overrides{Entrypoint: []string{}}, "no command specified"},
		{"env only", v1.Config{Env: []string{"A=1"}}, Overrides{Env: []string{"B=2"}}, "no command specified"},
		{"relative workdir", v1.Config{Cmd: []string{"x"}}, Overrides{WorkingDir: "rel"}, `working directory "rel" is not an absolute path`},
		{"relative image workdir", v1.Config{Cmd: []string{"x"}, WorkingDir: "app"}, Overrides{}, `working directory "app" is not an absolute path`},
		{"bad env", v1.Config{Cmd: []string{"x"}}, Overrides{Env: []string{"=oops"}}, `invalid environment variable "=oops"`},
		{"empty command", v1.Config{Cmd: []string{""}}, Overrides{}, "no command given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := ResolveProcess(tt.cfg, tt.o)
			if err == nil {
				t.Fatalf("ResolveProcess = %+v; want error %q", p, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ResolveProcess error %q; want %q", err, tt.want)
			}
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("error %v is not ErrInvalidArgument", err)
			}
			if p.Args != nil || p.Env != nil || p.Cwd != "" || p.User != "" {
				t.Fatalf("a failed ResolveProcess returned %+v", p)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		base, over []string
		want       []string
	}{
		{"both empty", nil, nil, nil},
		{"base only", []string{"A=1", "B=2"}, nil, []string{"A=1", "B=2"}},
		{"over only", nil, []string{"A=1"}, []string{"A=1"}},
		{"replace in place", []string{"A=1", "B=2", "C=3"}, []string{"B=x"}, []string{"A=1", "B=x", "C=3"}},
		{"append new in order", []string{"A=1"}, []string{"Z=26", "M=13"}, []string{"A=1", "Z=26", "M=13"}},
		{"replace and append", []string{"PATH=/bin", "HOME=/"}, []string{"FOO=bar", "HOME=/root"}, []string{"PATH=/bin", "HOME=/root", "FOO=bar"}},
		{"empty value replaces", []string{"A=1"}, []string{"A="}, []string{"A="}},
		{"value with equals", []string{"A=1"}, []string{"A=b=c"}, []string{"A=b=c"}},
		{"repeated override, last wins in place", []string{"A=1"}, []string{"N=1", "A=2", "N=2", "A=3"}, []string{"A=3", "N=2"}},
		{"keys are case sensitive", []string{"path=/x"}, []string{"PATH=/y"}, []string{"path=/x", "PATH=/y"}},
		{"prefix is not a key", []string{"AB=1"}, []string{"A=2"}, []string{"AB=1", "A=2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			base := append([]string(nil), tt.base...)
			got := MergeEnv(base, tt.over)
			if len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(got, tt.want)) {
				t.Fatalf("MergeEnv(%q, %q) = %q, want %q", tt.base, tt.over, got, tt.want)
			}
			if !reflect.DeepEqual(base, append([]string(nil), tt.base...)) {
				t.Fatalf("MergeEnv changed its base to %q", base)
			}
		})
	}
}

func sameProcess(a, b spec.Process) bool {
	norm := func(p spec.Process) spec.Process {
		if len(p.Env) == 0 {
			p.Env = nil
		}
		return p
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

func deepCopyConfig(c v1.Config) v1.Config {
	cp := func(s []string) []string {
		if s == nil {
			return nil
		}
		return append([]string{}, s...)
	}
	c.Entrypoint, c.Cmd, c.Env = cp(c.Entrypoint), cp(c.Cmd), cp(c.Env)
	return c
}
