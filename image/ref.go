package image

import (
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// ParseRef parses a user's image reference with Docker's defaults: busybox
// is docker.io/library/busybox:latest. Registries on loopback and in
// insecure are spoken to over plain HTTP.
func ParseRef(s string, insecure []string) (name.Reference, error) {
	if s == "" {
		return nil, errdefs.InvalidArgument("invalid reference format: empty")
	}
	var opts []name.Option
	if reg, _, ok := strings.Cut(s, "/"); ok && isInsecure(reg, insecure) {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(s, opts...)
	if err != nil {
		return nil, errdefs.InvalidArgument("invalid reference format: %s", s)
	}
	return r, nil
}

func isInsecure(registry string, insecure []string) bool {
	for _, i := range insecure {
		if i == registry {
			return true
		}
	}
	return false
}

// Canonical is the full form of a reference, as the store keys it:
// docker.io/library/busybox:latest, registry:5000/team/app@sha256:….
func Canonical(r name.Reference) string {
	return canonicalRepo(r.Context()) + sep(r) + r.Identifier()
}

func canonicalRepo(repo name.Repository) string {
	reg := repo.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + repo.RepositoryStr()
}

func sep(r name.Reference) string {
	if _, ok := r.(name.Digest); ok {
		return "@"
	}
	return ":"
}

// Familiar is how Docker shows a canonical name: busybox:latest,
// registry:5000/team/app:1.
func Familiar(canonical string) string {
	s := strings.TrimPrefix(canonical, "docker.io/")
	if rest, ok := strings.CutPrefix(s, "library/"); ok && !strings.Contains(rest, "/") {
		return rest
	}
	return s
}

// SplitName splits a canonical name into repository and tag (or digest).
func SplitName(canonical string) (repo, tag string) {
	if i := strings.LastIndex(canonical, "@"); i >= 0 {
		return canonical[:i], canonical[i+1:]
	}
	if i := strings.LastIndex(canonical, ":"); i > strings.LastIndex(canonical, "/") {
		return canonical[:i], canonical[i+1:]
	}
	return canonical, ""
}
