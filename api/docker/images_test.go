package docker

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"

	himage "github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/image/auth"
	"github.com/hearth-cloud/hearth/image/layer"
	imagestore "github.com/hearth-cloud/hearth/image/store"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/testimage"
)

func hash(c byte) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(string(c), 64)}
}

func TestImageAction(t *testing.T) {
	tests := []struct {
		path, name, action string
	}{
		{"busybox/json", "busybox", "json"},
		{"localhost:5000/team/app:1/json", "localhost:5000/team/app:1", "json"},
		{"json/json", "json", "json"},
		{"busybox@sha256:abc/history", "busybox@sha256:abc", "history"},
		{"busybox", "busybox", ""},
		{"/json", "/json", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		name, action := imageAction(tt.path)
		if name != tt.name || action != tt.action {
			t.Errorf("imageAction(%q) = %q, %q; want %q, %q", tt.path, name, action, tt.name, tt.action)
		}
	}
}

func TestMatchReference(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"busybox", "busybox:latest", true},
		{"busybox:latest", "busybox:latest", true},
		{"busybox:1*", "busybox:latest", false},
		{"busy*", "busybox:latest", true},
		{"*:latest", "busybox:latest", true},
		{"*", "team/app:1", false}, // * does not cross a slash, as in Docker
		{"*/*", "team/app:1", true},
		{"team/*", "team/app:1", true},
		{"localhost:5000/*", "localhost:5000/app:1", true},
		{"localhost:5000/app", "localhost:5000/app:1", true},
		{"busybox", "busybox@sha256:" + strings.Repeat("a", 64), true},
		{"alpine", "busybox:latest", false},
		{"[", "busybox:latest", false},
	}
	for _, tt := range tests {
		if got := matchReference(tt.pattern, tt.name); got != tt.want {
			t.Errorf("matchReference(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestMatchingNames(t *testing.T) {
	names := []string{"busybox:1", "busybox:latest", "team/busybox:1"}
	tests := []struct {
		patterns []string
		want     []string
	}{
		{[]string{"busybox"}, []string{"busybox:1", "busybox:latest"}},
		{[]string{"*:1"}, []string{"busybox:1"}},
		{[]string{"*:1", "*/*"}, []string{"busybox:1", "team/busybox:1"}},
		{[]string{"alpine"}, []string{}},
	}
	for _, tt := range tests {
		if got := matchingNames(tt.patterns, names); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("matchingNames(%q) = %q, want %q", tt.patterns, got, tt.want)
		}
	}
}

func TestDeleteResponses(t *testing.T) {
	id := hash('a').String()
	layer := hash('b').String()
	tests := []struct {
		name    string
		lines   []string
		digests []string
		want    []image.DeleteResponse
	}{
		{
			name:  "untag only",
			lines: []string{"Untagged: busybox:1"},
			// The image stays, so its digest does too.
			digests: []string{"busybox@sha256:" + strings.Repeat("c", 64)},
			want:    []image.DeleteResponse{{Untagged: "busybox:1"}},
		},
		{
			name:    "last name",
			lines:   []string{"Untagged: busybox:latest", "Deleted: " + id, "Deleted: " + layer},
			digests: []string{"busybox@sha256:" + strings.Repeat("c", 64)},
			want: []image.DeleteResponse{
				{Untagged: "busybox:latest"},
				{Untagged: "busybox@sha256:" + strings.Repeat("c", 64)},
				{Deleted: id},
				{Deleted: layer},
			},
		},
		{
			name:    "digest already untagged",
			lines:   []string{"Untagged: busybox@sha256:" + strings.Repeat("c", 64), "Deleted: " + id},
			digests: []string{"busybox@sha256:" + strings.Repeat("c", 64)},
			want: []image.DeleteResponse{
				{Untagged: "busybox@sha256:" + strings.Repeat("c", 64)},
				{Deleted: id},
			},
		},
		{
			name:  "untagged image by ID",
			lines: []string{"Deleted: " + id},
			want:  []image.DeleteResponse{{Deleted: id}},
		},
		{
			name:  "nothing",
			lines: nil,
			want:  []image.DeleteResponse{},
		},
		{
			name:  "unknown lines are dropped",
			lines: []string{"something else", "Untagged: a:1"},
			want:  []image.DeleteResponse{{Untagged: "a:1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := deleteResponses(tt.lines, id, tt.digests)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("deleteResponses = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRemoveConflict(t *testing.T) {
	id := hash('a')
	ctr := strings.Repeat("1", 64)
	running := []imageUser{{id: ctr, running: true}}
	stopped := []imageUser{{id: ctr}}
	tests := []struct {
		name  string
		byID  bool
		names int
		force bool
		users []imageUser
		want  string // "" for no conflict
	}{
		{"unused", false, 1, false, nil, ""},
		{"one of several names", false, 2, false, running, ""},
		{"last name, stopped", false, 1, false, stopped,
			`conflict: unable to remove repository reference "busybox" (must force) - container 111111111111 is using its referenced image aaaaaaaaaaaa`},
		{"last name, running", false, 1, false, running,
			`conflict: unable to remove repository reference "busybox" (must force) - container 111111111111 is using its referenced image aaaaaaaaaaaa`},
		{"last name forced, stopped", false, 1, true, stopped, ""},
		{"last name forced, running", false, 1, true, running,
			"conflict: unable to delete aaaaaaaaaaaa (cannot be forced) - image is being used by running container 111111111111"},
		{"by ID, stopped", true, 1, false, stopped,
			"conflict: unable to delete aaaaaaaaaaaa (must be forced) - image is being used by stopped container 111111111111"},
		{"by ID forced, stopped", true, 1, true, stopped, ""},
		{"by ID, running", true, 0, false, running,
			"conflict: unable to delete aaaaaaaaaaaa (cannot be forced) - image is being used by running container 111111111111"},
		{"by ID with several names is the service's", true, 2, false, running, ""},
		{"by ID forced with several names, running", true, 2, true, running,
			"conflict: unable to delete aaaaaaaaaaaa (cannot be forced) - image is being used by running container 111111111111"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := removeConflict("busybox", id, tt.byID, tt.names, tt.force, tt.users)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("removeConflict = %v, want none", err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("removeConflict = %v, want %q", err, tt.want)
			}
			if !errdefs.IsConflict(err) {
				t.Errorf("removeConflict error is not a conflict: %v", err)
			}
		})
	}
}

func TestProgressMessage(t *testing.T) {
	tests := []struct {
		in   himage.Progress
		want string
	}{
		{himage.Progress{ID: "abc123", Status: "Pulling fs layer"}, `{"status":"Pulling fs layer","progressDetail":{},"id":"abc123"}`},
		{himage.Progress{ID: "abc123", Status: "Downloading", Current: 10, Total: 100}, `{"status":"Downloading","progressDetail":{"current":10,"total":100},"id":"abc123"}`},
		{himage.Progress{ID: "abc123", Status: "Already exists"}, `{"status":"Already exists","progressDetail":{},"id":"abc123"}`},
		{himage.Progress{Status: "Digest: sha256:abc"}, `{"status":"Digest: sha256:abc"}`},
		{himage.Progress{Status: "Pushing", Current: 5, Total: 9}, `{"status":"Pushing","progressDetail":{"current":5,"total":9}}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(streamMessage{Message: progressMessage(tt.in)})
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("progressMessage(%+v) = %s, want %s", tt.in, b, tt.want)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	b, err := json.Marshal(errorMessage(errors.New("pull access denied")))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"errorDetail":{"message":"pull access denied"},"error":"pull access denied"}`
	if string(b) != want {
		t.Errorf("errorMessage = %s, want %s", b, want)
	}
}

func TestProgressStream(t *testing.T) {
	prelude := jsonstream.Message{ID: "latest", Status: "Pulling from library/busybox"}

	t.Run("error before progress is an answer", func(t *testing.T) {
		rec := httptest.NewRecorder()
		st := newProgressStream(rec, prelude)
		st.fail(errdefs.NotFound("manifest for nope:latest not found"))
		if rec.Code != http.StatusNotFound {
			t.Errorf("code = %d, want 404", rec.Code)
		}
		if got := strings.TrimSpace(rec.Body.String()); got != `{"message":"manifest for nope:latest not found"}` {
			t.Errorf("body = %s", got)
		}
	})

	t.Run("error after progress is a message", func(t *testing.T) {
		rec := httptest.NewRecorder()
		st := newProgressStream(rec, prelude)
		st.send(progressMessage(himage.Progress{ID: "abc", Status: "Pulling fs layer"}))
		st.fail(errors.New("connection reset"))
		if rec.Code != http.StatusOK {
			t.Errorf("code = %d, want 200", rec.Code)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		want := `{"status":"Pulling from library/busybox","id":"latest"}
{"status":"Pulling fs layer","progressDetail":{},"id":"abc"}
{"errorDetail":{"message":"connection reset"},"error":"connection reset"}
`
		if rec.Body.String() != want {
			t.Errorf("body =\n%s\nwant\n%s", rec.Body.String(), want)
		}
	})
}

func TestLoadProgress(t *testing.T) {
	var got []string
	lp := &loadProgress{send: func(m jsonstream.Message) {
		b, _ := json.Marshal(m)
		got = append(got, string(b))
	}}
	lp.step(himage.Progress{ID: "aaa", Status: "Loading layer", Total: 10})
	lp.step(himage.Progress{ID: "bbb", Status: "Loading layer", Total: 20})
	lp.done()
	lp.done() // nothing left open
	want := []string{
		`{"status":"Loading layer","progressDetail":{"total":10},"id":"aaa"}`,
		`{"status":"Loading layer","progressDetail":{"current":10,"total":10},"id":"aaa"}`,
		`{"status":"Loading layer","progressDetail":{"total":20},"id":"bbb"}`,
		`{"status":"Loading layer","progressDetail":{"current":20,"total":20},"id":"bbb"}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("messages =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestPullRef(t *testing.T) {
	digest := "sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		fromImage, tag string
		want           string
		wantErr        bool
	}{
		{"docker.io/library/busybox", "latest", "docker.io/library/busybox:latest", false},
		{"busybox", "1.36", "busybox:1.36", false},
		{"busybox", digest, "busybox@" + digest, false},
		{"localhost:5000/app", "v1", "localhost:5000/app:v1", false},
		{"busybox:1", "", "busybox:1", false},
		{"busybox:1", "2", "busybox:2", false},
		{"localhost:5000/app@" + digest, "", "localhost:5000/app@" + digest, false},
		{"localhost:5000/app", "", "", true}, // --all-tags
		{"busybox", "", "", true},
		{"", "latest", "", true},
	}
	for _, tt := range tests {
		got, err := pullRef(tt.fromImage, tt.tag)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("pullRef(%q, %q) = %q, %v; want %q, error %v", tt.fromImage, tt.tag, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("pullRef(%q, %q) error %v is not InvalidArgument", tt.fromImage, tt.tag, err)
		}
	}
}

func TestCheckPlatform(t *testing.T) {
	for p, ok := range map[string]bool{
		"": true, "linux": true, "linux/amd64": true, "Linux/AMD64": true, "linux/amd64/v2": true, "linux/x86_64": true,
		"linux/arm64": false, "windows/amd64": false, "darwin": false,
	} {
		if err := checkPlatform(p); (err == nil) != ok {
			t.Errorf("checkPlatform(%q) = %v, want ok %v", p, err, ok)
		}
	}
}

func TestRegistryHost(t *testing.T) {
	tests := map[string]string{
		"":                            "",
		"https://index.docker.io/v1/": "",
		"docker.io":                   "",
		"registry-1.docker.io":        "",
		"ghcr.io":                     "ghcr.io",
		"https://ghcr.io":             "ghcr.io",
		"http://localhost:5000/":      "localhost:5000",
		"registry.example.com:443/v2": "registry.example.com:443",
	}
	for in, want := range tests {
		if got := registryHost(in); got != want {
			t.Errorf("registryHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHeaderAuth(t *testing.T) {
	raw := `{"username":"u","password":"p","serveraddress":"ghcr.io"}`
	tests := []struct {
		name    string
		header  string
		want    string
		wantErr bool
	}{
		{"absent", "", "", false},
		{"padded base64url", base64.URLEncoding.EncodeToString([]byte(raw)), "u", false},
		{"unpadded", base64.RawURLEncoding.EncodeToString([]byte(raw)), "u", false},
		{"empty config", base64.URLEncoding.EncodeToString([]byte("{}")), "", false},
		{"not base64", "%%%", "", true},
		{"not JSON", base64.URLEncoding.EncodeToString([]byte("nope")), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/images/create", nil)
			if tt.header != "" {
				r.Header.Set("X-Registry-Auth", tt.header)
			}
			a, err := headerAuth(r)
			if (err != nil) != tt.wantErr || a.Username != tt.want {
				t.Errorf("headerAuth = %+v, %v; want user %q, error %v", a, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestGroupImages(t *testing.T) {
	idA, idB := hash('a'), hash('b')
	old := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	sums := []himage.Summary{
		{Name: "docker.io/library/busybox:latest", ID: idA, Manifest: hash('m'), RepoDigest: "docker.io/library/busybox@sha256:" + strings.Repeat("d", 64), Created: old, Size: 10},
		{ID: idB, Manifest: hash('n'), Created: old.Add(time.Hour), Size: 20},
		{Name: "localhost:5000/team/box:1", ID: idA, Manifest: hash('m'), Created: old, Size: 10},
		{Name: "docker.io/library/busybox@sha256:" + strings.Repeat("d", 64), ID: idA, Manifest: hash('m'), Created: old, Size: 10},
	}
	got := groupImages(sums)
	if len(got) != 2 {
		t.Fatalf("groupImages gave %d images, want 2", len(got))
	}
	if got[0].id != idB || got[1].id != idA {
		t.Errorf("order = %s, %s; want newest (b) first", got[0].id, got[1].id)
	}
	if b := got[0]; len(b.tags) != 0 || b.tags == nil || len(b.names) != 0 || len(b.digests) != 0 {
		t.Errorf("untagged image: tags %q names %q digests %q; want empty, non-nil tags", b.tags, b.names, b.digests)
	}
	a := got[1]
	if want := []string{"busybox:latest", "localhost:5000/team/box:1"}; !reflect.DeepEqual(a.tags, want) {
		t.Errorf("tags = %q, want %q", a.tags, want)
	}
	if want := []string{"busybox@sha256:" + strings.Repeat("d", 64)}; !reflect.DeepEqual(a.digests, want) {
		t.Errorf("digests = %q, want %q", a.digests, want)
	}
	if len(a.names) != 3 || len(a.manifests) != 1 {
		t.Errorf("names = %q, manifests = %v; want 3 names, 1 manifest", a.names, a.manifests)
	}
	sum := a.summary()
	if sum.ID != idA.String() || sum.Containers != -1 || sum.SharedSize != -1 || sum.Created != old.Unix() {
		t.Errorf("summary = %+v", sum)
	}
}

func TestSharedSizes(t *testing.T) {
	base, app, other := hash('1'), hash('2'), hash('3')
	imgs := []*localImage{
		{id: hash('a'), blobs: map[v1.Hash]int64{hash('c'): 1, base: 100, app: 10}},
		{id: hash('b'), blobs: map[v1.Hash]int64{hash('e'): 2, base: 100}},
		{id: hash('f'), blobs: map[v1.Hash]int64{hash('g'): 3, other: 50}},
	}
	shared, total := sharedSizes(imgs)
	if total != 1+100+10+2+3+50 {
		t.Errorf("total = %d", total)
	}
	want := map[v1.Hash]int64{hash('a'): 100, hash('b'): 100}
	if !reflect.DeepEqual(shared, want) {
		t.Errorf("shared = %v, want %v", shared, want)
	}
}

func TestHistoryItems(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	cf := &v1.ConfigFile{
		Created: v1.Time{Time: t0.Add(2 * time.Hour)},
		History: []v1.History{
			{Created: v1.Time{Time: t0}, CreatedBy: "ADD rootfs.tar /"},
			{Created: v1.Time{Time: t0.Add(time.Hour)}, CreatedBy: `CMD ["sh"]`, EmptyLayer: true},
			{Created: v1.Time{Time: t0.Add(2 * time.Hour)}, CreatedBy: "RUN make", Comment: "buildkit.dockerfile.v0"},
		},
	}
	id := hash('a').String()
	got := historyItems(id, cf, []int64{1000, 20}, []string{"app:1"})
	want := []image.HistoryResponseItem{
		{ID: id, Created: t0.Add(2 * time.Hour).Unix(), CreatedBy: "RUN make", Comment: "buildkit.dockerfile.v0", Size: 20, Tags: []string{"app:1"}},
		{ID: "<missing>", Created: t0.Add(time.Hour).Unix(), CreatedBy: `CMD ["sh"]`},
		{ID: "<missing>", Created: t0.Unix(), CreatedBy: "ADD rootfs.tar /", Size: 1000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("historyItems =\n%+v\nwant\n%+v", got, want)
	}

	// Without history: one entry per layer, so the sizes show.
	got = historyItems(id, &v1.ConfigFile{Created: v1.Time{Time: t0}}, []int64{5, 7}, nil)
	if len(got) != 2 || got[0].ID != id || got[0].Size != 7 || got[1].Size != 5 || got[0].Tags != nil {
		t.Errorf("historyItems without history = %+v", got)
	}
}

// The image routes must coexist with the others on one ServeMux (which
// panics on conflicting patterns) and send unknown actions to a 404.
func TestImageRoutes(t *testing.T) {
	s := &Server{}
	h := s.Handler()
	defer s.Close()
	tests := []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/v1.50/images/busybox/frobnicate", http.StatusNotFound},
		{http.MethodPost, "/v1.50/images/localhost:5000/app/frobnicate", http.StatusNotFound},
		{http.MethodGet, "/v1.50/images/search?term=busybox", http.StatusBadRequest},
		{http.MethodPost, "/v1.50/images/create?fromSrc=-", http.StatusBadRequest},
		{http.MethodPost, "/v1.50/images/create?fromImage=busybox", http.StatusBadRequest},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.code {
			t.Errorf("%s %s = %d %s, want %d", tt.method, tt.path, rec.Code, rec.Body.String(), tt.code)
		}
	}
}

// imageTestServer is the API over a real image service in a temporary
// directory, with an in-memory registry on loopback. Tenants come from
// the X-Test-Tenant header (alice by default). It has no macro store, so
// only the endpoints that need no containers can be used.
func imageTestServer(t *testing.T) (h http.Handler, s *Server, host string) {
	t.Helper()
	dir := t.TempDir()
	st, err := imagestore.Open(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	svc := &himage.Service{
		Store:  st,
		Layers: &layer.Cache{Dir: filepath.Join(dir, "layers")},
		Auth:   &auth.Store{Dir: filepath.Join(dir, "auth")},
	}
	reg := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	s = &Server{Images: svc, Log: slog.New(slog.DiscardHandler), Tenant: func(r *http.Request) (string, error) {
		if v := r.Header.Get("X-Test-Tenant"); v != "" {
			return v, nil
		}
		return "alice", nil
	}}
	h = s.Handler()
	t.Cleanup(s.Close)
	return h, s, strings.TrimPrefix(reg.URL, "http://")
}

func call(t *testing.T, h http.Handler, method, target string, body io.Reader, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// streamLines decodes a JSON message stream.
func streamLines(t *testing.T, body string) []streamMessage {
	t.Helper()
	var out []streamMessage
	dec := json.NewDecoder(strings.NewReader(body))
	for dec.More() {
		var m streamMessage
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("bad stream %q: %v", body, err)
		}
		out = append(out, m)
	}
	return out
}

func statuses(ms []streamMessage) []string {
	var out []string
	for _, m := range ms {
		s := m.Status + m.Stream + m.ErrorMessage
		if m.ID != "" {
			s = m.ID + ": " + s
		}
		out = append(out, s)
	}
	return out
}

func TestImageEndpoints(t *testing.T) {
	h, s, host := imageTestServer(t)
	l1, err := testimage.Layer([]testimage.File{{Path: "/bin", Dir: true}, {Path: "/bin/app", Mode: 0o755, Data: []byte("#!/bin/sh\n")}})
	if err != nil {
		t.Fatal(err)
	}
	l2, err := testimage.Layer([]testimage.File{{Path: "/etc/motd", Data: []byte("hi\n")}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := testimage.Image(v1.Config{Cmd: []string{"/bin/app"}, Labels: map[string]string{"team": "a"}}, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/team/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	id, _ := img.ConfigName()
	mdigest, _ := img.Digest()
	app := host + "/team/app:1"

	// Pull, then pull again.
	rec := call(t, h, http.MethodPost, "/v1.50/images/create?fromImage="+host+"/team/app&tag=1", nil)
	ms := streamLines(t, rec.Body.String())
	if rec.Code != http.StatusOK || len(ms) < 4 {
		t.Fatalf("pull = %d %s", rec.Code, rec.Body.String())
	}
	if got := statuses(ms[:1]); got[0] != "1: Pulling from team/app" {
		t.Errorf("pull starts with %q", got[0])
	}
	if ms[1].Status != "Pulling fs layer" || ms[1].Progress == nil {
		t.Errorf("layer line without progressDetail: %+v", ms[1])
	}
	last := statuses(ms[len(ms)-2:])
	if last[0] != "Digest: "+mdigest.String() || last[1] != "Status: Downloaded newer image for "+app {
		t.Errorf("pull ends with %q", last)
	}
	rec = call(t, h, http.MethodPost, "/v1.50/images/create?fromImage="+host+"/team/app&tag=1", nil)
	ms = streamLines(t, rec.Body.String())
	if got := ms[len(ms)-1].Status; got != "Status: Image is up to date for "+app {
		t.Errorf("second pull ends with %q", got)
	}
	rec = call(t, h, http.MethodPost, "/v1.50/images/create?fromImage="+host+"/team/app&tag=nope", nil)
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "not found") {
		t.Errorf("pull of a missing tag = %d %s", rec.Code, rec.Body.String())
	}
	rec = call(t, h, http.MethodPost, "/v1.50/images/create?fromImage=UPPER/case&tag=1", nil)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "invalid reference format") {
		t.Errorf("pull of a bad reference = %d %s", rec.Code, rec.Body.String())
	}

	// List, with filters.
	var list []image.Summary
	rec = call(t, h, http.MethodGet, "/v1.50/images/json", nil)
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list) != 1 {
		t.Fatalf("list = %s, %v", rec.Body.String(), err)
	}
	if sum := list[0]; sum.ID != id.String() || !reflect.DeepEqual(sum.RepoTags, []string{app}) ||
		!reflect.DeepEqual(sum.RepoDigests, []string{host + "/team/app@" + mdigest.String()}) ||
		sum.Labels["team"] != "a" || sum.Containers != -1 || sum.SharedSize != -1 || sum.Size <= 0 {
		t.Errorf("list = %+v", sum)
	}
	listSize := list[0].Size
	for filter, n := range map[string]int{
		`{"reference":["*/team/app"]}`: 1, `{"reference":["nope"]}`: 0,
		`{"label":["team=a"]}`: 1, `{"label":["team=b"]}`: 0,
		`{"dangling":["true"]}`: 0, `{"dangling":["false"]}`: 1,
	} {
		rec = call(t, h, http.MethodGet, "/v1.50/images/json?filters="+url.QueryEscape(filter), nil)
		list = nil
		if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list) != n {
			t.Errorf("list %s = %s, want %d images", filter, rec.Body.String(), n)
		}
	}
	if rec = call(t, h, http.MethodGet, "/v1.50/images/json?filters="+url.QueryEscape(`{"reference":["["]}`), nil); rec.Code != http.StatusBadRequest {
		t.Errorf("bad reference pattern = %d", rec.Code)
	}

	// Inspect and history.
	var info image.InspectResponse
	rec = call(t, h, http.MethodGet, "/v1.50/images/"+app+"/json", nil)
	if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil {
		t.Fatalf("inspect = %s, %v", rec.Body.String(), err)
	}
	if info.ID != id.String() || info.Config == nil || !reflect.DeepEqual(info.Config.Cmd, []string{"/bin/app"}) ||
		len(info.RootFS.Layers) != 2 || info.Os != "linux" || info.Created != "2026-01-01T00:00:00Z" {
		t.Errorf("inspect = %+v", info)
	}
	if info.Size != listSize {
		t.Errorf("inspect says size %d, list %d", info.Size, listSize)
	}
	rec = call(t, h, http.MethodGet, "/v1.50/images/nope/json", nil)
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "No such image: nope") {
		t.Errorf("inspect of a missing image = %d %s", rec.Code, rec.Body.String())
	}
	var hist []image.HistoryResponseItem
	rec = call(t, h, http.MethodGet, "/v1.50/images/"+id.Hex[:12]+"/history", nil)
	if err := json.Unmarshal(rec.Body.Bytes(), &hist); err != nil || len(hist) == 0 || hist[0].ID != id.String() {
		t.Errorf("history = %s, %v", rec.Body.String(), err)
	}

	// Tag, and push the new name.
	if rec = call(t, h, http.MethodPost, "/v1.50/images/"+app+"/tag?repo="+host+"/other/app&tag=2", nil); rec.Code != http.StatusCreated {
		t.Fatalf("tag = %d %s", rec.Code, rec.Body.String())
	}
	rec = call(t, h, http.MethodPost, "/v1.50/images/"+host+"/other/app/push?tag=2", nil)
	ms = streamLines(t, rec.Body.String())
	if rec.Code != http.StatusOK || len(ms) < 3 {
		t.Fatalf("push = %d %s", rec.Code, rec.Body.String())
	}
	if ms[0].Status != "The push refers to repository ["+host+"/other/app]" {
		t.Errorf("push starts with %q", ms[0].Status)
	}
	if ms[len(ms)-1].Aux == nil || !strings.HasPrefix(ms[len(ms)-2].Status, "2: digest: "+mdigest.String()+" size: ") {
		t.Errorf("push ends with %q", statuses(ms[len(ms)-2:]))
	}
	rec = call(t, h, http.MethodPost, "/v1.50/images/"+host+"/none/push?tag=1", nil)
	if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "An image does not exist locally with the tag") {
		t.Errorf("push of a missing image = %d %s", rec.Code, rec.Body.String())
	}

	// Save, and load what was saved for another tenant.
	rec = call(t, h, http.MethodGet, "/v1.50/images/get?names="+url.QueryEscape(app), nil)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/x-tar" || rec.Body.Len() == 0 {
		t.Fatalf("save = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	archive := rec.Body.Bytes()
	if rec = call(t, h, http.MethodGet, "/v1.50/images/nope/get", nil); rec.Code != http.StatusNotFound {
		t.Errorf("save of a missing image = %d %s", rec.Code, rec.Body.String())
	}
	rec = call(t, h, http.MethodPost, "/v1.50/images/load", bytes.NewReader(archive), "X-Test-Tenant", "bob")
	ms = streamLines(t, rec.Body.String())
	if rec.Code != http.StatusOK || len(ms) == 0 || ms[len(ms)-1].Stream != "Loaded image: "+app+"\n" {
		t.Fatalf("load = %d %s", rec.Code, rec.Body.String())
	}
	for _, m := range ms[:len(ms)-1] {
		if m.Status != "Loading layer" || m.Progress == nil || m.Progress.Total == 0 {
			t.Errorf("load progress %+v", m)
		}
	}
	rec = call(t, h, http.MethodPost, "/v1.50/images/load?quiet=1", bytes.NewReader(archive), "X-Test-Tenant", "carol")
	if ms = streamLines(t, rec.Body.String()); len(ms) != 1 {
		t.Errorf("quiet load = %s", rec.Body.String())
	}
	rec = call(t, h, http.MethodPost, "/v1.50/images/load", strings.NewReader("not a tarball"))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "invalid archive") {
		t.Errorf("load of garbage = %d %s", rec.Code, rec.Body.String())
	}

	// Login to the (open) registry.
	rec = call(t, h, http.MethodPost, "/v1.50/auth", strings.NewReader(`{"username":"u","password":"p","serveraddress":"http://`+host+`"}`))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"Status":"Login Succeeded"`) {
		t.Errorf("login = %d %s", rec.Code, rec.Body.String())
	}

	// What happened is in alice's and bob's events.
	past, _, cancel := s.events.subscribe()
	cancel()
	got := map[string][]string{}
	for _, e := range past {
		got[e.tenant] = append(got[e.tenant], string(e.msg.Action))
	}
	if want := []string{"pull", "pull", "tag", "push", "save"}; !reflect.DeepEqual(got["alice"], want) {
		t.Errorf("alice's events = %q, want %q", got["alice"], want)
	}
	if want := []string{"load"}; !reflect.DeepEqual(got["bob"], want) {
		t.Errorf("bob's events = %q, want %q", got["bob"], want)
	}
}
