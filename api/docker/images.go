package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"

	himage "github.com/hearth-cloud/hearth/image"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// The image endpoints: pull, push, list, inspect, history, tag, remove,
// prune, save, load and login, over the image service. Every call acts on
// the request's tenant, whose names are the only ones it sees.
//
// Image names may hold slashes (registry:5000/team/app), which a ServeMux
// wildcard can only match at the end of a pattern, so the per-image routes
// catch /images/{name...} for each method and split the action (json,
// history, get, push, tag) off the end themselves.
func (s *Server) imageRoutes(handle handleFunc) {
	handle("POST /images/create", s.pullImage)
	handle("GET /images/json", s.listImages)
	handle("POST /images/prune", s.pruneImages)
	handle("POST /images/load", s.loadImages)
	handle("GET /images/get", func(w http.ResponseWriter, r *http.Request, tenant string) {
		s.saveImages(w, r, tenant, r.URL.Query()["names"])
	})
	handle("GET /images/search", func(w http.ResponseWriter, r *http.Request, _ string) {
		writeError(w, errdefs.InvalidArgument("searching registries (docker search) is not supported: look the image up on the registry's own site (for Docker Hub, https://hub.docker.com/search)"))
	})
	handle("POST /auth", s.login)
	handle("GET /images/{name...}", func(w http.ResponseWriter, r *http.Request, tenant string) {
		name, action := imageAction(r.PathValue("name"))
		switch action {
		case "json":
			s.inspectImage(w, r, tenant, name)
		case "history":
			s.imageHistory(w, r, tenant, name)
		case "get":
			s.saveImages(w, r, tenant, []string{name})
		default:
			writeError(w, errdefs.NotFound("page not found"))
		}
	})
	handle("POST /images/{name...}", func(w http.ResponseWriter, r *http.Request, tenant string) {
		name, action := imageAction(r.PathValue("name"))
		switch action {
		case "push":
			s.pushImage(w, r, tenant, name)
		case "tag":
			s.tagImage(w, r, tenant, name)
		default:
			writeError(w, errdefs.NotFound("page not found"))
		}
	})
	handle("DELETE /images/{name...}", func(w http.ResponseWriter, r *http.Request, tenant string) {
		s.removeImage(w, r, tenant, r.PathValue("name"))
	})
}

// imageAction splits "registry:5000/team/app/json" into the image name
// and the action, the last path element.
func imageAction(p string) (name, action string) {
	i := strings.LastIndex(p, "/")
	if i <= 0 {
		return p, ""
	}
	return p[:i], p[i+1:]
}

// Progress streams.

// streamMessage is a line of a JSON progress stream: moby's message, plus
// the "error" string Docker still sends beside errorDetail for older
// clients.
type streamMessage struct {
	jsonstream.Message
	ErrorMessage string `json:"error,omitempty"`
}

// progressStream writes the JSON message stream pull, push and load
// answer. The 200 and the prelude wait for the first message, so an error
// found before any progress (an unknown image, a bad archive) still gets
// its own HTTP status, as Docker answers; later errors can only be a last
// message. The image service reports progress from several goroutines at
// once, hence the lock.
type progressStream struct {
	w       http.ResponseWriter
	enc     *json.Encoder
	prelude []jsonstream.Message

	mu      sync.Mutex
	started bool
	// broken is set when a write fails: the client has gone.
	broken bool
}

func newProgressStream(w http.ResponseWriter, prelude ...jsonstream.Message) *progressStream {
	return &progressStream{w: w, enc: json.NewEncoder(w), prelude: prelude}
}

// send writes a message, starting the answer if it is the first.
func (p *progressStream) send(m jsonstream.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.start()
	p.write(streamMessage{Message: m})
}

// fail ends the stream with err: an error answer while nothing has been
// sent, an error message (which the docker CLI prints) after.
func (p *progressStream) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.started {
		p.started = true
		writeError(p.w, err)
		return
	}
	p.write(errorMessage(err))
}

func (p *progressStream) start() {
	if p.started {
		return
	}
	p.started = true
	p.w.Header().Set("Content-Type", "application/json")
	p.w.WriteHeader(http.StatusOK)
	for _, m := range p.prelude {
		p.write(streamMessage{Message: m})
	}
}

func (p *progressStream) write(m streamMessage) {
	if p.broken {
		return
	}
	if err := p.enc.Encode(m); err != nil {
		p.broken = true
		return
	}
	flush(p.w)
}

// errorMessage is how Docker reports an error inside a stream. It leaves
// the code out: the docker CLI prints "authentication is required"
// instead of the message for a 401.
func errorMessage(err error) streamMessage {
	return streamMessage{
		Message:      jsonstream.Message{Error: &jsonstream.Error{Message: err.Error()}},
		ErrorMessage: err.Error(),
	}
}

// progressMessage turns a step of the image service into Docker's
// message. A line about a layer always carries a progressDetail, {} when
// there is nothing to count, as Docker's do: the docker CLI redraws a
// line in place only for messages with both an ID and a progressDetail,
// and starts a new block of lines at any other.
func progressMessage(p himage.Progress) jsonstream.Message {
	m := jsonstream.Message{ID: p.ID, Status: p.Status}
	if p.ID != "" || p.Current > 0 || p.Total > 0 {
		m.Progress = &jsonstream.Progress{Current: p.Current, Total: p.Total}
	}
	return m
}

