//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hearth-cloud/hearth/macro/pki"
	"github.com/hearth-cloud/hearth/macro/store"
	"github.com/hearth-cloud/hearth/tenancy"
)

// writeClientCert writes ca.pem, cert.pem and key.pem for a client, as
// DOCKER_CERT_PATH wants them, signed by sign.
func writeClientCert(t *testing.T, caPEM []byte, sign func(pub any) ([]byte, error)) string {
	t.Helper()
	key, keyPEM, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := sign(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"ca.pem": caPEM, "cert.pem": cert, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// etcdEndpoint is the node's etcd client URL (from its flags).
func (n *upNode) etcdEndpoint() string {
	for i, a := range n.Up {
		if a == "--etcd-listen-client" && i+1 < len(n.Up) {
			return n.Up[i+1]
		}
	}
	n.t.Fatal("the node has no --etcd-listen-client")
	return ""
}

// tenantCA reads the node's tenant CA from its etcd, with the node's own
// credentials.
func (n *upNode) tenantCA() *pki.CA {
	n.t.Helper()
	_, clientTLS, err := pki.Dir(filepath.Join(n.Data, "pki")).TLS()
	if err != nil {
		n.t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{n.etcdEndpoint()}, TLS: clientTLS, DialTimeout: 10 * time.Second})
	if err != nil {
		n.t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca, err := tenancy.LoadCA(ctx, store.New(cli))
	if err != nil {
		n.t.Fatal(err)
	}
	return ca
}

// TestDockerTLS: the Docker API on --docker-listen takes a tenant's
// client certificate of the tenant CA, acts for that tenant, and refuses
// every other client.
func TestDockerTLS(t *testing.T) {
	t.Parallel()
	n := newUpNode(t, "tls1")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	n.start("--docker-listen", addr)
	n.must("image", "load", "-q", "-i", img.busybox)
	ca, err := pki.Dir(filepath.Join(n.Data, "pki")).LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	tca := n.tenantCA()
	d := &dockerEnv{n: n, bin: "/usr/local/bin/docker", sock: filepath.Join(n.Run, "docker.sock"), config: t.TempDir()}
	tenant := createTenant(t, d, addr, "acme").dir
	tlsEnv := func(dir string) cmdOpts {
		return cmdOpts{env: []string{"DOCKER_HOST=tcp://" + addr, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + dir}}
	}
	acme := tlsEnv(tenant)

	if r := d.dockerWith(t, acme, "version", "--format", "{{.Server.APIVersion}}"); r.code != 0 || strings.TrimSpace(r.stdout) != "1.50" {
		t.Fatalf("docker version over TLS: %s", r)
	}
	// The tenant has its own images and containers: the admin's busybox
	// is not the tenant's until it loads it.
	if r := d.dockerWith(t, acme, "image", "inspect", dockerImg); r.code == 0 {
		t.Errorf("the admin's image is visible to a tenant: %s", r)
	}
	if r := d.dockerWith(t, acme, "load", "-i", img.busybox); r.code != 0 {
		t.Fatalf("docker load over TLS: %s", r)
	}
	if r := d.dockerWith(t, acme, "run", "--name", "web", dockerImg, "echo", "from acme"); r.code != 0 || r.stdout != "from acme\n" {
		t.Fatalf("docker run over TLS: %s", r)
	}
	if r := d.dockerWith(t, acme, "ps", "-a", "--format", "{{.Names}}"); r.stdout != "web\n" {
		t.Errorf("the tenant's ps: %s", r)
	}
	if out := d.ok(t, "ps", "-a", "-q"); out != "" {
		t.Errorf("the admin socket lists the tenant's containers: %q", out)
	}
	if r := d.docker(t, "rm", "web"); r.code == 0 || !strings.Contains(r.stderr, "No such container: web") {
		t.Errorf("the admin removed the tenant's container by name: %s", r)
	}
	// Networks are the tenant's own: the same name and subnet as the
	// admin's, and neither sees the other's.
	d.ok(t, "network", "create", "--subnet", "10.80.0.0/24", "app")
	if r := d.dockerWith(t, acme, "network", "create", "--subnet", "10.80.0.0/24", "app"); r.code != 0 {
		t.Errorf("the tenant's network of the admin's name and subnet: %s", r)
	}
	adminID := strings.TrimSpace(d.ok(t, "network", "inspect", "app", "--format", "{{.Id}}"))
	if r := d.dockerWith(t, acme, "network", "inspect", adminID); r.code == 0 || !strings.Contains(r.stderr, "not found") {
		t.Errorf("the tenant inspected the admin's network by ID: %s", r)
	}
	if r := d.dockerWith(t, acme, "network", "rm", "app"); r.code != 0 {
		t.Errorf("the tenant's network rm: %s", r)
	}
	if out := d.ok(t, "network", "inspect", "app", "--format", "{{.Id}}"); strings.TrimSpace(out) != adminID {
		t.Errorf("the admin's network after the tenant removed its own: %q", out)
	}
	d.ok(t, "network", "rm", "app")

	// Volumes too: the same name is two volumes with their own data. A
	// tenant may not bind the node's paths (403).
	d.ok(t, "volume", "create", "data")
	if r := d.dockerWith(t, acme, "run", "--rm", "-v", "data:/d", dockerImg, "sh", "-c", "ls /d; echo acme > /d/f"); r.code != 0 || r.stdout != "" {
		t.Errorf("the tenant's volume of the admin's name: %s", r)
	}
	if r := d.dockerWith(t, acme, "volume", "ls", "-q"); r.stdout != "data\n" {
		t.Errorf("the tenant's volume ls: %s", r)
	}
	if out := d.ok(t, "run", "--rm", "-v", "data:/d", dockerImg, "ls", "/d"); out != "" {
		t.Errorf("the admin's volume holds the tenant's data: %q", out)
	}
	if r := d.dockerWith(t, acme, "run", "--rm", "-v", "/etc:/host", dockerImg, "true"); r.code != 125 || !strings.Contains(r.stderr, "are for the cluster's admin") {
		t.Errorf("a tenant's bind mount: %s", r)
	}
	if r := d.dockerWith(t, acme, "volume", "rm", "data"); r.code != 0 {
		t.Errorf("the tenant's volume rm: %s", r)
	}
	d.ok(t, "volume", "inspect", "data")
	d.ok(t, "volume", "rm", "data")

	// Compose projects of one name in two tenants are two projects.
	d.useCompose(t)
	file := filepath.Join(t.TempDir(), "compose.yaml")
	if err := os.WriteFile(file, []byte("name: same\nservices:\n  s:\n    image: "+dockerImg+"\n    command: [sleep, \"1000\"]\n    volumes:\n      - vol:/v\nvolumes:\n  vol:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.ok(t, "compose", "-f", file, "up", "-d", "--wait")
	if r := d.dockerWith(t, acme, "compose", "-f", file, "up", "-d", "--wait"); r.code != 0 {
		t.Errorf("the tenant's compose up of the admin's project name: %s", r)
	}
	if r := d.dockerWith(t, acme, "compose", "-f", file, "ps", "-q"); len(strings.Fields(r.stdout)) != 1 {
		t.Errorf("the tenant's compose ps: %s", r)
	}
	d.ok(t, "compose", "-f", file, "down", "-v")
	if r := d.dockerWith(t, acme, "compose", "-f", file, "ps", "--format", "{{.State}}"); r.stdout != "running\n" {
		t.Errorf("the tenant's project after the admin's down: %s", r)
	}
	if r := d.dockerWith(t, acme, "compose", "-f", file, "down", "-v"); r.code != 0 {
		t.Errorf("the tenant's compose down: %s", r)
	}

	// A tenant's certificate is enough to act, and nothing else is.
	node := writeClientCert(t, ca.PEM, func(pub any) ([]byte, error) { return ca.SignNode("intruder", pub, nil) })
	if r := d.dockerWith(t, tlsEnv(node), "ps"); r.code == 0 || !strings.Contains(r.stderr, "tls") {
		t.Errorf("a node certificate: %s", r)
	}
	other, err := pki.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	foreign := writeClientCert(t, ca.PEM, func(pub any) ([]byte, error) { return other.SignTenant("acme", pub, time.Hour) })
	if r := d.dockerWith(t, tlsEnv(foreign), "ps"); r.code == 0 {
		t.Errorf("a certificate of another CA: %s", r)
	}
	// A tenant certificate of the cluster CA (which etcd trusts) is no
	// tenant's.
	clusterSigned := writeClientCert(t, ca.PEM, func(pub any) ([]byte, error) { return ca.SignTenant("acme", pub, time.Hour) })
	if r := d.dockerWith(t, tlsEnv(clusterSigned), "ps"); r.code == 0 {
		t.Errorf("a tenant certificate of the cluster CA: %s", r)
	}
	// Signed by the tenant CA, but not recorded as acme's credentials.
	unknown := writeClientCert(t, ca.PEM, func(pub any) ([]byte, error) { return tca.SignTenant("acme", pub, time.Hour) })
	if r := d.dockerWith(t, tlsEnv(unknown), "ps"); r.code == 0 {
		t.Errorf("a certificate that is not the tenant's current one: %s", r)
	}
	expired := writeClientCert(t, ca.PEM, func(pub any) ([]byte, error) { return tca.SignTenant("acme", pub, -time.Minute) })
	if r := d.dockerWith(t, tlsEnv(expired), "ps"); r.code == 0 {
		t.Errorf("an expired certificate: %s", r)
	}
	// No certificate at all: the handshake fails.
	pool, _, err := pki.Dir(filepath.Join(n.Data, "pki")).TLS()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool.ClientCAs})
	if err == nil {
		_, err = conn.Write([]byte("GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n"))
		if err == nil {
			_, err = conn.Read(make([]byte, 1))
		}
		conn.Close()
	}
	if err == nil {
		t.Error("a client without a certificate was served")
	}
	if r := d.dockerWith(t, acme, "rm", "web"); r.code != 0 {
		t.Errorf("the tenant's rm: %s", r)
	}
}
