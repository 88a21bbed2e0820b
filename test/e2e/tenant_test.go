//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// tenantCLI is the docker CLI of one tenant, over TLS with its
// credentials directory (DOCKER_CERT_PATH).
type tenantCLI struct {
	d    *dockerEnv
	name string
	dir  string
	addr string
	// config is the CLI's own DOCKER_CONFIG: registry logins are the
	// tenant's.
	config string
}

func (c *tenantCLI) env() []string {
	return []string{"DOCKER_HOST=tcp://" + c.addr, "DOCKER_TLS_VERIFY=1", "DOCKER_CERT_PATH=" + c.dir, "DOCKER_CONFIG=" + c.config}
}

func (c *tenantCLI) run(t *testing.T, args ...string) result {
	t.Helper()
	return c.d.dockerWith(t, cmdOpts{env: c.env()}, args...)
}

func (c *tenantCLI) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := c.run(t, args...)
	if r.code != 0 {
		t.Fatalf("%s: docker %s: %s", c.name, strings.Join(args, " "), r)
	}
	return r.stdout
}

// ipOn is the address of a tenant's container on network.
func ipOn(t *testing.T, c *tenantCLI, container, network string) string {
	t.Helper()
	return strings.TrimSpace(c.ok(t, "inspect", "-f", "{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", container))
}

// createTenant runs `hearth tenant create NAME --out DIR flags...`.
func createTenant(t *testing.T, d *dockerEnv, addr, name string, flags ...string) *tenantCLI {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	out := d.n.must(append([]string{"tenant", "create", name, "--out", dir}, flags...)...)
	if !strings.Contains(out, "DOCKER_HOST=tcp://"+addr) {
		t.Errorf("tenant create says: %s", out)
	}
	return &tenantCLI{d: d, name: name, dir: dir, addr: addr, config: t.TempDir()}
}