// headerAuth reads the X-Registry-Auth header: an AuthConfig as JSON in
// base64url, padded or not; the zero AuthConfig when absent.
func headerAuth(r *http.Request) (registry.AuthConfig, error) {
	var a registry.AuthConfig
	v := r.Header.Get(registry.AuthHeader)
	if v == "" {
		return a, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
	if err != nil {
		return a, errdefs.InvalidArgument("invalid X-Registry-Auth header: %v", err)
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, errdefs.InvalidArgument("invalid X-Registry-Auth header: %v", err)
	}
	return a, nil
}

// pullError is a failed pull as Docker reports it: a registry's refusal
// is a 404 (it cannot be told from a missing repository), never a 401,
// which the CLI would take as its cue to prompt for a login.
func pullError(err error) error {
	if errdefs.IsUnauthenticated(err) {
		return errdefs.NotFound("%s", strings.ReplaceAll(err.Error(), "'hearth image login'", "'docker login'"))
	}
	return err
}

// callContext carries the credentials a client sent with a pull or push
// (X-Registry-Auth) to the image service, for registry unless the header
// names its own. As with Docker, a header that does not decode is ignored.
func (s *Server) callContext(r *http.Request, tenant, registry string) context.Context {
	a, err := headerAuth(r)
	if err != nil {
		s.Log.Debug("ignoring X-Registry-Auth", "tenant", tenant, "err", err)
		return r.Context()
	}
	if a.Username == "" && a.Auth == "" && a.IdentityToken == "" && a.RegistryToken == "" {
		return r.Context()
	}
	if a.ServerAddress != "" {
		registry = a.ServerAddress
	}
	return himage.WithCredentials(r.Context(), registry, authn.AuthConfig{Username: a.Username, Password: a.Password,
		Auth: a.Auth, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken})
}

// Pull.

// pullImage is POST /images/create (docker pull).
func (s *Server) pullImage(w http.ResponseWriter, r *http.Request, tenant string) {
	q := r.URL.Query()
	if q.Get("fromSrc") != "" {
		writeError(w, errdefs.InvalidArgument("importing a filesystem tarball (docker import) is not supported: bring images to Hearth with `docker pull`, or with `docker save IMAGE | docker load`"))
		return
	}
	ref, err := pullRef(q.Get("fromImage"), q.Get("tag"))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := checkPlatform(q.Get("platform")); err != nil {
		writeError(w, err)
		return
	}
	named, err := himage.ParseRef(ref, s.Images.Insecure)
	if err != nil {
		writeError(w, err)
		return
	}
	ctx := s.callContext(r, tenant, named.Context().RegistryStr())
	canonical := himage.Canonical(named)
	familiar := himage.Familiar(canonical)
	before := s.refManifest(tenant, canonical)

	// Docker says where it pulls from once it has the manifest, which is
	// when the service reports its first step.
	st := newProgressStream(w, jsonstream.Message{ID: named.Identifier(), Status: "Pulling from " + named.Context().RepositoryStr()})
	rec, err := s.Images.Pull(ctx, tenant, ref, func(p himage.Progress) { st.send(progressMessage(p)) })
	if err != nil {
		st.fail(pullError(err))
		return
	}
	status := "Status: Downloaded newer image for " + familiar
	if before == rec.Manifest {
		status = "Status: Image is up to date for " + familiar
	}
	st.send(jsonstream.Message{Status: status})
	repo, _ := himage.SplitName(familiar)
	s.emitImage(tenant, events.ActionPull, familiar, repo)
}

// pullRef joins the fromImage and tag parameters of a pull. The docker
// CLI sends the name and the tag (or digest) apart; a name with no tag
// and no tag parameter is `docker pull --all-tags`.
func pullRef(fromImage, tag string) (string, error) {
	if fromImage == "" {
		return "", errdefs.InvalidArgument("no image given: fromImage is required")
	}
	if tag == "" {
		if _, t := himage.SplitName(fromImage); t != "" {
			return fromImage, nil
		}
		return "", errdefs.InvalidArgument("pulling every tag of a repository (docker pull --all-tags) is not supported: name a tag")
	}
	// A tag parameter replaces a tag or digest in the name, as Docker's.
	repo, _ := himage.SplitName(fromImage)
	if strings.HasPrefix(tag, "sha256:") {
		return repo + "@" + tag, nil
	}
	return repo + ":" + tag, nil
}

// checkPlatform refuses a pull for a platform Hearth cannot run: the
// store keeps one image per name, the linux/amd64 one.
func checkPlatform(p string) error {
	if p == "" {
		return nil
	}
	parts := strings.Split(strings.ToLower(strings.TrimSpace(p)), "/")
	arch := ""
	if len(parts) > 1 {
		arch = parts[1]
	}
	if parts[0] == himage.Platform.OS && (arch == "" || arch == himage.Platform.Architecture || arch == "x86_64" || arch == "x86-64") {
		return nil
	}
	return errdefs.InvalidArgument("platform %s is not supported: Hearth runs %s/%s images only", p, himage.Platform.OS, himage.Platform.Architecture)
}

// refManifest is the manifest a tenant's name stands for, zero when the
// tenant has no such name; a pull that leaves it as it was is "up to date".
func (s *Server) refManifest(tenant, canonical string) v1.Hash {
	refs, err := s.Images.Store.Refs(tenant)
	if err != nil {
		return v1.Hash{}
	}
	for _, r := range refs {
		if r.Name == canonical {
			return r.Manifest
		}
	}
	return v1.Hash{}
}

// Push.

// pushResult is the aux message that ends each tag's push, as Docker's
// (moby's API module has no type for it).
type pushResult struct {
	Tag    string `json:"Tag"`
	Digest string `json:"Digest"`
	Size   int    `json:"Size"`
}

// pushImage is POST /images/{name}/push (docker push).
func (s *Server) pushImage(w http.ResponseWriter, r *http.Request, tenant, name string) {
	repo, targets, err := s.pushTargets(tenant, name, r.URL.Query().Get("tag"))
	if err != nil {
		writeError(w, err)
		return
	}
	ctx := r.Context()
	if named, err := himage.ParseRef(repo, s.Images.Insecure); err == nil {
		ctx = s.callContext(r, tenant, named.Context().RegistryStr())
	}
	st := newProgressStream(w, jsonstream.Message{Status: "The push refers to repository [" + repo + "]"})
	for _, target := range targets {
		_, tag := himage.SplitName(target)
		// The service reports the upload as one total, not per layer;
		// under the tag's own line it is a bar the CLI redraws in place
		// beneath the layers', where an ID-less one would scroll.
		var total atomic.Bool
		dig, err := s.Images.Push(ctx, tenant, target, func(p himage.Progress) {
			if p.ID == "" && (p.Current > 0 || p.Total > 0) {
				p.ID = tag
				total.Store(true)
			}
			st.send(progressMessage(p))
		})
		if err != nil {
			st.fail(err)
			return
		}
		if total.Load() {
			st.send(progressMessage(himage.Progress{ID: tag, Status: "Pushed"}))
		}
		size := 0
		if img, _, err := s.Images.Get(tenant, target); err == nil {
			if raw, err := img.RawManifest(); err == nil {
				size = len(raw)
			}
		}
		st.send(jsonstream.Message{Status: fmt.Sprintf("%s: digest: %s size: %d", tag, dig, size)})
		if aux, err := json.Marshal(pushResult{Tag: tag, Digest: dig.String(), Size: size}); err == nil {
			raw := json.RawMessage(aux)
			st.send(jsonstream.Message{Progress: &jsonstream.Progress{}, Aux: &raw})
		}
		familiar := himage.Familiar(target)
		s.emitImage(tenant, events.ActionPush, familiar, familiar)
	}
}

// pushTargets lists the canonical names a push sends: the one tag asked
// for, or with none every tag of the repository (docker push --all-tags).
// repo is the canonical repository, as Docker names it in its first line.
func (s *Server) pushTargets(tenant, name, tag string) (repo string, targets []string, err error) {
	r, err := himage.ParseRef(name, s.Images.Insecure)
	if err != nil {
		return "", nil, err
	}
	repo, _ = himage.SplitName(himage.Canonical(r))
	if strings.Contains(name, "@") || strings.Contains(tag, ":") {
		return "", nil, errdefs.InvalidArgument("cannot push a digest reference")
	}
	if tag != "" {
		return repo, []string{repo + ":" + tag}, nil
	}
	if _, t := himage.SplitName(name); t != "" {
		// A name with its own tag (never from the CLI, which sends the
		// tag apart) means that tag.
		return repo, []string{himage.Canonical(r)}, nil
	}
	sums, err := s.Images.List(tenant)
	if err != nil {
		return "", nil, fmt.Errorf("push %s: %w", name, err)
	}
	for _, sum := range sums {
		if rp, t := himage.SplitName(sum.Name); rp == repo && t != "" && !strings.Contains(sum.Name, "@") {
			targets = append(targets, sum.Name)
		}
	}
	if len(targets) == 0 {
		return "", nil, errdefs.NotFound("An image does not exist locally with the tag: %s", himage.Familiar(repo))
	}
	sort.Strings(targets)
	return repo, slices.Compact(targets), nil
}

// Listing.

// localImage is one of a tenant's images with all its names: the image
// service lists each name as an entry of its own.
type localImage struct {
	id v1.Hash
	// manifests are those the names point at: usually one, but the same
	// config may come pulled (compressed layers) and loaded (not).
	manifests []v1.Hash
	// tags (busybox:latest) and digests (busybox@sha256:…) are familiar.
	tags    []string
	digests []string
	// names are what removes it by name: its tags and digest references.
	names   []string
	created time.Time
	size    int64
	labels  map[string]string
	// blobs are the config's and layers' sizes by digest, for sizes
	// shared between images; manifestSizes are the manifests'.
	blobs         map[v1.Hash]int64
	manifestSizes map[v1.Hash]int64
}

// groupImages gathers the service's per-name entries into images, newest
// first.
func groupImages(sums []himage.Summary) []*localImage {
	byID := map[v1.Hash]*localImage{}
	var out []*localImage
	for _, sum := range sums {
		li := byID[sum.ID]
		if li == nil {
			li = &localImage{id: sum.ID, created: sum.Created, size: sum.Size}
			byID[sum.ID] = li
			out = append(out, li)
		}
		if !slices.Contains(li.manifests, sum.Manifest) {
			li.manifests = append(li.manifests, sum.Manifest)
		}
		if sum.Name != "" {
			f := himage.Familiar(sum.Name)
			li.names = append(li.names, f)
			if strings.Contains(sum.Name, "@") {
				li.digests = append(li.digests, f)
			} else {
				li.tags = append(li.tags, f)
			}
		}
		if sum.RepoDigest != "" {
			li.digests = append(li.digests, himage.Familiar(sum.RepoDigest))
		}
	}
	for _, li := range out {
		for _, l := range []*[]string{&li.tags, &li.digests, &li.names} {
			sort.Strings(*l)
			*l = slices.Compact(*l)
			if *l == nil {
				*l = []string{}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].created.Equal(out[j].created) {
			return out[i].created.After(out[j].created)
		}
		return out[i].id.Hex < out[j].id.Hex
	})
	return out
}

// localImages lists a tenant's images with their labels and blobs. An
// image whose blobs cannot be read still shows, with what the list knew,
// as `docker images` shows a broken image rather than failing.
func (s *Server) localImages(tenant string) ([]*localImage, error) {
	sums, err := s.Images.List(tenant)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	imgs := groupImages(sums)
	for _, li := range imgs {
		// Size is the layers', as image inspect has it.
		layers := int64(0)
		for _, md := range li.manifests {
			img, err := s.Images.Store.Image(md)
			if err != nil {
				continue
			}
			if li.labels == nil {
				if cf, err := img.ConfigFile(); err == nil {
					li.labels = cf.Config.Labels
				}
			}
			m, err := img.Manifest()
			if err != nil {
				continue
			}
			if li.blobs == nil {
				li.blobs = map[v1.Hash]int64{}
			}
			li.blobs[m.Config.Digest] = m.Config.Size
			for _, l := range m.Layers {
				if _, ok := li.blobs[l.Digest]; !ok {
					layers += l.Size
				}
				li.blobs[l.Digest] = l.Size
			}
			if raw, err := img.RawManifest(); err == nil {
				if li.manifestSizes == nil {
					li.manifestSizes = map[v1.Hash]int64{}
				}
				li.manifestSizes[md] = int64(len(raw))
			}
		}
		if li.blobs != nil {
			li.size = layers
		}
	}
	return imgs, nil
}

// sharedSizes is, per image, the bytes of its blobs that other images
// hold too, and the bytes of all blobs counted once.
func sharedSizes(imgs []*localImage) (shared map[v1.Hash]int64, total int64) {
	holders := map[v1.Hash]int{}
	sizes := map[v1.Hash]int64{}
	for _, li := range imgs {
		for d, n := range li.blobs {
			holders[d]++
			sizes[d] = n
		}
	}
	for _, n := range sizes {
		total += n
	}
	shared = map[v1.Hash]int64{}
	for _, li := range imgs {
		for d, n := range li.blobs {
			if holders[d] > 1 {
				shared[li.id] += n
			}
		}
	}
	return shared, total
}

func (li *localImage) summary() image.Summary {
	return image.Summary{
		ID:          li.id.String(),
		RepoTags:    li.tags,
		RepoDigests: li.digests,
		Created:     unixTime(li.created),
		Size:        li.size,
		Labels:      li.labels,
		Containers:  -1,
		SharedSize:  -1,
	}
}

func unixTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// imageUsers maps image IDs to the tenant's containers that run them.
func (s *Server) imageUsers(ctx context.Context, tenant string) (map[string][]imageUser, error) {
	cs, err := s.containers(ctx, tenant)
	if err != nil {
		return nil, err
	}
	users := map[string][]imageUser{}
	for _, c := range cs {
		id := c.pod.Spec.Containers[0].Image
		users[id] = append(users[id], imageUser{id: c.ID(), running: c.running()})
	}
	return users, nil
}

// imageSummaries is the images part of `docker system df`: each image
// with the number of the tenant's containers using it and its shared
// size, and the bytes of all their blobs counted once.
func (s *Server) imageSummaries(ctx context.Context, tenant string) ([]image.Summary, int64, error) {
	imgs, err := s.localImages(tenant)
	if err != nil {
		return nil, 0, err
	}
	users, err := s.imageUsers(ctx, tenant)
	if err != nil {
		return nil, 0, err
	}
	shared, total := sharedSizes(imgs)
	out := make([]image.Summary, 0, len(imgs))
	for _, li := range imgs {
		sum := li.summary()
		sum.Containers = int64(len(users[li.id.String()]))
		sum.SharedSize = shared[li.id]
		out = append(out, sum)
	}
	return out, total, nil
}

// listImages is GET /images/json (docker images).
func (s *Server) listImages(w http.ResponseWriter, r *http.Request, tenant string) {
	f, err := parseFilters(r, "reference", "label", "label!", "dangling", "before", "since", "until")
	if err != nil {
		writeError(w, err)
		return
	}
	imgs, err := s.localImages(tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	match, err := s.imageFilter(tenant, f, imgs)
	if err != nil {
		writeError(w, err)
		return
	}
	var shared map[v1.Hash]int64
	if boolParam(r, "shared-size") {
		shared, _ = sharedSizes(imgs)
	}
	out := []image.Summary{}
	for _, li := range imgs {
		sum := li.summary()
		if !match(li, &sum) {
			continue
		}
		if shared != nil {
			sum.SharedSize = shared[li.id]
		}
		out = append(out, sum)
	}
	writeJSON(w, http.StatusOK, out)
}

// imageFilter builds the predicate of docker images --filter. It may
// narrow a summary's names: with a reference filter Docker shows only
// the names that match.
func (s *Server) imageFilter(tenant string, f filters, imgs []*localImage) (func(*localImage, *image.Summary) bool, error) {
	var dangling *bool
	for _, v := range f["dangling"] {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, errdefs.InvalidArgument("invalid filter 'dangling=%s'", v)
		}
		dangling = &b
	}
	patterns := f["reference"]
	for _, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, errdefs.InvalidArgument("invalid filter 'reference=%s': %v", p, err)
		}
	}
	until, err := f.until(time.Now())
	if err != nil {
		return nil, err
	}
	created := func(ref string) (time.Time, error) {
		rec, err := s.Images.Lookup(tenant, ref)
		if err != nil {
			return time.Time{}, err
		}
		for _, li := range imgs {
			if li.id == rec.ID {
				return li.created, nil
			}
		}
		return time.Time{}, errdefs.NotFound("No such image: %s", ref)
	}
	var before, since time.Time
	for _, v := range f["before"] {
		if before, err = created(v); err != nil {
			return nil, err
		}
	}
	for _, v := range f["since"] {
		if since, err = created(v); err != nil {
			return nil, err
		}
	}
	return func(li *localImage, sum *image.Summary) bool {
		if dangling != nil && *dangling != (len(li.tags) == 0) {
			return false
		}
		if !f.matchLabels(li.labels) {
			return false
		}
		if !before.IsZero() && !li.created.Before(before) {
			return false
		}
		if !since.IsZero() && !li.created.After(since) {
			return false
		}
		if !until.IsZero() && !li.created.Before(until) {
			return false
		}
		if len(patterns) > 0 {
			sum.RepoTags = matchingNames(patterns, li.tags)
			sum.RepoDigests = matchingNames(patterns, li.digests)
			if len(sum.RepoTags) == 0 && len(sum.RepoDigests) == 0 {
				return false
			}
		}
		return true
	}, nil
}

