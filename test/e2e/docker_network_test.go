//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDockerNetworks: docker network create, ls, inspect, rm and prune,
// with subnets allocated by macro's IPAM and Docker's errors.
func TestDockerNetworks(t *testing.T) {
	t.Parallel()
	d := newDockerEnv(t)
	since := strconv.FormatInt(time.Now().Unix(), 10)

	front := strings.TrimSpace(d.ok(t, "network", "create", "front"))
	if !hex64.MatchString(front) {
		t.Fatalf("network create printed %q, want a 64-hex ID", front)
	}
	d.ok(t, "network", "create", "back")
	d.ok(t, "network", "create", "--subnet", "10.50.0.0/24", "--gateway", "10.50.0.254", "--ip-range", "10.50.0.128/25",
		"--internal", "--label", "tier=db", "db")

	// Auto subnets never overlap each other, the given one, or the
	// nodes' default bridge.
	subnets := map[string]netip.Prefix{}
	for _, n := range []string{"front", "back", "db", "bridge"} {
		p, err := netip.ParsePrefix(strings.TrimSpace(d.ok(t, "network", "inspect", n, "--format", "{{range .IPAM.Config}}{{.Subnet}}{{end}}")))
		if err != nil {
			t.Fatalf("subnet of %s: %v", n, err)
		}
		for m, q := range subnets {
			if p.Overlaps(q) {
				t.Errorf("%s (%s) overlaps %s (%s)", n, p, m, q)
			}
		}
		subnets[n] = p
	}
	if out := d.ok(t, "network", "inspect", "db", "--format", "{{range .IPAM.Config}}{{.Gateway}} {{.IPRange}}{{end}} {{.Internal}} {{.Labels.tier}}"); out != "10.50.0.254 10.50.0.128/25 true db\n" {
		t.Errorf("inspect db: %q", out)
	}
	// By ID and by ID prefix.
	if out := d.ok(t, "network", "inspect", front[:8], "--format", "{{.Name}}"); out != "front\n" {
		t.Errorf("inspect by ID prefix: %q", out)
	}
	if out := d.ok(t, "network", "ls", "--format", "{{.Name}}"); out != "back\nbridge\ndb\nfront\n" { // the CLI sorts by name
		t.Errorf("network ls: %q", out)
	}
	if out := d.ok(t, "network", "ls", "-q", "--filter", "label=tier=db"); len(strings.Fields(out)) != 1 {
		t.Errorf("network ls --filter label: %q", out)
	}
	if out := d.ok(t, "network", "ls", "--filter", "type=custom", "--format", "{{.Name}}"); out != "back\ndb\nfront\n" {
		t.Errorf("network ls --filter type=custom: %q", out)
	}

	// Bad input, with Docker's messages.
	d.fails(t, 1, "network with name front already exists", "network", "create", "front")
	d.fails(t, 1, "network with name bridge already exists", "network", "create", "bridge")
	d.fails(t, 1, "Pool overlaps with other one on this address space", "network", "create", "--subnet", "10.50.0.0/16", "wide")
	d.fails(t, 1, "invalid subnet nope", "network", "create", "--subnet", "nope", "bad")
	d.fails(t, 1, "not supported", "network", "create", "-d", "overlay", "ov")
	code, body, _ := d.api(t, "POST", "/networks/create", `{"Name":"x","IPAM":{"Config":[{"Subnet":"10.70.0.0/24","Gateway":"10.71.0.1"}]}}`)
	apiError(t, "a gateway outside its subnet", code, body, http.StatusBadRequest, "no matching subnet for gateway 10.71.0.1")
	code, body, _ = d.api(t, "POST", "/networks/create", `{"Name":`)
	apiError(t, "malformed JSON", code, body, http.StatusBadRequest, "")
	d.fails(t, 1, "network nosuch not found", "network", "inspect", "nosuch")
	d.fails(t, 1, "network nosuch not found", "network", "rm", "nosuch")
	d.fails(t, 1, "pre-defined network and cannot be removed", "network", "rm", "bridge")

	// rm by ID prefix, then prune takes the rest; the events say so.
	d.ok(t, "network", "rm", front[:12])
	out := d.ok(t, "network", "prune", "-f")
	if !strings.Contains(out, "back") || !strings.Contains(out, "db") {
		t.Errorf("network prune: %q", out)
	}
	if out := d.ok(t, "network", "ls", "--format", "{{.Name}}"); out != "bridge\n" {
		t.Errorf("network ls after prune: %q", out)
	}
	ev := d.ok(t, "events", "--since", since, "--until", strconv.FormatInt(time.Now().Unix()+1, 10),
		"--filter", "type=network", "--filter", "network=front", "--format", "{{.Action}}")
	if ev != "create\ndestroy\n" {
		t.Errorf("network events of front: %q", ev)
	}
	// The freed subnet is handed out again.
	d.ok(t, "network", "create", "--subnet", "10.50.0.0/16", "wide")
	d.ok(t, "network", "rm", "wide")
}

