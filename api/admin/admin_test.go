package admin_test

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hearth-cloud/hearth/api/admin"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/errhttp"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

type env struct {
	t   *testing.T
	e   *testEtcd
	s   *store.Store
	srv *admin.Server
	url string
}

// newEnv serves the admin API of a fresh etcd over HTTP.
func newEnv(t *testing.T) *env {
	t.Helper()
	e := startEtcd(t)
	v := &env{t: t, e: e, s: store.New(e.Client)}
	v.srv = &admin.Server{Store: v.s, Log: slog.New(slog.DiscardHandler)}
	hs := httptest.NewServer(v.srv.Handler())
	t.Cleanup(hs.Close)
	v.url = hs.URL
	return v
}

// call does one request and returns the status and body.
func (v *env) call(method, path, body string) (int, []byte) {
	v.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(v.t.Context(), method, v.url+path, r)
	if err != nil {
		v.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		v.t.Fatal(err)
	}
	if len(b) > 0 && resp.Header.Get("Content-Type") != "application/json" {
		v.t.Errorf("%s %s: content type %q", method, path, resp.Header.Get("Content-Type"))
	}
	return resp.StatusCode, b
}

// expect does a request that must answer code, and decodes the answer.
func (v *env) expect(method, path, body string, code int, out any) {
	v.t.Helper()
	got, b := v.call(method, path, body)
	if got != code {
		v.t.Fatalf("%s %s: %d %s, want %d", method, path, got, b, code)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			v.t.Fatalf("%s %s: answer %s: %v", method, path, b, err)
		}
	}
}

// expectError does a request that must fail with code and a JSON message
// containing msg.
func (v *env) expectError(method, path, body string, code int, msg string) {
	v.t.Helper()
	var e errhttp.Body
	v.expect(method, path, body, code, &e)
	if e.Message == "" || !strings.Contains(e.Message, msg) {
		v.t.Errorf("%s %s: message %q, want %q", method, path, e.Message, msg)
	}
}

const podJSON = `{"tenant":"acme","name":"web","spec":{"containers":[{"image":"nginx"}],"nodeName":"n9"},"status":{"phase":"Running"}}`

func TestCreatePod(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	var p model.Pod
	v.expect("POST", "/v1/pods", podJSON, http.StatusCreated, &p)
	want := model.PodSpec{
		Containers: []model.Container{{Name: "c0", Image: "nginx"}},
		Resources:  model.Resources{CPUs: 1, MemoryMiB: 512},
		Restart:    model.Restart{Policy: model.RestartNo},
		Desired:    model.DesiredRunning,
	}
	if p.Kind != model.KindPod || p.UID == "" || p.Generation != 1 || p.CreatedAt.IsZero() {
		t.Errorf("created meta %+v", p.Meta)
	}
	specJSON, _ := json.Marshal(p.Spec)
	wantJSON, _ := json.Marshal(want)
	if string(specJSON) != string(wantJSON) {
		t.Errorf("created spec %s, want %s (defaults, no binding)", specJSON, wantJSON)
	}
	if p.Status.Phase != model.PhasePending || p.Status.Node != "" {
		t.Errorf("created status %+v", p.Status)
	}
	stored, err := store.Get[model.Pod](t.Context(), v.s, model.KindPod, "acme", "web")
	if err != nil || stored.UID != p.UID || stored.Spec.NodeName != "" {
		t.Fatalf("stored %+v, %v", stored, err)
	}

	v.expectError("POST", "/v1/pods", podJSON, http.StatusConflict, `pod "acme/web" already exists`)

	var got model.Pod
	v.expect("GET", "/v1/pods/acme/web", "", http.StatusOK, &got)
	if got.UID != p.UID || got.Spec.Containers[0].Image != "nginx" {
		t.Errorf("GET pod: %+v", got)
	}
	v.expect("DELETE", "/v1/pods/acme/web", "", http.StatusNoContent, nil)
	v.expectError("GET", "/v1/pods/acme/web", "", http.StatusNotFound, `pod "acme/web" not found`)
	v.expectError("DELETE", "/v1/pods/acme/web", "", http.StatusNotFound, `pod "acme/web" not found`)
}