// matchingNames keeps the names any pattern matches.
func matchingNames(patterns, names []string) []string {
	out := []string{}
	for _, n := range names {
		if anyOf(patterns, func(p string) bool { return matchReference(p, n) }) {
			out = append(out, n)
		}
	}
	return out
}

// matchReference applies a reference filter's glob to a familiar name
// (busybox:latest, busybox@sha256:…), as Docker does: to the whole name,
// or to the repository alone, so "busy*" matches busybox:latest.
func matchReference(pattern, familiar string) bool {
	if ok, _ := path.Match(pattern, familiar); ok {
		return true
	}
	repo, _ := himage.SplitName(familiar)
	ok, _ := path.Match(pattern, repo)
	return ok
}

// Inspect and history.

// imageWithConfig finds a tenant's image and reads its config.
func (s *Server) imageWithConfig(tenant, name string) (*himage.Info, v1.Image, *v1.ConfigFile, error) {
	info, err := s.Images.Inspect(tenant, name)
	if err != nil {
		return nil, nil, nil, err
	}
	img, _, err := s.Images.Get(tenant, info.ID)
	if err != nil {
		return nil, nil, nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, nil, nil, fmt.Errorf("image %s: read config: %w", name, err)
	}
	return info, img, cf, nil
}

// inspectImage is GET /images/{name}/json (docker image inspect).
func (s *Server) inspectImage(w http.ResponseWriter, r *http.Request, tenant, name string) {
	info, img, cf, err := s.imageWithConfig(tenant, name)
	if err != nil {
		writeError(w, err)
		return
	}
	// The config's top-level comment is Docker's, which go-containerregistry
	// does not read.
	var extra struct {
		Comment string `json:"comment"`
	}
	if raw, err := img.RawConfigFile(); err == nil {
		json.Unmarshal(raw, &extra)
	}
	created := ""
	if !cf.Created.IsZero() {
		created = cf.Created.Format(time.RFC3339Nano)
	}
	writeJSON(w, http.StatusOK, image.InspectResponse{
		ID:           info.ID,
		RepoTags:     info.RepoTags,
		RepoDigests:  info.RepoDigests,
		Comment:      extra.Comment,
		Created:      created,
		Author:       cf.Author,
		Config:       dockerConfig(cf.Config),
		Architecture: cf.Architecture,
		Variant:      cf.Variant,
		Os:           cf.OS,
		OsVersion:    cf.OSVersion,
		Size:         info.Size,
		RootFS:       image.RootFS{Type: "layers", Layers: info.RootFS.Layers},
	})
}

