//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// TestDockerRegistryAuth: docker login, push and pull against a registry
// with basic auth. The CLI sends its credentials with each pull and push
// (X-Registry-Auth), which must work without Hearth's stored login.
func TestDockerRegistryAuth(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, basicAuth)
	d := newDockerEnv(t)
	ref := reg.Host + "/private/busybox:1"
	d.ok(t, "tag", dockerImg, ref)

	if r := d.docker(t, "push", ref); r.code == 0 {
		t.Fatalf("push without login: %s", r)
	}
	if r := d.dockerWith(t, cmdOpts{stdin: strings.NewReader("wrong\n")}, "login", "-u", regUser, "--password-stdin", reg.Host); r.code == 0 {
		t.Fatalf("login with a wrong password: %s", r)
	}
	r := d.dockerWith(t, cmdOpts{stdin: strings.NewReader(regPass + "\n")}, "login", "-u", regUser, "--password-stdin", reg.Host)
	if r.code != 0 || !strings.Contains(r.stdout, "Login Succeeded") {
		t.Fatalf("login: %s", r)
	}
	d.ok(t, "push", ref)
	d.ok(t, "rmi", ref)

	// Hearth forgets its stored login: the CLI's own credentials, sent
	// with the call, still pull.
	d.n.must("image", "logout", reg.Host)
	out := d.ok(t, "pull", ref)
	if !strings.Contains(out, "Downloaded newer image for "+ref) {
		t.Fatalf("pull with the CLI's credentials: %s", out)
	}
	if got := strings.TrimSpace(d.ok(t, "run", "--rm", ref, "echo", "private")); got != "private" {
		t.Fatalf("run of the pulled image: %q", got)
	}
	d.ok(t, "rmi", ref)

	// Logged out on both sides, the registry refuses.
	d.ok(t, "logout", reg.Host)
	r = d.docker(t, "pull", ref)
	if r.code == 0 || !strings.Contains(r.stderr, "pull access denied") {
		t.Fatalf("pull after logout: %s", r)
	}
}