// TestTenants: tenants made with `hearth tenant create` reach the Docker
// API with their credentials (as DOCKER_CERT_PATH, and as an imported
// docker context), never see or touch each other's things, are held to
// their quotas and refused options, can be rotated and removed, and
// every call is audited.
func TestTenants(t *testing.T) {
	t.Parallel()
	n := newUpNode(t, "ten1")
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	n.start("--docker-listen", addr)
	d := &dockerEnv{n: n, bin: "/usr/local/bin/docker", sock: filepath.Join(n.Run, "docker.sock"), config: t.TempDir()}
	n.logOnFailure()

	// Bad input to tenant create.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"tenant", "create", "x1"}, "--out DIR is required"},
		{[]string{"tenant", "create", "Bad_Name", "--out", t.TempDir()}, "invalid tenant name"},
		{[]string{"tenant", "create", "admin", "--out", t.TempDir()}, "admin's own tenant"},
		{[]string{"tenant", "create", "x2", "--memory", "lots", "--out", t.TempDir()}, "invalid --memory"},
		{[]string{"tenant", "create", "x3", "--pods", "-1", "--out", t.TempDir()}, "negative"},
		{[]string{"tenant", "inspect", "nobody"}, "no such tenant: nobody"},
		{[]string{"tenant", "rotate", "nobody", "--out", t.TempDir()}, "no such tenant: nobody"},
		{[]string{"tenant", "rm", "-f", "nobody"}, "no such tenant: nobody"},
	} {
		if r := n.hearth(c.args...); r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("hearth %s: want %q, got %s", strings.Join(c.args, " "), c.want, r)
		}
	}
	if out := n.must("tenant", "ls"); strings.Count(out, "\n") != 1 {
		t.Errorf("refused creations left tenants:\n%s", out)
	}

	acme := createTenant(t, d, addr, "acme", "--pods", "3", "--memory", "1GiB", "--volumes-size", "100MiB")
	bravo := createTenant(t, d, addr, "bravo")
	if r := n.hearth("tenant", "create", "acme", "--out", t.TempDir()); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("a second acme: %s", r)
	}
	if r := n.hearth("tenant", "create", "other", "--out", acme.dir); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("credentials written over acme's: %s", r)
	}

	// The docker context bundle imports, and works.
	cfg := t.TempDir()
	plain := func(args ...string) result {
		cmd := exec.Command(d.bin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + cfg, "DOCKER_CONFIG=" + cfg}
		var stdout, stderr syncBuffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		r := result{stdout: stdout.String(), stderr: stderr.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := plain("context", "import", "hearth-acme", filepath.Join(acme.dir, "docker.dockercontext")); r.code != 0 {
		t.Fatalf("docker context import: %s", r)
	}
	if r := plain("--context", "hearth-acme", "version", "--format", "{{.Server.APIVersion}}"); r.code != 0 || strings.TrimSpace(r.stdout) != "1.50" {
		t.Fatalf("docker --context hearth-acme version: %s", r)
	}

	// The kubeconfig names the tenant's credentials and the cluster's
	// Kubernetes endpoint.
	kube := func(args ...string) string {
		out, err := exec.Command("kubectl", append([]string{"--kubeconfig", filepath.Join(acme.dir, "kubeconfig")}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if got := strings.TrimSpace(kube("config", "current-context")); got != "hearth-acme" {
		t.Errorf("kubeconfig context: %q", got)
	}
	if got := kube("config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"); got != "https://127.0.0.1:6443" {
		t.Errorf("kubeconfig server: %q", got)
	}
	certData, _ := base64.StdEncoding.DecodeString(kube("config", "view", "--raw", "-o", "jsonpath={.users[0].user.client-certificate-data}"))
	if certPEM, _ := os.ReadFile(filepath.Join(acme.dir, "cert.pem")); string(certData) != string(certPEM) {
		t.Error("the kubeconfig's certificate is not the tenant's")
	}

	// A tenant's certificate opens the tenant APIs, not etcd (which the
	// cluster CA's certificates do).
	pair, err := tls.LoadX509KeyPair(filepath.Join(acme.dir, "cert.pem"), filepath.Join(acme.dir, "key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	caPEM, _ := os.ReadFile(filepath.Join(acme.dir, "ca.pem"))
	roots.AppendCertsFromPEM(caPEM)
	etcdURL, _ := url.Parse(n.etcdEndpoint())
	etcdCli, err := clientv3.New(clientv3.Config{Endpoints: []string{n.etcdEndpoint()}, DialTimeout: 5 * time.Second,
		TLS: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots}})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = etcdCli.Get(ctx, "/hearth/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		etcdCli.Close()
	}
	if err == nil {
		t.Errorf("a tenant's certificate read etcd at %s", etcdURL.Host)
	}
	n.tenantCA() // the node's own certificate does read it

	// Each tenant has its own images, containers, networks and volumes.
	acme.ok(t, "load", "-q", "-i", img.busybox)
	bravo.ok(t, "load", "-q", "-i", img.busybox)
	bravo.ok(t, "network", "create", "bnet")
	bravo.ok(t, "volume", "create", "bvol")
	bravo.ok(t, "create", "--name", "idle", dockerImg, "true")
	bravo.ok(t, "run", "-d", "--name", "live", "--network", "bnet", "-v", "bvol:/data", dockerImg, "sleep", "1000")
	liveID := strings.TrimSpace(bravo.ok(t, "inspect", "-f", "{{.Id}}", "live"))
	netID := strings.TrimSpace(bravo.ok(t, "network", "inspect", "-f", "{{.Id}}", "bnet"))
	bravo.ok(t, "tag", dockerImg, "bravo/secret:1")
	since := time.Now().Add(-time.Minute).Unix()

	// acme aims every container command at bravo's, by name, ID and ID
	// prefix: each answers as for a container that does not exist.
	for _, ref := range []string{"live", liveID, liveID[:12], liveID[:4]} {
		for _, cmd := range [][]string{
			{"inspect", ref}, {"logs", ref}, {"start", ref}, {"stop", ref}, {"restart", ref}, {"kill", ref},
			{"pause", ref}, {"unpause", ref}, {"rm", "-f", ref}, {"rename", ref, "stolen"}, {"top", ref},
			{"port", ref}, {"exec", ref, "true"}, {"cp", ref + ":/etc/hostname", "-"}, {"update", "--restart", "no", ref},
			{"wait", ref}, {"attach", ref}, {"stats", "--no-stream", ref}, {"network", "connect", "bridge", ref},
		} {
			r := acme.run(t, cmd...)
			// rm -f of a missing container exits 0, as against Docker.
			failed := r.code != 0 || cmd[0] == "rm"
			msg := strings.ToLower(r.stderr)
			if !failed || !(strings.Contains(msg, "no such container") || strings.Contains(msg, "no such object")) || strings.Contains(r.stderr, "bnet") {
				t.Errorf("acme: docker %s: %s", strings.Join(cmd, " "), r)
			}
		}
	}
	for _, ref := range []string{"bnet", netID, netID[:12]} {
		for _, cmd := range [][]string{{"network", "inspect", ref}, {"network", "rm", ref}, {"run", "--rm", "--network", ref, dockerImg, "true"}} {
			if r := acme.run(t, cmd...); r.code == 0 || !strings.Contains(r.stderr, "not found") {
				t.Errorf("acme: docker %s: %s", strings.Join(cmd, " "), r)
			}
		}
	}
	for _, cmd := range [][]string{{"volume", "inspect", "bvol"}, {"volume", "rm", "bvol"}} {
		if r := acme.run(t, cmd...); r.code == 0 || !strings.Contains(r.stderr, "no such volume") {
			t.Errorf("acme: docker %s: %s", strings.Join(cmd, " "), r)
		}
	}
	// A volume of bravo's name is a new, empty one of acme's (small:
	// acme's volumes have a quota).
	acme.ok(t, "volume", "create", "--opt", "size=16m", "bvol")
	if out := acme.ok(t, "run", "--rm", "-v", "bvol:/data", dockerImg, "ls", "/data"); out != "" {
		t.Errorf("acme sees bravo's volume data: %q", out)
	}
	acme.ok(t, "volume", "rm", "bvol")
	// acme has busybox of its own (the same blobs); bravo's tag is
	// bravo's.
	for _, cmd := range [][]string{{"image", "inspect", "bravo/secret:1"}, {"save", "-o", filepath.Join(t.TempDir(), "x.tar"), "bravo/secret:1"},
		{"rmi", "bravo/secret:1"}, {"run", "--rm", "--pull", "never", "bravo/secret:1", "true"}} {
		if r := acme.run(t, cmd...); r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "no such image") {
			t.Errorf("acme: docker %s reached bravo's image: %s", strings.Join(cmd, " "), r)
		}
	}
	// A private image bravo pulled with its registry login is not
	// acme's: acme cannot run or inspect it, and its own pull, without
	// a login, is refused by the registry, though the blobs are here.
	reg := startRegistry(t, basicAuth)
	private := reg.Host + "/private/app:1"
	bravo.ok(t, "tag", dockerImg, private)
	if r := bravo.d.dockerWith(t, cmdOpts{stdin: strings.NewReader(regPass + "\n"), env: bravo.env()},
		"login", "-u", regUser, "--password-stdin", reg.Host); r.code != 0 {
		t.Fatalf("bravo's login: %s", r)
	}
	bravo.ok(t, "push", private)
	bravo.ok(t, "rmi", private)
	bravo.ok(t, "pull", private)
	for _, cmd := range [][]string{{"image", "inspect", private}, {"run", "--rm", "--pull", "never", private, "true"}, {"save", "-o", filepath.Join(t.TempDir(), "p.tar"), private}} {
		if r := acme.run(t, cmd...); r.code == 0 || !strings.Contains(strings.ToLower(r.stderr), "no such image") {
			t.Errorf("acme: docker %s reached bravo's private image: %s", strings.Join(cmd, " "), r)
		}
	}
	if r := acme.run(t, "pull", private); r.code == 0 || !strings.Contains(r.stderr, "pull access denied") {
		t.Errorf("acme's pull of bravo's private image without a login: %s", r)
	}

	// Lists, info, df and events count only acme's own.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"ps", "-a", "--format", "{{.Names}}"}, ""},
		{[]string{"network", "ls", "--format", "{{.Name}}"}, "bridge\n"},
		{[]string{"volume", "ls", "-q"}, ""},
		{[]string{"info", "--format", "{{.Containers}} {{.ContainersRunning}}"}, "0 0\n"},
		{[]string{"system", "df", "--format", "{{.Type}} {{.TotalCount}}"}, "Images 1\nContainers 0\nLocal Volumes 0\nBuild Cache 0\n"},
	} {
		if out := acme.ok(t, c.args...); out != c.want {
			t.Errorf("acme: docker %s = %q, want %q", strings.Join(c.args, " "), out, c.want)
		}
	}
	events := acme.ok(t, "events", "--since", fmt.Sprint(since), "--until", fmt.Sprint(time.Now().Unix()), "--format", "{{.Type}} {{.Actor.ID}} {{.Actor.Attributes.name}}")
	if strings.Contains(events, "live") || strings.Contains(events, "idle") || strings.Contains(events, "bnet") || strings.Contains(events, netID) {
		t.Errorf("acme sees bravo's events:\n%s", events)
	}
	if !strings.Contains(events, "volume bvol") {
		t.Errorf("acme's events lack its own:\n%s", events)
	}
	if out := bravo.ok(t, "ps", "-a", "--format", "{{.Names}}"); len(strings.Fields(out)) != 2 {
		t.Errorf("bravo's ps: %q", out)
	}
	// bravo's container is untouched, and its data path works.
	if out := bravo.ok(t, "exec", "live", "sh", "-c", "echo kept > /data/f; cat /data/f"); out != "kept\n" {
		t.Errorf("bravo's exec: %q", out)
	}

	// One subnet, and even one address, in two tenants: two networks,
	// each tenant reaching its own pods and nothing of the other's, by
	// address or by name.
	acme.ok(t, "load", "-q", "-i", img.echo)
	bravo.ok(t, "load", "-q", "-i", img.echo)
	acme.ok(t, "network", "create", "--subnet", "10.77.0.0/24", "same")
	bravo.ok(t, "network", "create", "--subnet", "10.77.0.0/24", "same")
	acme.ok(t, "run", "-d", "--name", "asrv", "--hostname", "asrv-host", "-m", "256m", "--network", "same", "--ip", "10.77.0.10", echoImg)
	acme.ok(t, "run", "-d", "--name", "acli", "-m", "256m", "--network", "same", dockerImg, "sleep", "1000")
	bravo.ok(t, "run", "-d", "--name", "bsrv", "--hostname", "bsrv-host", "--network", "same", "--ip", "10.77.0.10", echoImg)
	bravo.ok(t, "run", "-d", "--name", "bsrv2", "--hostname", "bsrv2-host", "--network", "same", "--ip", "10.77.0.11", echoImg)
	bravo.ok(t, "network", "connect", "same", "live")
	echoFrom := func(c *tenantCLI, from, addr string) string {
		r := c.run(t, "exec", from, "sh", "-c", "echo hi | nc -w 3 "+addr+" 7")
		return strings.TrimSpace(r.stdout)
	}
	if got := echoFrom(acme, "acli", "10.77.0.10"); got != "asrv-host hi" {
		t.Errorf("acme to its own 10.77.0.10: %q", got)
	}
	if got := echoFrom(acme, "acli", "asrv"); got != "asrv-host hi" {
		t.Errorf("acme to its own asrv by name: %q", got)
	}
	if got := echoFrom(bravo, "live", "10.77.0.10"); got != "bsrv-host hi" {
		t.Errorf("bravo to its own 10.77.0.10: %q", got)
	}
	if got := echoFrom(bravo, "live", "bsrv2"); got != "bsrv2-host hi" {
		t.Errorf("bravo to its own bsrv2 by name: %q", got)
	}
	// bravo's echo on a subnet acme has no network of: acme's pod is
	// routed out to the world, never into bravo's namespace.
	bravo.ok(t, "network", "connect", "bnet", "bsrv2")
	for _, to := range []string{"10.77.0.11", "bsrv2", "bsrv", ipOn(t, bravo, "bsrv2", "bnet")} {
		if got := echoFrom(acme, "acli", to); strings.Contains(got, "-host") {
			t.Errorf("acme reached bravo's %s: %q", to, got)
		}
	}
	// Their default networks too: the same subnet, the other's pods out
	// of reach.
	bravo.ok(t, "run", "-d", "--name", "bdef", "--hostname", "bdef-host", echoImg)
	acme.ok(t, "run", "-d", "--name", "adef", "-m", "256m", dockerImg, "sleep", "1000")
	bdefIP := ipOn(t, bravo, "bdef", "bridge")
	if adefIP := ipOn(t, acme, "adef", "bridge"); !strings.HasPrefix(adefIP, "10.88.") || !strings.HasPrefix(bdefIP, "10.88.") {
		t.Errorf("default network addresses: acme %q, bravo %q", adefIP, bdefIP)
	}
	if got := echoFrom(acme, "adef", bdefIP); strings.Contains(got, "-host") {
		t.Errorf("acme reached bravo's %s on the default network: %q", bdefIP, got)
	}
	if got := echoFrom(bravo, "live", "bsrv"); got != "bsrv-host hi" {
		t.Errorf("bravo to bsrv: %q", got)
	}
	acme.ok(t, "rm", "-f", "asrv", "acli", "adef")

	// Refused options: 403, with nothing made.
	for _, opt := range [][]string{{"--privileged"}, {"--cap-add", "NET_ADMIN"}, {"--device", "/dev/kvm"}, {"--pid", "host"},
		{"--network", "host"}, {"--ipc", "host"}, {"--security-opt", "seccomp=unconfined"}, {"-v", "/etc:/host"}} {
		r := acme.run(t, append(append([]string{"create"}, opt...), dockerImg, "true")...)
		if r.code == 0 || !(strings.Contains(r.stderr, "not allowed for tenants") || strings.Contains(r.stderr, "are for the cluster's admin")) {
			t.Errorf("acme: docker create %s: %s", strings.Join(opt, " "), r)
		}
	}
	// The admin may still ask (and is told Hearth does not do it).
	if r := d.docker(t, "create", "--privileged", dockerImg, "true"); r.code == 0 || strings.Contains(r.stderr, "not allowed for tenants") {
		t.Errorf("the admin's --privileged: %s", r)
	}

	// Quotas: 3 pods, 1 GiB of memory, 100 MiB of volumes.
	acme.ok(t, "run", "-d", "--name", "q1", "-m", "512m", dockerImg, "sleep", "1000")
	acme.ok(t, "create", "--name", "q2", "-m", "768m", dockerImg, "sleep", "1000")
	if r := acme.run(t, "start", "q2"); r.code == 0 || !strings.Contains(r.stderr, "quota exceeded: memory 512MiB of 1GiB in use, 768MiB more asked") {
		t.Errorf("a start over the memory quota: %s", r)
	}
	acme.ok(t, "update", "-m", "256m", "q2")
	acme.ok(t, "start", "q2")
	if r := acme.run(t, "update", "-m", "900m", "q2"); r.code == 0 || !strings.Contains(r.stderr, "quota exceeded: memory") {
		t.Errorf("a running container grown over the quota: %s", r)
	}
	acme.ok(t, "create", "--name", "q3", dockerImg, "true")
	if r := acme.run(t, "create", "--name", "q4", dockerImg, "true"); r.code == 0 || !strings.Contains(r.stderr, "quota exceeded: pods 3 of 3 in use") {
		t.Errorf("a fourth container: %s", r)
	}
	if r := acme.run(t, "ps", "-a", "-q"); len(strings.Fields(r.stdout)) != 3 {
		t.Errorf("a refused create left a container: %s", r)
	}
	acme.ok(t, "volume", "create", "--opt", "size=64m", "v1")
	if r := acme.run(t, "volume", "create", "--opt", "size=64m", "v2"); r.code == 0 || !strings.Contains(r.stderr, "quota exceeded: volumes 64MiB of 100MiB in use") {
		t.Errorf("a volume over the quota: %s", r)
	}
	if r := acme.run(t, "volume", "create", "--opt", "shared=true", "v3"); r.code == 0 || !strings.Contains(r.stderr, "shared volumes have no size limit") {
		t.Errorf("a shared volume under a volume quota: %s", r)
	}
	if out := acme.ok(t, "volume", "ls", "-q"); out != "v1\n" {
		t.Errorf("refused volumes were made: %q", out)
	}
	var info struct {
		Tenant struct {
			Spec struct {
				Pods      int `json:"pods"`
				MemoryMiB int `json:"memoryMiB"`
			} `json:"spec"`
		} `json:"tenant"`
		Usage struct {
			Pods        int   `json:"pods"`
			MemoryMiB   int   `json:"memoryMiB"`
			VolumeBytes int64 `json:"volumeBytes"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(n.must("tenant", "inspect", "acme")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Tenant.Spec.Pods != 3 || info.Usage.Pods != 3 || info.Usage.MemoryMiB != 768 || info.Usage.VolumeBytes != 64<<20 {
		t.Errorf("tenant inspect: %+v", info)
	}
	if out := n.must("tenant", "ls"); !strings.Contains(out, "acme") || !strings.Contains(out, "3/3") || !strings.Contains(out, "768MiB/1GiB") {
		t.Errorf("tenant ls:\n%s", out)
	}
	// Removing what holds the quota frees it; lifting the quota too.
	acme.ok(t, "rm", "-f", "q1")
	acme.ok(t, "create", "--name", "q4", dockerImg, "true")
	n.must("tenant", "update", "acme")
	acme.ok(t, "volume", "create", "--opt", "size=64m", "v2")

	// A rotation: the old credentials stop at once, the new ones work,
	// and a stream the old certificate opened (events) is cut.
	ectx, ecancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer ecancel()
	stream := d.cmd(ectx, "events")
	stream.Env = append(stream.Env, acme.env()...)
	var streamOut syncBuffer
	stream.Stdout, stream.Stderr = &streamOut, &streamOut
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	streamDone := make(chan error, 1)
	go func() { streamDone <- stream.Wait() }()
	time.Sleep(time.Second) // the stream is open
	newDir := filepath.Join(t.TempDir(), "rotated")
	n.must("tenant", "rotate", "acme", "--out", newDir)
	select {
	case <-streamDone:
	case <-time.After(30 * time.Second):
		t.Errorf("acme's events stream of the rotated-out certificate still runs: %s", streamOut.String())
	}
	if r := acme.run(t, "ps"); r.code == 0 {
		t.Errorf("acme's rotated-out certificate still works: %s", r)
	}
	if r := plain("--context", "hearth-acme", "ps"); r.code == 0 {
		t.Errorf("the imported context of the old certificate still works: %s", r)
	}
	rotated := &tenantCLI{d: d, name: "acme", dir: newDir, addr: addr, config: acme.config}
	if out := rotated.ok(t, "ps", "-a", "--format", "{{.Names}}"); len(strings.Fields(out)) != 3 {
		t.Errorf("acme after rotation: %q", out)
	}

	// Removal: after confirmation, everything bravo owns goes, and its
	// certificate with it.
	if r := hearthWith(t, cmdOpts{stdin: strings.NewReader("n\n")}, n.Args("tenant", "rm", "bravo")...); r.code == 0 {
		t.Errorf("tenant rm answered no: %s", r)
	}
	bravo.ok(t, "ps")
	if r := hearthWith(t, cmdOpts{stdin: strings.NewReader("y\n")}, n.Args("tenant", "rm", "bravo")...); r.code != 0 || !strings.Contains(r.stdout, "Removed tenant bravo: 5 pods, 1 volumes, 2 networks") {
		t.Errorf("tenant rm: %s", r)
	}
	if r := bravo.run(t, "ps"); r.code == 0 {
		t.Errorf("a removed tenant's certificate still works: %s", r)
	}
	eventually(t, time.Minute, "bravo's pods to go", func() bool {
		return strings.Count(n.must("pod", "ls", "--tenant", "bravo"), "\n") == 1 // the header
	})
	if out := n.must("tenant", "ls"); strings.Contains(out, "bravo") {
		t.Errorf("tenant ls after rm:\n%s", out)
	}
	// Its images went with it; a new bravo starts with nothing.
	bravo2 := createTenant(t, d, addr, "bravo")
	if out := bravo2.ok(t, "images", "-q"); out != "" {
		t.Errorf("a new tenant of a removed one's name has its images: %q", out)
	}

	// The audit log has each tenant's calls, with their results.
	f, err := os.Open(filepath.Join(n.Data, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e struct {
			API, Tenant, Verb, Object string
			Status                    int
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		seen[fmt.Sprintf("%s %s %s %d", e.API, e.Tenant, e.Verb, e.Status)] = true
	}
	for _, want := range []string{
		"docker acme POST /containers/create 201",
		"docker acme POST /containers/{id}/start 403",
		"docker acme GET /containers/{id}/json 404",
		"docker bravo POST /containers/{id}/start 204",
		"admin admin DELETE /v1/tenants/{name} 200",
	} {
		if !seen[want] {
			t.Errorf("the audit log lacks %q", want)
		}
	}
}