// dockerConfig is an image config in the shape image inspect has had
// since API 1.50: the OCI config plus Docker's healthcheck, ONBUILD and
// SHELL, without the container-only fields older answers carried.
func dockerConfig(c v1.Config) *dockerspec.DockerOCIImageConfig {
	out := &dockerspec.DockerOCIImageConfig{}
	out.User = c.User
	out.ExposedPorts = c.ExposedPorts
	out.Env = c.Env
	out.Entrypoint = c.Entrypoint
	out.Cmd = c.Cmd
	out.Volumes = c.Volumes
	out.WorkingDir = c.WorkingDir
	out.Labels = c.Labels
	out.StopSignal = c.StopSignal
	out.ArgsEscaped = c.ArgsEscaped // deprecated, but Docker still reports it
	out.OnBuild = c.OnBuild
	out.Shell = c.Shell
	if hc := c.Healthcheck; hc != nil {
		out.Healthcheck = &dockerspec.HealthcheckConfig{
			Test:        hc.Test,
			Interval:    hc.Interval,
			Timeout:     hc.Timeout,
			StartPeriod: hc.StartPeriod,
			Retries:     hc.Retries,
		}
	}
	return out
}

// imageHistory is GET /images/{name}/history (docker history).
func (s *Server) imageHistory(w http.ResponseWriter, r *http.Request, tenant, name string) {
	info, img, cf, err := s.imageWithConfig(tenant, name)
	if err != nil {
		writeError(w, err)
		return
	}
	m, err := img.Manifest()
	if err != nil {
		writeError(w, fmt.Errorf("image %s: read manifest: %w", name, err))
		return
	}
	var sizes []int64
	for _, l := range m.Layers {
		sizes = append(sizes, l.Size)
	}
	writeJSON(w, http.StatusOK, historyItems(info.ID, cf, sizes, info.RepoTags))
}