// ownedBridges lists the bridges a node made for its networks (their
// alias names the node's data dir), on the host and in its tenants'
// network namespaces, and those namespaces' uplinks.
func ownedBridges(t *testing.T, dataDir string) []string {
	t.Helper()
	links := func(args ...string) string {
		out, err := exec.Command("ip", args...).Output()
		if err != nil {
			t.Fatalf("ip %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	out := links("-o", "link", "show", "type", "bridge") + links("-o", "link", "show", "type", "veth")
	nss, _ := exec.Command("ip", "netns", "list").Output()
	for _, line := range strings.Split(string(nss), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "hearth-") {
			// A namespace can go between the list and the look.
			b, _ := exec.Command("ip", "-n", f[0], "-o", "link", "show", "type", "bridge").Output()
			out += string(b)
		}
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "alias hearth:"+dataDir) {
			f := strings.Fields(line)
			names = append(names, strings.Split(strings.TrimSuffix(f[1], ":"), "@")[0])
		}
	}
	return names
}

// hostAddrs are the host's end of the node's tenant uplinks, and the
// host's address towards the outside.
func hostAddrs(t *testing.T, dataDir string) []string {
	t.Helper()
	var out []string
	for _, name := range ownedBridges(t, dataDir) {
		if !strings.HasPrefix(name, "hv") {
			continue
		}
		b, err := exec.Command("ip", "-o", "-4", "addr", "show", "dev", name).Output()
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(string(b)); len(f) > 3 {
			out = append(out, strings.Split(f[3], "/")[0])
		}
	}
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil {
		out = append(out, c.LocalAddr().(*net.UDPAddr).IP.String())
		c.Close()
	}
	if len(out) < 2 {
		t.Fatalf("the host's addresses: %v", out)
	}
	return out
}

// TestDockerNetworkDataPath: containers on one network reach each other,
// and nothing else: not another network's, not the default network's, not
// the host; an internal network has no way out; the bridges and their
// rules go with the networks.
func TestDockerNetworkDataPath(t *testing.T) {
	t.Parallel()
	d := newDockerEnv(t)
	d.n.must("image", "load", "-q", "-i", img.echo)
	d.ok(t, "network", "create", "--subnet", "10.61.0.0/24", "na")
	d.ok(t, "network", "create", "--subnet", "10.62.0.0/24", "nb")
	d.ok(t, "network", "create", "--internal", "--subnet", "10.63.0.0/24", "ni")
	port := freePort(t)
	d.ok(t, "run", "-d", "--name", "a1", "--hostname", "a1-host", "--network", "na", "-p", fmt.Sprintf("%d:7", port), echoImg)
	d.ok(t, "run", "-d", "--name", "a2", "--hostname", "a2-host", "--network", "na", "--ip", "10.61.0.50", "--network-alias", "svc", echoImg)
	d.ok(t, "run", "-d", "--name", "a3", "--hostname", "a3-host", "--network", "na", "--network-alias", "svc", echoImg)
	d.ok(t, "run", "-d", "--name", "b1", "--network", "nb", echoImg)
	d.ok(t, "run", "-d", "--name", "d1", echoImg)
	d.ok(t, "run", "-d", "--name", "i1", "--network", "ni", echoImg)
	ip := func(name string) string {
		return strings.TrimSpace(d.ok(t, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name))
	}
	if got := ip("a2"); got != "10.61.0.50" {
		t.Errorf("--ip: a2 has %q", got)
	}
	if got := ip("a1"); !strings.HasPrefix(got, "10.61.0.") || got == "10.61.0.1" || got == "10.61.0.50" {
		t.Errorf("a1's address %q", got)
	}
	// nc from busybox: the echo answers with its hostname.
	reach := func(from, addr string) (string, bool) {
		r := d.docker(t, "exec", from, "sh", "-c", "echo hi | nc -w 3 "+addr+" 7")
		return strings.TrimSpace(r.stdout), r.code == 0 && strings.Contains(r.stdout, "hi")
	}
	if out, ok := reach("a1", "10.61.0.50"); !ok || out != "a2-host hi" {
		t.Errorf("a1 to a2 on one network: %q", out)
	}
	for _, c := range []struct{ from, to string }{{"a1", ip("b1")}, {"b1", "10.61.0.50"}, {"a1", ip("d1")}, {"d1", "10.61.0.50"}, {"i1", "10.61.0.50"}} {
		if out, ok := reach(c.from, c.to); ok {
			t.Errorf("%s reached %s across networks: %q", c.from, c.to, out)
		}
	}
	// Names: the container's, its alias (answered in turn when several
	// share it), only on the network.
	if out, ok := reach("a1", "a2"); !ok || out != "a2-host hi" {
		t.Errorf("a1 to a2 by name: %q", out)
	}
	// (getaddrinfo sorts answers by prefix, so the order is read from
	// nslookup, which shows the resolver's.)
	a3 := ip("a3")
	first := map[string]bool{}
	for i := 0; i < 4; i++ {
		out := d.ok(t, "exec", "a1", "nslookup", "-type=a", "svc")
		i2, i3 := strings.Index(out, "10.61.0.50"), strings.Index(out, a3)
		if i2 < 0 || i3 < 0 {
			t.Fatalf("nslookup svc:\n%s", out)
		}
		first[map[bool]string{true: "a2", false: "a3"}[i2 < i3]] = true
	}
	if !first["a2"] || !first["a3"] {
		t.Errorf("the alias svc was not answered in turn: first %v", first)
	}
	if r := d.docker(t, "exec", "b1", "nslookup", "a2"); strings.Contains(r.stdout, "10.61.0.50") {
		t.Errorf("b1 resolved a2 across networks: %s", r)
	}
	code, body, _ := d.api(t, "POST", "/containers/create", `{"Image":"`+echoImg+`","NetworkingConfig":{"EndpointsConfig":{"bridge":{"Aliases":["x"]}}}}`)
	apiError(t, "an alias on the default network", code, body, http.StatusBadRequest, "network-scoped alias is supported only for containers in user defined networks")

	// Spoofing gets nowhere: a forged source address or a changed MAC
	// is dropped on the bridge; the pod's own pair goes through.
	ping := func(args string) bool {
		return d.docker(t, "exec", "a1", "sh", "-c", "ping -c 1 -W 3 "+args).code == 0
	}
	if !ping("10.61.0.50") {
		t.Fatal("a1 cannot ping a2")
	}
	d.ok(t, "exec", "a1", "ip", "addr", "add", "10.61.0.77/24", "dev", "eth0")
	if ping("-I 10.61.0.77 10.61.0.50") {
		t.Error("a ping from a forged source address got an answer")
	}
	d.ok(t, "exec", "a1", "ip", "addr", "del", "10.61.0.77/24", "dev", "eth0")
	mac := strings.TrimSpace(d.ok(t, "exec", "a1", "cat", "/sys/class/net/eth0/address"))
	d.ok(t, "exec", "a1", "sh", "-c", "ip link set eth0 address 52:54:00:de:ad:01 && ip neigh flush all")
	if ping("10.61.0.50") {
		t.Error("a ping from a changed MAC got an answer")
	}
	d.ok(t, "exec", "a1", "sh", "-c", "ip link set eth0 address "+mac+" && ip neigh flush all")
	if !ping("10.61.0.50") {
		t.Error("a1 cannot ping a2 with its own MAC back")
	}

	// Not the host's own ports either, though the gateway is the host.
	hostPort := strconv.Itoa(hostServer(t, "host\n"))
	if r := d.docker(t, "exec", "a1", "sh", "-c", "nc -w 3 10.61.0.1 "+hostPort); strings.Contains(r.stdout, "host") {
		t.Errorf("a pod reached a port of the host: %s", r)
	}
	// Nor through the host's other addresses: its end of the tenant's
	// uplink (the pods' next hop), and its address on the outside.
	for _, addr := range hostAddrs(t, d.n.Data) {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, hostPort), time.Second); err != nil {
			t.Fatalf("the host's server on %s: %v", addr, err) // it must be there to be refused
		} else {
			c.Close()
		}
		for _, from := range []string{"a1", "d1"} { // a user network, the default network
			if r := d.docker(t, "exec", from, "sh", "-c", "nc -w 3 "+addr+" "+hostPort); strings.Contains(r.stdout, "host") {
				t.Errorf("%s reached a port of the host at %s: %s", from, addr, r)
			}
		}
	}
	// An internal network has no way out: no default route.
	if out := d.ok(t, "exec", "i1", "ip", "route"); strings.Contains(out, "default") {
		t.Errorf("routes of a container on an internal network:\n%s", out)
	}
	if out := d.ok(t, "exec", "a1", "ip", "route"); !strings.Contains(out, "default via 10.61.0.1") {
		t.Errorf("routes of a1:\n%s", out)
	}
	// Published ports work for containers on user networks.
	if got := echoTCP(t, fmt.Sprintf("127.0.0.1:%d", port), "out"); got != "a1-host out" {
		t.Errorf("through a1's published port: %q", got)
	}
	// hearth restarts: the pods, their namespace and bridges stay; the
	// resolver and the published port come back in the namespace.
	d.n.stop()
	d.n.start()
	eventually(t, time.Minute, "a1's port to be published again", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if got := echoTCP(t, fmt.Sprintf("127.0.0.1:%d", port), "again"); got != "a1-host again" {
		t.Errorf("through a1's published port after a restart of hearth: %q", got)
	}
	// The resolver comes back as the node reconciles its networks.
	eventually(t, time.Minute, "a1 to reach a2 by name after a restart of hearth", func() bool {
		out, ok := reach("a1", "a2")
		return ok && out == "a2-host hi"
	})
	if out, ok := reach("a1", ip("b1")); ok {
		t.Errorf("a1 reached b1 after a restart of hearth: %q", out)
	}
	if out := d.ok(t, "network", "inspect", "na", "--format", "{{range .Containers}}{{.Name}} {{end}}"); !strings.Contains(out, "a1 ") || !strings.Contains(out, "a2 ") {
		t.Errorf("network inspect na: %q", out)
	}
	if out := d.ok(t, "ps", "--filter", "network=na", "--format", "{{.Names}}"); len(strings.Fields(out)) != 3 {
		t.Errorf("ps --filter network=na: %q", out)
	}
	// Bad input.
	d.fails(t, 1, "has active endpoints", "network", "rm", "na")
	d.fails(t, 125, "network nosuch not found", "run", "--rm", "--network", "nosuch", echoImg)
	d.fails(t, 125, "Address already in use", "run", "--rm", "--network", "na", "--ip", "10.61.0.50", echoImg)
	d.fails(t, 125, "no configured subnet or ip-range contain the IP address 10.99.0.5", "run", "--rm", "--network", "na", "--ip", "10.99.0.5", echoImg)
	// The uplinks' addresses are not a network's to take.
	d.fails(t, 1, "Pool overlaps with other one on this address space", "network", "create", "--subnet", "100.64.5.0/24", "shadow")

	// Dangling: user networks no container is on.
	d.ok(t, "network", "create", "spare")
	if out := d.ok(t, "network", "ls", "--filter", "dangling=true", "--format", "{{.Name}}"); out != "spare\n" {
		t.Errorf("network ls --filter dangling=true: %q", out)
	}
	if out := d.ok(t, "network", "ls", "--filter", "dangling=false", "--format", "{{.Name}}"); out != "bridge\nna\nnb\nni\n" {
		t.Errorf("network ls --filter dangling=false: %q", out)
	}
	d.ok(t, "network", "rm", "spare")

	bridges := ownedBridges(t, d.n.Data)
	if len(bridges) != 5 { // 3 networks, the admin's default network and its uplink
		t.Errorf("bridges of the networks: %v", bridges)
	}
	d.ok(t, "rm", "-f", "a1", "a2", "a3", "b1", "d1", "i1")
	d.ok(t, "network", "rm", "na", "nb", "ni")
	eventually(t, time.Minute, "the networks' bridges and their nftables tables to go", func() bool {
		tables, _ := exec.Command("nft", "list", "tables").Output()
		for _, b := range bridges {
			if strings.Contains(string(tables), "hearth_"+b) {
				return false
			}
		}
		return len(ownedBridges(t, d.n.Data)) == 0
	})
	d.assertNothingLeft(t, "networks")
}