func TestCreatePodBad(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	for _, tt := range []struct{ desc, body, msg string }{
		{"unknown field", `{"tenant":"acme","name":"web","bogus":1,"spec":{"containers":[{"image":"nginx"}]}}`, `invalid JSON: json: unknown field "bogus"`},
		{"unknown nested field", `{"tenant":"acme","name":"web","spec":{"containers":[{"image":"nginx","imagePullPolicy":"x"}]}}`, `unknown field "imagePullPolicy"`},
		{"malformed", `{"tenant":"acme","name":`, "invalid JSON"},
		{"wrong type", `{"tenant":"acme","name":3}`, "invalid JSON"},
		{"empty body", "", "invalid JSON: EOF"},
		{"invalid name", `{"tenant":"acme","name":"Web","spec":{"containers":[{"image":"nginx"}]}}`, `invalid pods name "Web"`},
		{"no tenant", `{"name":"web","spec":{"containers":[{"image":"nginx"}]}}`, "has no tenant"},
		{"no containers", `{"tenant":"acme","name":"web","spec":{}}`, "pod web has no containers"},
		{"no image", `{"tenant":"acme","name":"web","spec":{"containers":[{"name":"a"}]}}`, "container a has no image"},
		{"bad policy", `{"tenant":"acme","name":"web","spec":{"containers":[{"image":"x"}],"restart":{"policy":"never"}}}`, `unknown restart policy "never"`},
		{"too little memory", `{"tenant":"acme","name":"web","spec":{"containers":[{"image":"x"}],"resources":{"memoryMiB":32}}}`, "want at least 1 CPU and 64 MiB"},
	} {
		t.Run(tt.desc, func(t *testing.T) {
			v := *v
			v.t = t
			v.expectError("POST", "/v1/pods", tt.body, http.StatusBadRequest, tt.msg)
		})
	}
	pods, _, err := store.List[model.Pod](t.Context(), v.s, model.KindPod, "")
	if err != nil || len(pods) != 0 {
		t.Errorf("bad requests stored %d pods (%v)", len(pods), err)
	}
}

func TestListPods(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	for _, b := range []string{
		`{"tenant":"acme","name":"a","spec":{"containers":[{"image":"x"}]}}`,
		`{"tenant":"beta","name":"b","spec":{"containers":[{"image":"x"}]}}`,
		`{"tenant":"acme","name":"c","spec":{"containers":[{"image":"x"}]}}`,
	} {
		v.expect("POST", "/v1/pods", b, http.StatusCreated, nil)
	}
	names := func(pods []*model.Pod) string {
		var out []string
		for _, p := range pods {
			out = append(out, p.Tenant+"/"+p.Name)
		}
		return strings.Join(out, ",")
	}
	var pods []*model.Pod
	v.expect("GET", "/v1/pods", "", http.StatusOK, &pods)
	if got := names(pods); got != "acme/c,beta/b,acme/a" {
		t.Errorf("all pods, newest first: %s", got)
	}
	v.expect("GET", "/v1/pods?tenant=acme", "", http.StatusOK, &pods)
	if got := names(pods); got != "acme/c,acme/a" {
		t.Errorf("acme's pods: %s", got)
	}
	var none []*model.Pod
	v.expect("GET", "/v1/pods?tenant=nobody", "", http.StatusOK, &none)
	if len(none) != 0 {
		t.Errorf("pods of nobody: %v", none)
	}
}