// historyItems is an image's history, newest first, as Docker shows it:
// only the top entry is an image (ID and tags), the rest "<missing>"; each
// entry that made a layer has that layer's size. An image without history
// gets an entry per layer, so its sizes still show.
func historyItems(id string, cf *v1.ConfigFile, layerSizes []int64, tags []string) []image.HistoryResponseItem {
	hist := cf.History
	if len(hist) == 0 {
		for range layerSizes {
			hist = append(hist, v1.History{Created: cf.Created})
		}
	}
	out := make([]image.HistoryResponseItem, 0, len(hist))
	layer := 0
	for _, h := range hist {
		item := image.HistoryResponseItem{ID: "<missing>", Created: unixTime(h.Created.Time), CreatedBy: h.CreatedBy, Comment: h.Comment}
		if !h.EmptyLayer {
			if layer < len(layerSizes) {
				item.Size = layerSizes[layer]
			}
			layer++
		}
		out = append(out, item)
	}
	slices.Reverse(out)
	if len(out) > 0 {
		out[0].ID = id
		if len(tags) > 0 {
			out[0].Tags = tags
		}
	}
	return out
}

// Tag and remove.

// tagImage is POST /images/{name}/tag (docker tag).
func (s *Server) tagImage(w http.ResponseWriter, r *http.Request, tenant, name string) {
	q := r.URL.Query()
	dst := q.Get("repo")
	if dst == "" {
		writeError(w, errdefs.InvalidArgument("no repository given: repo is required"))
		return
	}
	if tag := q.Get("tag"); tag != "" {
		dst += ":" + tag
	}
	if err := s.Images.Tag(tenant, name, dst); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
	if ref, err := himage.ParseRef(dst, s.Images.Insecure); err == nil {
		if rec, err := s.Images.Lookup(tenant, dst); err == nil {
			s.emitImage(tenant, events.ActionTag, rec.ID.String(), himage.Familiar(himage.Canonical(ref)))
		}
	}
}

