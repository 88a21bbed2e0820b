//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-cloud/hearth/internal/testcluster"
	"github.com/hearth-cloud/hearth/internal/testregistry"
)

type registryAuth = testregistry.Auth

const (
	noAuth    = testregistry.NoAuth
	basicAuth = testregistry.Basic
	tokenAuth = testregistry.Token
	regUser   = testregistry.User
	regPass   = testregistry.Password
)

// registry is a real registry on loopback for one test.
type registry struct {
	Host    string
	dataDir string
}

func startRegistry(t *testing.T, auth registryAuth) *registry {
	t.Helper()
	r, err := testregistry.Start(t.TempDir(), auth)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return &registry{Host: r.Host, dataDir: r.DataDir}
}

// ports hands out loopback ports once per run: ports of nodes that have
// not started yet are free, but taken.
var ports testcluster.Ports

func freePort(t *testing.T) int {
	t.Helper()
	p, err := ports.One()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// imageHearth runs hearth with a data dir of the test's own, so image
// stores of parallel tests do not meet.
type imageEnv struct {
	data, run string
	env       []string
}

func newImageEnv(t *testing.T) *imageEnv {
	dir, err := os.MkdirTemp("/tmp", "hie")
	if err != nil {
		t.Fatal(err)
	}
	e := &imageEnv{data: filepath.Join(dir, "d"), run: filepath.Join(dir, "r"), env: []string{"DOCKER_CONFIG=" + filepath.Join(dir, "docker")}}
	t.Cleanup(func() {
		out, _ := exec.Command(hearthB, "--data-dir", e.data, "--run-dir", e.run, "cradle", "ls", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			exec.Command(hearthB, "--data-dir", e.data, "--run-dir", e.run, "cradle", "rm", "-f", id).Run()
		}
		os.RemoveAll(dir)
	})
	return e
}

func (e *imageEnv) run_(t *testing.T, o cmdOpts, args ...string) result {
	t.Helper()
	o.env = append(append([]string{}, e.env...), o.env...)
	return hearthWith(t, o, append([]string{"--data-dir", e.data, "--run-dir", e.run}, args...)...)
}

func (e *imageEnv) hearth(t *testing.T, args ...string) result {
	t.Helper()
	return e.run_(t, cmdOpts{}, args...)
}

func (e *imageEnv) must(t *testing.T, args ...string) string {
	t.Helper()
	r := e.hearth(t, args...)
	if r.code != 0 {
		t.Fatalf("hearth %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}
