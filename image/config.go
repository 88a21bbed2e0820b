package image

import (
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Overrides are what a user sets over an image's config, with Docker's
// meaning: nil leaves the image's value, non-nil replaces it.
type Overrides struct {
	// Entrypoint replaces the image's; a non-nil empty slice clears it.
	// Setting it also clears the image's Cmd, as Docker does.
	Entrypoint []string
	// Cmd replaces the image's Cmd when non-empty.
	Cmd []string
	// Env entries are KEY=VALUE; they replace the image's by key. A bare
	// KEY has already been resolved by the caller (or dropped).
	Env        []string
	WorkingDir string
	User       string
}

// ResolveProcess combines an image config with overrides into the process a
// container runs.
func ResolveProcess(cfg v1.Config, o Overrides) (spec.Process, error) {
	entrypoint := cfg.Entrypoint
	cmd := cfg.Cmd
	if o.Entrypoint != nil {
		entrypoint = o.Entrypoint
		cmd = nil
	}
	if len(o.Cmd) > 0 {
		cmd = o.Cmd
	}
	args := append(append([]string(nil), entrypoint...), cmd...)
	if len(args) == 0 {
		return spec.Process{}, errdefs.InvalidArgument("no command specified")
	}
	p := spec.Process{
		Args: args,
		Env:  MergeEnv(cfg.Env, o.Env),
		Cwd:  cfg.WorkingDir,
		User: cfg.User,
	}
	if o.WorkingDir != "" {
		p.Cwd = o.WorkingDir
	}
	if o.User != "" {
		p.User = o.User
	}
	if err := p.Validate(); err != nil {
		return spec.Process{}, errdefs.InvalidArgument("%v", err)
	}
	return p, nil
}

// MergeEnv applies KEY=VALUE overrides to a base environment: an override
// replaces the base entry with the same key in place, and new keys follow
// in order.
func MergeEnv(base, over []string) []string {
	out := append([]string(nil), base...)
	index := map[string]int{}
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		index[k] = i
	}
	for _, e := range over {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := index[k]; ok {
			out[i] = e
			continue
		}
		index[k] = len(out)
		out = append(out, e)
	}
	return out
}