// imageUser is a container using an image, as rmi's checks see it.
type imageUser struct {
	id      string
	running bool
}

// removeImage is DELETE /images/{name} (docker rmi). noprune is accepted
// and means nothing: Hearth's images have no parent images to prune.
func (s *Server) removeImage(w http.ResponseWriter, r *http.Request, tenant, name string) {
	force := boolParam(r, "force")
	rec, err := s.Images.Lookup(tenant, name)
	if err != nil {
		writeError(w, err)
		return
	}
	sums, err := s.Images.List(tenant)
	if err != nil {
		writeError(w, fmt.Errorf("remove %s: %w", name, err))
		return
	}
	names, isName := 0, false
	var digests []string
	for _, li := range groupImages(sums) {
		if li.id == rec.ID {
			names, digests = len(li.names), li.digests
		}
	}
	if ref, err := himage.ParseRef(name, s.Images.Insecure); err == nil {
		c := himage.Canonical(ref)
		isName = anyOf(sums, func(sum himage.Summary) bool { return sum.Name == c })
	}
	// The same reading of name as the image service's: an ID (or unique
	// prefix) that is not also a name removes the image with all names.
	byID := rec.Name == "" || (imageIDRE.MatchString(name) && !isName)

	// The image service's own check knows this node's pods only; the
	// tenant's containers run anywhere.
	users, err := s.imageUsers(r.Context(), tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := removeConflict(name, rec.ID, byID, names, force, users[rec.ID.String()]); err != nil {
		writeError(w, err)
		return
	}
	lines, err := s.Images.Remove(tenant, name, force)
	if err != nil {
		writeError(w, err)
		return
	}
	resp := deleteResponses(lines, rec.ID.String(), digests)
	s.emitDeletes(tenant, rec.ID.String(), resp)
	writeJSON(w, http.StatusOK, resp)
}

// imageIDRE is what the image service takes for an image ID or prefix.
var imageIDRE = regexp.MustCompile(`^(sha256:)?[0-9a-f]{4,64}$`)

// removeConflict applies Docker's rules for removing an image containers
// use. Removing the last name of an image a container uses needs force;
// removing it by ID needs force when only stopped containers use it. An
// image a running container uses is never deleted, even forced: Docker
// would then keep it untagged, which the image service cannot do, so
// Hearth refuses instead.
func removeConflict(ref string, id v1.Hash, byID bool, names int, force bool, users []imageUser) error {
	switch {
	case len(users) == 0:
		return nil
	case !byID && names > 1:
		// Only the name goes; the image stays.
		return nil
	case byID && names > 1 && !force:
		// The image service refuses this itself, in Docker's words.
		return nil
	}
	short := himage.ShortID(id)
	for _, u := range users {
		if u.running && (force || byID) {
			return errdefs.Conflict("conflict: unable to delete %s (cannot be forced) - image is being used by running container %s", short, shortContainerID(u.id))
		}
	}
	if force {
		return nil
	}
	if !byID {
		return errdefs.Conflict("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", ref, shortContainerID(users[0].id), short)
	}
	return errdefs.Conflict("conflict: unable to delete %s (must be forced) - image is being used by stopped container %s", short, shortContainerID(users[0].id))
}

func shortContainerID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// deleteResponses turns the image service's "Untagged: …" and
// "Deleted: …" lines into Docker's answer. When the image itself goes
// (id is deleted), its repository digests go with it, and Docker lists
// them as untagged too.
func deleteResponses(lines []string, id string, digests []string) []image.DeleteResponse {
	out := []image.DeleteResponse{}
	untagged := map[string]bool{}
	deleted := false
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "Untagged: "); ok {
			out = append(out, image.DeleteResponse{Untagged: v})
			untagged[v] = true
		} else if v, ok := strings.CutPrefix(l, "Deleted: "); ok {
			out = append(out, image.DeleteResponse{Deleted: v})
			deleted = deleted || v == id
		}
	}
	if !deleted {
		return out
	}
	var extra []image.DeleteResponse
	for _, d := range digests {
		if !untagged[d] {
			extra = append(extra, image.DeleteResponse{Untagged: d})
		}
	}
	// After the other untaggings, before the first deletion.
	at := slices.IndexFunc(out, func(d image.DeleteResponse) bool { return d.Deleted != "" })
	if at < 0 {
		at = len(out)
	}
	return slices.Insert(out, at, extra...)
}

