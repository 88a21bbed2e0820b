package image

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

func TestParseRef(t *testing.T) {
	t.Parallel()
	dig := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		in        string
		canonical string
		familiar  string
		repo, tag string
		digest    bool
		scheme    string
	}{
		{"busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io/library/busybox", "latest", false, "https"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36", "docker.io/library/busybox", "1.36", false, "https"},
		{"library/busybox:1", "docker.io/library/busybox:1", "busybox:1", "docker.io/library/busybox", "1", false, "https"},
		{"docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io/library/busybox", "latest", false, "https"},
		{"index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io/library/busybox", "latest", false, "https"},
		{"user/repo", "docker.io/user/repo:latest", "user/repo:latest", "docker.io/user/repo", "latest", false, "https"},
		{"docker.io/library/a/b:2", "docker.io/library/a/b:2", "library/a/b:2", "docker.io/library/a/b", "2", false, "https"},
		{"ghcr.io/org/app:v1", "ghcr.io/org/app:v1", "ghcr.io/org/app:v1", "ghcr.io/org/app", "v1", false, "https"},
		{"localhost:5000/a/b", "localhost:5000/a/b:latest", "localhost:5000/a/b:latest", "localhost:5000/a/b", "latest", false, "http"},
		{"127.0.0.1:5000/x@" + dig, "127.0.0.1:5000/x@" + dig, "127.0.0.1:5000/x@" + dig, "127.0.0.1:5000/x", dig, true, "http"},
		{"busybox@" + dig, "docker.io/library/busybox@" + dig, "busybox@" + dig, "docker.io/library/busybox", dig, true, "https"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			r, err := ParseRef(tt.in, nil)
			if err != nil {
				t.Fatalf("ParseRef: %v", err)
			}
			if _, isDigest := r.(name.Digest); isDigest != tt.digest {
				t.Errorf("digest reference: %v, want %v", isDigest, tt.digest)
			}
			c := Canonical(r)
			if c != tt.canonical {
				t.Errorf("Canonical = %q, want %q", c, tt.canonical)
			}
			if f := Familiar(c); f != tt.familiar {
				t.Errorf("Familiar(%q) = %q, want %q", c, f, tt.familiar)
			}
			repo, tag := SplitName(c)
			if repo != tt.repo || tag != tt.tag {
				t.Errorf("SplitName(%q) = %q, %q; want %q, %q", c, repo, tag, tt.repo, tt.tag)
			}
			if s := r.Context().Registry.Scheme(); s != tt.scheme {
				t.Errorf("scheme %s, want %s", s, tt.scheme)
			}
			// The canonical form parses to itself.
			r2, err := ParseRef(c, nil)
			if err != nil || Canonical(r2) != c {
				t.Errorf("canonical %q reparses to %v, %v", c, r2, err)
			}
		})
	}
}

func TestParseRefInvalid(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "UPPER/x", "a::b", "@sha256:zz", "busybox@sha256:zz", "x y", "busybox:", ":tag"} {
		r, err := ParseRef(in, nil)
		if err == nil {
			t.Errorf("ParseRef(%q) = %v, want an error", in, r)
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "invalid reference format") {
			t.Errorf("ParseRef(%q) = %v, want an InvalidArgument \"invalid reference format\"", in, err)
		}
	}
}

func TestParseRefInsecure(t *testing.T) {
	t.Parallel()
	insecure := []string{"registry.internal:5000", "plain.example"}
	tests := []struct {
		in       string
		insecure []string
		scheme   string
	}{
		{"registry.internal:5000/team/app:1", insecure, "http"},
		{"plain.example/app", insecure, "http"},
		{"registry.internal:5000/team/app:1", nil, "https"},
		{"registry.internal/team/app:1", insecure, "https"}, // another port is another registry
		{"registry.internal:5001/app", insecure, "https"},
		{"ghcr.io/org/app", insecure, "https"},
		{"busybox", []string{"docker.io", "index.docker.io"}, "https"},
		{"localhost:5000/app", nil, "http"},
		{"[::1]:5000/app", nil, "http"},
		{"127.0.0.1:8080/app", nil, "http"},
	}
	for _, tt := range tests {
		r, err := ParseRef(tt.in, tt.insecure)
		if err != nil {
			t.Errorf("ParseRef(%q): %v", tt.in, err)
			continue
		}
		if s := r.Context().Registry.Scheme(); s != tt.scheme {
			t.Errorf("ParseRef(%q, %v): scheme %s, want %s", tt.in, tt.insecure, s, tt.scheme)
		}
	}
}

func TestFamiliarAndSplitName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		canonical, familiar, repo, tag string
	}{
		{"docker.io/library/busybox:latest", "busybox:latest", "docker.io/library/busybox", "latest"},
		{"docker.io/user/repo:1", "user/repo:1", "docker.io/user/repo", "1"},
		{"registry:5000/team/app:1", "registry:5000/team/app:1", "registry:5000/team/app", "1"},
		{"registry:5000/team/app", "registry:5000/team/app", "registry:5000/team/app", ""},
		{"docker.io.example.com/library/x:1", "docker.io.example.com/library/x:1", "docker.io.example.com/library/x", "1"},
		{"quay.io/library/x:1", "quay.io/library/x:1", "quay.io/library/x", "1"},
		{"docker.io/library/busybox", "busybox", "docker.io/library/busybox", ""},
	}
	for _, tt := range tests {
		if f := Familiar(tt.canonical); f != tt.familiar {
			t.Errorf("Familiar(%q) = %q, want %q", tt.canonical, f, tt.familiar)
		}
		repo, tag := SplitName(tt.canonical)
		if repo != tt.repo || tag != tt.tag {
			t.Errorf("SplitName(%q) = %q, %q; want %q, %q", tt.canonical, repo, tag, tt.repo, tt.tag)
		}
	}
}