func TestNodes(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	var nodes []*model.Node
	v.expect("GET", "/v1/nodes", "", http.StatusOK, &nodes)
	if len(nodes) != 0 {
		t.Errorf("nodes of an empty cluster: %v", nodes)
	}
	for _, name := range []string{"n2", "n1"} {
		n := &model.Node{Meta: model.Meta{Kind: model.KindNode, Name: name},
			Spec:   model.NodeSpec{Role: model.RoleWorker, Capacity: model.Resources{CPUs: 4, MemoryMiB: 4096}},
			Status: model.NodeStatus{State: model.NodeReady}}
		if err := v.s.Create(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	v.expect("GET", "/v1/nodes", "", http.StatusOK, &nodes)
	if len(nodes) != 2 || nodes[0].Name != "n1" || nodes[1].Name != "n2" || nodes[0].Spec.Capacity.CPUs != 4 || nodes[0].Status.State != model.NodeReady {
		t.Errorf("nodes %+v", nodes)
	}
	var n model.Node
	v.expect("GET", "/v1/nodes/n2", "", http.StatusOK, &n)
	if n.Name != "n2" || n.UID == "" {
		t.Errorf("node n2: %+v", n)
	}
	v.expectError("GET", "/v1/nodes/n3", "", http.StatusNotFound, `node "n3" not found`)
	v.expectError("POST", "/v1/nodes/n3/drain", "", http.StatusNotFound, `node "n3" not found`)
	var h map[string]string
	v.expect("GET", "/v1/healthz", "", http.StatusOK, &h)
	if h["status"] != "ok" {
		t.Errorf("healthz %v", h)
	}
}

func TestServices(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	const svcJSON = `{"tenant":"acme","name":"web","spec":{"replicas":3,"template":{"containers":[{"image":"nginx"}]}}}`
	var svc model.Service
	v.expect("POST", "/v1/services", svcJSON, http.StatusCreated, &svc)
	tpl := svc.Spec.Template
	if svc.Kind != model.KindService || svc.Spec.Replicas != 3 || tpl.Containers[0].Name != "c0" || tpl.Resources.CPUs != 1 || tpl.Restart.Policy != model.RestartNo || tpl.Desired != model.DesiredRunning {
		t.Errorf("created service %+v", svc)
	}
	v.expectError("POST", "/v1/services", svcJSON, http.StatusConflict, "already exists")
	v.expectError("POST", "/v1/services", `{"tenant":"acme","name":"neg","spec":{"replicas":-1,"template":{"containers":[{"image":"nginx"}]}}}`,
		http.StatusBadRequest, "replicas must not be negative")
	v.expectError("POST", "/v1/services", `{"tenant":"acme","name":"empty","spec":{"replicas":1,"template":{}}}`,
		http.StatusBadRequest, "has no containers")
	v.expectError("POST", "/v1/services", `{"tenant":"acme","name":"Bad","spec":{"replicas":1,"template":{"containers":[{"image":"nginx"}]}}}`,
		http.StatusBadRequest, `invalid services name "Bad"`)
	v.expectError("POST", "/v1/services", `{"tenant":"acme","name":"x","spec":{"replica":1}}`, http.StatusBadRequest, `unknown field "replica"`)

	var got model.Service
	v.expect("PUT", "/v1/services/acme/web/replicas", `{"replicas":5}`, http.StatusOK, &got)
	if got.Spec.Replicas != 5 {
		t.Errorf("after PUT replicas: %d", got.Spec.Replicas)
	}
	stored, err := store.Get[model.Service](t.Context(), v.s, model.KindService, "acme", "web")
	if err != nil || stored.Spec.Replicas != 5 || stored.Spec.Template.Containers[0].Image != "nginx" {
		t.Fatalf("stored service %+v, %v", stored, err)
	}
	v.expect("PUT", "/v1/services/acme/web/replicas", `{"replicas":0}`, http.StatusOK, &got)
	v.expectError("PUT", "/v1/services/acme/web/replicas", `{"replicas":-1}`, http.StatusBadRequest, "replicas must not be negative")
	v.expectError("PUT", "/v1/services/acme/web/replicas", `{"replicas":"two"}`, http.StatusBadRequest, "invalid JSON")
	v.expectError("PUT", "/v1/services/acme/nope/replicas", `{"replicas":1}`, http.StatusNotFound, `service "acme/nope" not found`)
	if s, _ := store.Get[model.Service](t.Context(), v.s, model.KindService, "acme", "web"); s.Spec.Replicas != 0 {
		t.Errorf("a rejected PUT changed replicas to %d", s.Spec.Replicas)
	}

	var svcs []*model.Service
	v.expect("GET", "/v1/services?tenant=acme", "", http.StatusOK, &svcs)
	if len(svcs) != 1 || svcs[0].Name != "web" {
		t.Errorf("services %+v", svcs)
	}
	v.expect("DELETE", "/v1/services/acme/web", "", http.StatusNoContent, nil)
	v.expectError("DELETE", "/v1/services/acme/web", "", http.StatusNotFound, "not found")
}

func TestDrain(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	ctx := t.Context()
	for _, name := range []string{"n1", "n2"} {
		if err := v.s.Create(ctx, &model.Node{Meta: model.Meta{Kind: model.KindNode, Name: name},
			Spec: model.NodeSpec{Capacity: model.Resources{CPUs: 4, MemoryMiB: 4096}}}); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(name, node, phase string) *model.Pod {
		p := &model.Pod{
			Meta: model.Meta{Kind: model.KindPod, Tenant: "acme", Name: name},
			Spec: model.PodSpec{Containers: []model.Container{{Name: "c0", Image: "x"}}, Resources: model.Resources{CPUs: 1, MemoryMiB: 64},
				Restart: model.Restart{Policy: model.RestartAlways}, Desired: model.DesiredRunning, NodeName: node},
			Status: model.PodStatus{Phase: phase, Node: node, CradleID: "vm-" + name, RestartCount: 3},
		}
		if err := v.s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mk("running", "n1", model.PhaseRunning)
	mk("scheduled", "n1", model.PhaseScheduled)
	exited := mk("exited", "n1", model.PhaseExited)
	other := mk("other", "n2", model.PhaseRunning)

	var res map[string]int
	v.expect("POST", "/v1/nodes/n1/drain", "", http.StatusOK, &res)
	if res["moved"] != 2 {
		t.Errorf("drain moved %v, want 2", res)
	}
	n, err := store.Get[model.Node](ctx, v.s, model.KindNode, "", "n1")
	if err != nil || !n.Spec.Unschedulable {
		t.Fatalf("drained node: %+v, %v", n, err)
	}
	for _, name := range []string{"running", "scheduled"} {
		p, err := store.Get[model.Pod](ctx, v.s, model.KindPod, "acme", name)
		if err != nil {
			t.Fatal(err)
		}
		want := model.PodStatus{Phase: model.PhasePending, Reason: "Drained", Message: "node n1 was drained", RestartCount: 3}
		if p.Spec.NodeName != "" || p.Status.Phase != want.Phase || p.Status.Reason != want.Reason || p.Status.Message != want.Message ||
			p.Status.RestartCount != 3 || p.Status.CradleID != "" || p.Generation != 2 {
			t.Errorf("%s after drain: node %q generation %d status %+v", name, p.Spec.NodeName, p.Generation, p.Status)
		}
	}
	for _, p := range []*model.Pod{exited, other} {
		got, err := store.Get[model.Pod](ctx, v.s, model.KindPod, "acme", p.Name)
		if err != nil || got.Revision != p.Revision {
			t.Errorf("drain touched %s: %+v, %v", p.Name, got, err)
		}
	}
	// Draining again moves nothing and keeps the node drained.
	v.expect("POST", "/v1/nodes/n1/drain", "", http.StatusOK, &res)
	if res["moved"] != 0 {
		t.Errorf("second drain moved %v", res)
	}
}

func TestJoinToken(t *testing.T) {
	t.Parallel()
	v := newEnv(t)
	v.expectError("GET", "/v1/join-token", "", http.StatusPreconditionFailed, "cannot issue join tokens")
	v.srv.JoinToken = func() (string, error) { return "tok123", nil }
	var out map[string]string
	v.expect("GET", "/v1/join-token", "", http.StatusOK, &out)
	if out["token"] != "tok123" {
		t.Errorf("token %v", out)
	}
	v.srv.JoinToken = func() (string, error) { return "", errors.New("no CA") }
	v.expectError("GET", "/v1/join-token", "", http.StatusInternalServerError, "no CA")
}

func TestStatus(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		code int
	}{
		{errdefs.NotFound("x"), 404},
		{errdefs.AlreadyExists("x"), 409},
		{errdefs.Conflict("x"), 409},
		{errdefs.InvalidArgument("x"), 400},
		{errdefs.FailedPrecondition("x"), 412},
		{errdefs.Unavailable("x"), 503},
		{errdefs.Unauthenticated("x"), 401},
		{errdefs.PermissionDenied("x"), 403},
		{errors.New("x"), 500},
	} {
		if got := admin.Status(tt.err); got != tt.code {
			t.Errorf("Status(%v class) = %d, want %d", tt.err, got, tt.code)
		}
	}
}

// socketPath is a short path for a unix socket (at most 108 bytes).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hadm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "hearth.sock")
}

// serve runs a Server on a unix socket until the test ends.
func serve(t *testing.T, s *store.Store) (*admin.Server, string) {
	t.Helper()
	path := socketPath(t)
	// A stale file where the socket goes is replaced.
	if err := os.WriteFile(path, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := &admin.Server{Store: s, Log: slog.New(slog.DiscardHandler)}
	if err := srv.Serve(path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv, path
}

func TestClient(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	s := store.New(e.Client)
	_, path := serve(t, s)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v: %v", fi, err)
	}
	c := admin.NewClient(path)
	ctx := t.Context()

	p, err := c.CreatePod(ctx, &model.Pod{Meta: model.Meta{Tenant: "acme", Name: "web"},
		Spec: model.PodSpec{Containers: []model.Container{{Image: "nginx"}}}})
	if err != nil {
		t.Fatal(err)
	}
	if p.UID == "" || p.Status.Phase != model.PhasePending || p.Spec.Resources.MemoryMiB != 512 {
		t.Errorf("created %+v", p)
	}
	if _, err := c.CreatePod(ctx, &model.Pod{Meta: model.Meta{Tenant: "beta", Name: "db"},
		Spec: model.PodSpec{Containers: []model.Container{{Image: "postgres"}}}}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Pod(ctx, "acme", "web")
	if err != nil || got.UID != p.UID {
		t.Fatalf("Pod: %+v, %v", got, err)
	}
	pods, err := c.Pods(ctx, "acme")
	if err != nil || len(pods) != 1 || pods[0].Name != "web" {
		t.Fatalf("Pods(acme): %v, %v", pods, err)
	}
	pods, err = c.Pods(ctx, "")
	if err != nil || len(pods) != 2 {
		t.Fatalf("Pods(): %v, %v", pods, err)
	}
	if err := s.Create(ctx, &model.Node{Meta: model.Meta{Kind: model.KindNode, Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Name != "n1" {
		t.Fatalf("Nodes: %v, %v", nodes, err)
	}

	// Errors come back in their classes, with the server's message.
	_, err = c.CreatePod(ctx, &model.Pod{Meta: model.Meta{Tenant: "acme", Name: "Bad"},
		Spec: model.PodSpec{Containers: []model.Container{{Image: "nginx"}}}})
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), `invalid pods name "Bad"`) {
		t.Errorf("invalid CreatePod: %v", err)
	}
	_, err = c.CreatePod(ctx, &model.Pod{Meta: model.Meta{Tenant: "acme", Name: "web"},
		Spec: model.PodSpec{Containers: []model.Container{{Image: "nginx"}}}})
	if err == nil || err.Error() != `pod "acme/web" already exists` {
		t.Errorf("duplicate CreatePod: %v", err)
	}
	if err := c.DeletePod(ctx, "acme", "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Pod(ctx, "acme", "web"); !errdefs.IsNotFound(err) || err.Error() != `pod "acme/web" not found` {
		t.Errorf("Pod after delete: %v", err)
	}
	if err := c.DeletePod(ctx, "acme", "web"); !errdefs.IsNotFound(err) {
		t.Errorf("DeletePod of a missing pod: %v", err)
	}
	err = c.Do(ctx, http.MethodGet, "/v1/join-token", nil, nil)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("join-token without a CA: %v", err)
	}
}

// A duplicate create comes back to the client as the class it was on the
// server.
func TestClientAlreadyExists(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	_, path := serve(t, store.New(e.Client))
	c := admin.NewClient(path)
	p := &model.Pod{Meta: model.Meta{Tenant: "acme", Name: "web"}, Spec: model.PodSpec{Containers: []model.Container{{Image: "nginx"}}}}
	if _, err := c.CreatePod(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreatePod(t.Context(), p)
	if !errdefs.IsAlreadyExists(err) {
		t.Fatalf("duplicate CreatePod: %v (conflict: %v), want already exists", err, errdefs.IsConflict(err))
	}
}

func TestClientNotRunning(t *testing.T) {
	t.Parallel()
	check := func(what string, c *admin.Client) {
		t.Helper()
		_, err := c.Pods(t.Context(), "")
		if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "hearth is not running") {
			t.Errorf("%s: %v, want unavailable: hearth is not running", what, err)
		}
	}
	path := socketPath(t)
	check("no socket", admin.NewClient(path))

	// A socket nobody listens on any more.
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	check("stale socket", admin.NewClient(path))
}

func TestClientAfterClose(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	srv, path := serve(t, store.New(e.Client))
	c := admin.NewClient(path)
	if _, err := c.Pods(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	_, err := c.Pods(t.Context(), "")
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "hearth is not running") {
		t.Errorf("after Close: %v", err)
	}
}

// Without etcd the API answers 503, which the client maps back.
func TestNoQuorum(t *testing.T) {
	t.Parallel()
	e := startEtcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.URL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	_, path := serve(t, store.New(cli))
	c := admin.NewClient(path)
	if err := c.Do(t.Context(), http.MethodGet, "/v1/healthz", nil, nil); err != nil {
		t.Fatal(err)
	}
	e.Stop()
	start := time.Now()
	err = c.Do(t.Context(), http.MethodGet, "/v1/healthz", nil, nil)
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "no quorum") {
		t.Errorf("healthz without etcd: %v, want unavailable: no quorum", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("healthz took %v", d)
	}
}