// emitDeletes records the untag and delete events of a removal, as
// Docker's: both name the image by ID.
func (s *Server) emitDeletes(tenant, id string, resp []image.DeleteResponse) {
	attrs := map[string]string{"name": id}
	for _, d := range resp {
		switch {
		case d.Untagged != "":
			s.emit(tenant, events.ImageEventType, events.ActionUnTag, id, maps.Clone(attrs))
		case d.Deleted == id:
			s.emit(tenant, events.ImageEventType, events.ActionDelete, id, maps.Clone(attrs))
		}
	}
}

// pruneImages is POST /images/prune (docker image prune). It removes the
// tenant's images no container of the tenant uses: the untagged ones, or
// with dangling=false all of them, one name at a time as Docker does.
func (s *Server) pruneImages(w http.ResponseWriter, r *http.Request, tenant string) {
	f, err := parseFilters(r, "dangling", "label", "label!", "until")
	if err != nil {
		writeError(w, err)
		return
	}
	danglingOnly := true
	for _, v := range f["dangling"] {
		if danglingOnly, err = strconv.ParseBool(v); err != nil {
			writeError(w, errdefs.InvalidArgument("invalid filter 'dangling=%s'", v))
			return
		}
	}
	until, err := f.until(time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	imgs, err := s.localImages(tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	users, err := s.imageUsers(r.Context(), tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	// Sizes of every blob the tenant's images hold: what a removal's
	// "Deleted:" lines free.
	sizes := map[string]int64{}
	for _, li := range imgs {
		for _, m := range []map[v1.Hash]int64{li.blobs, li.manifestSizes} {
			for d, n := range m {
				sizes[d.String()] = n
			}
		}
	}
	rep := image.PruneReport{ImagesDeleted: []image.DeleteResponse{}}
	for _, li := range imgs {
		if len(users[li.id.String()]) > 0 || (danglingOnly && len(li.tags) > 0) ||
			!f.matchLabels(li.labels) || (!until.IsZero() && !li.created.Before(until)) {
			continue
		}
		resp, err := s.pruneImage(tenant, li)
		if err != nil {
			writeError(w, err)
			return
		}
		for _, d := range resp {
			if d.Deleted != "" {
				rep.SpaceReclaimed += uint64(sizes[d.Deleted])
			}
		}
		rep.ImagesDeleted = append(rep.ImagesDeleted, resp...)
	}
	s.emit(tenant, events.ImageEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(rep.SpaceReclaimed, 10)})
	writeJSON(w, http.StatusOK, rep)
}

// pruneImage removes one image by each of its names, the last of which
// takes the image, then by ID in case a name was gone or none was left.
// An image that turns out to be in use (the image service also knows
// this node's pods of other tenants) is skipped, not an error.
func (s *Server) pruneImage(tenant string, li *localImage) ([]image.DeleteResponse, error) {
	id := li.id.String()
	var out []image.DeleteResponse
	for _, ref := range append(slices.Clone(li.names), id) {
		lines, err := s.Images.Remove(tenant, ref, false)
		if errdefs.IsNotFound(err) {
			continue
		}
		if errdefs.IsConflict(err) {
			break
		}
		if err != nil {
			return out, err
		}
		resp := deleteResponses(lines, id, nil)
		s.emitDeletes(tenant, id, resp)
		out = append(out, resp...)
		if slices.ContainsFunc(resp, func(d image.DeleteResponse) bool { return d.Deleted == id }) {
			break
		}
	}
	return out, nil
}

// Save and load.

// tarAnswer sends a save's tarball, answering 200 only with its first
// byte, so an error before (an unknown name) is still a proper answer.
type tarAnswer struct {
	w     http.ResponseWriter
	wrote bool
}

func (t *tarAnswer) Write(p []byte) (int, error) {
	if !t.wrote {
		t.wrote = true
		t.w.Header().Set("Content-Type", "application/x-tar")
		t.w.WriteHeader(http.StatusOK)
	}
	return t.w.Write(p)
}

// saveImages is GET /images/get and GET /images/{name}/get (docker save).
func (s *Server) saveImages(w http.ResponseWriter, r *http.Request, tenant string, names []string) {
	out := &tarAnswer{w: w}
	if err := s.Images.Save(r.Context(), tenant, names, out); err != nil {
		if !out.wrote {
			writeError(w, err)
			return
		}
		// Ending the chunked answer cleanly would hand the client a
		// truncated tarball as if it were whole; breaking the
		// connection makes it an error there too.
		s.Log.Warn("image save failed while sending", "tenant", tenant, "images", names, "err", err)
		panic(http.ErrAbortHandler)
	}
	seen := map[v1.Hash]bool{}
	for _, n := range names {
		if rec, err := s.Images.Lookup(tenant, n); err == nil && !seen[rec.ID] {
			seen[rec.ID] = true
			s.emitImage(tenant, events.ActionSave, rec.ID.String(), rec.ID.String())
		}
	}
}

// loadProgress completes each layer's bar when the next begins: the image
// service reports only that a layer starts loading, with its size, and
// loads layers one at a time.
type loadProgress struct {
	send func(jsonstream.Message)
	open *himage.Progress
}

func (l *loadProgress) step(p himage.Progress) {
	l.done()
	l.send(progressMessage(p))
	if p.ID != "" && p.Total > 0 {
		l.open = &p
	}
}

// done fills the bar of the layer still loading, if any.
func (l *loadProgress) done() {
	if l.open == nil {
		return
	}
	p := *l.open
	p.Current = p.Total
	l.open = nil
	l.send(progressMessage(p))
}

// loadImages is POST /images/load (docker load). The image service reads
// an archive twice, from a file, so the body is spooled to one first.
func (s *Server) loadImages(w http.ResponseWriter, r *http.Request, tenant string) {
	file, err := spool(r.Body)
	if file != "" {
		defer os.Remove(file)
	}
	if err != nil {
		writeError(w, fmt.Errorf("load: receive archive: %w", err))
		return
	}
	st := newProgressStream(w)
	lp := &loadProgress{send: st.send}
	var progress func(himage.Progress)
	if !boolParam(r, "quiet") {
		progress = lp.step
	}
	lines, err := s.Images.Load(r.Context(), tenant, file, progress)
	if err != nil {
		st.fail(err)
		return
	}
	lp.done()
	for _, l := range lines {
		st.send(jsonstream.Message{Stream: l + "\n"})
		if id, ok := strings.CutPrefix(l, "Loaded image ID: "); ok {
			s.emitImage(tenant, events.ActionLoad, id, id)
		} else if name, ok := strings.CutPrefix(l, "Loaded image: "); ok {
			if rec, err := s.Images.Lookup(tenant, name); err == nil {
				s.emitImage(tenant, events.ActionLoad, rec.ID.String(), name)
			}
		}
	}
}

// spool copies r to a new temporary file and returns its path, also on
// error (when it is not empty) for the caller to remove.
func spool(r io.Reader) (string, error) {
	f, err := os.CreateTemp("", "hearth-load-*.tar")
	if err != nil {
		return "", err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return f.Name(), err
}

// Login.

// login is POST /auth (docker login): it checks the credentials with the
// registry and keeps them for the tenant's pulls and pushes.
func (s *Server) login(w http.ResponseWriter, r *http.Request, tenant string) {
	var a registry.AuthConfig
	if err := readJSON(r, &a); err != nil {
		writeError(w, err)
		return
	}
	user, password := a.Username, a.Password
	if user == "" && password == "" && a.Auth != "" {
		b, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			writeError(w, errdefs.InvalidArgument("invalid auth: %v", err))
			return
		}
		user, password, _ = strings.Cut(string(b), ":")
	}
	if user == "" || password == "" {
		if a.IdentityToken != "" {
			writeError(w, errdefs.InvalidArgument("logging in with an identity token is not supported: log in with a username and a password or access token"))
			return
		}
		writeError(w, errdefs.InvalidArgument("username and password are required"))
		return
	}
	if err := s.Images.Login(r.Context(), tenant, registryHost(a.ServerAddress), user, password); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, registry.AuthResponse{Status: "Login Succeeded"})
}

// registryHost is the registry a login names, as the image service takes
// it: "" for Docker Hub, which the docker CLI sends as its index URL
// (https://index.docker.io/v1/), and host[:port] for others, which may
// come with a scheme.
func registryHost(addr string) string {
	h := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(addr), "https://"), "http://")
	h, _, _ = strings.Cut(h, "/")
	switch h {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return ""
	}
	return h
}

// Events.

// emitImage records an image event, with the image's labels among its
// attributes as Docker's have them (for docker events --filter label=).
func (s *Server) emitImage(tenant string, action events.Action, id, name string) {
	attrs := map[string]string{}
	if img, _, err := s.Images.Get(tenant, id); err == nil {
		if cf, err := img.ConfigFile(); err == nil {
			maps.Copy(attrs, cf.Config.Labels)
		}
	}
	attrs["name"] = name
	s.emit(tenant, events.ImageEventType, action, id, attrs)
}