// TestDockerNetworkConnect: network connect and disconnect of running and
// stopped containers: reachability, names and addresses follow at once,
// and Docker's errors.
func TestDockerNetworkConnect(t *testing.T) {
	t.Parallel()
	d := newDockerEnv(t)
	d.ok(t, "network", "create", "--subnet", "10.91.0.0/24", "front")
	d.ok(t, "network", "create", "--subnet", "10.92.0.0/24", "back")
	d.ok(t, "network", "create", "--subnet", "10.93.0.0/24", "third")
	d.ok(t, "network", "create", "--subnet", "10.94.0.0/24", "fourth")
	d.ok(t, "run", "-d", "--name", "web", "--network", "front", dockerImg, "sleep", "1000")
	d.ok(t, "run", "-d", "--name", "db", "--network", "back", "--ip", "10.92.0.50", dockerImg, "sleep", "1000")
	reaches := func(from, to string) bool {
		return d.docker(t, "exec", from, "ping", "-c", "1", "-W", "3", to).code == 0
	}
	if reaches("web", "10.92.0.50") {
		t.Fatal("web reached db before it joined back")
	}

	// A running container joins: at once reachable, by name and alias
	// too, with the address asked for.
	d.ok(t, "network", "connect", "--alias", "api", "--ip", "10.92.0.7", "back", "web")
	if !reaches("web", "10.92.0.50") || !reaches("web", "db") || !reaches("db", "api") || !reaches("db", "web") {
		t.Error("after connect: web and db do not reach each other by address, name and alias")
	}
	if out := d.ok(t, "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}", "web"); out != "back=10.92.0.7 front=10.91.0.2 \n" {
		t.Errorf("inspect after connect: %q", out)
	}
	if out := d.ok(t, "network", "inspect", "back", "-f", "{{range .Containers}}{{.Name}} {{end}}"); !strings.Contains(out, "web ") {
		t.Errorf("network inspect back after connect: %q", out)
	}

	// Bad input, with Docker's messages.
	d.fails(t, 1, "endpoint with name web already exists in network back", "network", "connect", "back", "web")
	d.fails(t, 1, "No such container: nosuch", "network", "connect", "back", "nosuch")
	d.fails(t, 1, "network nosuch not found", "network", "connect", "nosuch", "web")
	d.fails(t, 1, "Address already in use", "network", "connect", "--ip", "10.91.0.2", "front", "db")
	d.fails(t, 1, "is not connected to network third", "network", "disconnect", "third", "web")
	code, body, _ := d.api(t, "POST", "/networks/back/connect", `{"Container":`)
	apiError(t, "malformed JSON", code, body, http.StatusBadRequest, "invalid JSON")

	// Leaving: unreachable at once; the first network can go too, and the
	// container's names are answered from the one it keeps.
	d.ok(t, "network", "disconnect", "back", "web")
	if reaches("web", "10.92.0.50") {
		t.Error("web reached db after leaving back")
	}
	d.ok(t, "network", "connect", "back", "web")
	d.ok(t, "network", "disconnect", "front", "web")
	if !reaches("web", "db") {
		t.Error("web cannot reach db by name after leaving its first network")
	}
	// The default route went with front; back's gateway took it over.
	if out := d.ok(t, "exec", "web", "ip", "route"); !strings.Contains(out, "default via 10.92.0.1") {
		t.Errorf("web's routes after leaving the network of its default route:\n%s", out)
	}
	d.fails(t, 1, "at least one", "network", "disconnect", "back", "web")

	// A running VM has its NICs from the start: two spare ones.
	d.ok(t, "network", "connect", "third", "web")
	d.ok(t, "network", "connect", "front", "web")
	d.fails(t, 1, "no free NIC", "network", "connect", "fourth", "web")
	if out := d.ok(t, "inspect", "-f", "{{len .NetworkSettings.Networks}}", "web"); out != "3\n" {
		t.Errorf("after a refused connect web is on %q networks, want 3", out)
	}

	// A stopped container's networks change for its next start.
	d.ok(t, "stop", "-t", "0", "db")
	d.ok(t, "network", "connect", "front", "db")
	d.ok(t, "network", "disconnect", "back", "db")
	d.ok(t, "start", "db")
	if out := d.ok(t, "exec", "db", "ip", "-4", "-o", "addr", "show", "scope", "global"); strings.Count(out, "inet ") != 1 || !strings.Contains(out, "10.91.0.") {
		t.Errorf("db after connect and disconnect while stopped:\n%s", out)
	}
	if !reaches("web", "db") {
		t.Errorf("web cannot reach db on front: web has\n%s\ndb has\n%s\n%s", d.docker(t, "exec", "web", "ip", "-4", "-o", "addr").stdout,
			d.docker(t, "exec", "db", "ip", "-4", "-o", "addr").stdout, d.docker(t, "exec", "web", "nslookup", "-type=a", "db"))
	}
	d.ok(t, "rm", "-f", "web", "db")
	d.ok(t, "network", "rm", "front", "back", "third", "fourth")
	eventually(t, time.Minute, "the networks' bridges to go", func() bool { return len(ownedBridges(t, d.n.Data)) == 0 })
	d.assertNothingLeft(t, "network connect")
}
