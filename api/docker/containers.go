package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
	"github.com/hearth-cloud/hearth/tenancy"
	"github.com/hearth-cloud/hearth/volume"
)

type handleFunc func(pattern string, h func(w http.ResponseWriter, r *http.Request, tenant string))

func (s *Server) containerRoutes(handle handleFunc) {
	handle("POST /containers/create", s.createContainer)
	handle("GET /containers/json", s.listContainers)
	handle("POST /containers/prune", s.pruneContainers)
	handle("GET /containers/{id}/json", func(w http.ResponseWriter, r *http.Request, tenant string) {
		c, err := s.resolve(r.Context(), tenant, r.PathValue("id"))
		if err != nil {
			writeError(w, err)
			return
		}
		out := c.inspect()
		for i, m := range out.Mounts {
			if m.Type == "volume" {
				// Where the volume's data is on its node.
				for _, v := range c.pod.Spec.Volumes {
					if v.Type == "volume" && v.Alias == m.Name {
						out.Mounts[i].Source = volume.Path(s.DataDir, tenant, v.Source, v.Shared)
					}
				}
			}
		}
		writeJSON(w, http.StatusOK, out)
	})
	handle("POST /containers/{id}/start", s.startContainer)
	handle("POST /containers/{id}/stop", s.stopContainer)
	handle("POST /containers/{id}/restart", s.restartContainer)
	handle("POST /containers/{id}/kill", s.killContainer)
	handle("DELETE /containers/{id}", s.removeContainer)
	handle("POST /containers/{id}/wait", s.waitContainer)
	handle("POST /containers/{id}/rename", s.renameContainer)
	handle("POST /containers/{id}/update", s.updateContainer)
}

// listContainers is GET /containers/json (docker ps).
func (s *Server) listContainers(w http.ResponseWriter, r *http.Request, tenant string) {
	f, err := parseFilters(r, "id", "name", "label", "status", "ancestor", "network", "exited", "before", "since",
		"health", "is-task", "volume", "publish", "expose")
	if err != nil {
		writeError(w, err)
		return
	}
	limit, err := intParam(r, "limit", -1)
	if err != nil {
		writeError(w, err)
		return
	}
	if v := r.URL.Query().Get("before"); v != "" {
		f["before"] = append(f["before"], v)
	}
	if v := r.URL.Query().Get("since"); v != "" {
		f["since"] = append(f["since"], v)
	}
	all := boolParam(r, "all") || limit > 0 || len(f["status"]) > 0 || len(f["exited"]) > 0 ||
		len(f["before"]) > 0 || len(f["since"]) > 0
	cs, err := s.containers(r.Context(), tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].pod.CreatedAt.After(cs[j].pod.CreatedAt) })
	match, err := s.containerFilter(r.Context(), tenant, f)
	if err != nil {
		writeError(w, err)
		return
	}
	now := time.Now()
	out := []container.Summary{}
	for _, c := range cs {
		if !all && !c.running() {
			continue
		}
		if !match(c) {
			continue
		}
		out = append(out, c.summary(now))
		if limit > 0 && len(out) == limit {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// containerFilter builds the predicate of docker ps --filter.
func (s *Server) containerFilter(ctx context.Context, tenant string, f filters) (func(*ctr) bool, error) {
	for _, st := range f["status"] {
		switch st {
		case stateCreated, stateRunning, statePaused, stateRestarting, stateExited, stateDead, "removing":
		default:
			return nil, errdefs.InvalidArgument("invalid filter 'status=%s'", st)
		}
	}
	var exited []int
	for _, e := range f["exited"] {
		n, err := strconv.Atoi(e)
		if err != nil {
			return nil, errdefs.InvalidArgument("invalid filter 'exited=%s'", e)
		}
		exited = append(exited, n)
	}
	for _, h := range f["health"] {
		switch h {
		case "starting", "healthy", "unhealthy", "none":
		default:
			return nil, errdefs.InvalidArgument("Unrecognised filter value for health: %s", h)
		}
	}
	var names []*regexp.Regexp
	for _, n := range f["name"] {
		re, err := regexp.Compile(n)
		if err != nil {
			return nil, errdefs.InvalidArgument("invalid filter 'name=%s': %v", n, err)
		}
		names = append(names, re)
	}
	var before, since time.Time
	for _, ref := range f["before"] {
		c, err := s.resolve(ctx, tenant, ref)
		if err != nil {
			return nil, err
		}
		before = c.pod.CreatedAt
	}
	for _, ref := range f["since"] {
		c, err := s.resolve(ctx, tenant, ref)
		if err != nil {
			return nil, err
		}
		since = c.pod.CreatedAt
	}
	var ancestors []string
	for _, a := range f["ancestor"] {
		rec, err := s.Images.Lookup(tenant, a)
		if err != nil {
			// An image that is gone matches nothing, but is no error.
			ancestors = append(ancestors, "-")
			continue
		}
		ancestors = append(ancestors, rec.ID.String())
	}
	return func(c *ctr) bool {
		if ids := f["id"]; len(ids) > 0 && !anyOf(ids, func(id string) bool { return strings.HasPrefix(c.ID(), id) }) {
			return false
		}
		if len(names) > 0 && !anyOf(names, func(re *regexp.Regexp) bool { return re.MatchString(c.Name()) }) {
			return false
		}
		if !f.matchLabels(c.pod.Labels) {
			return false
		}
		if st := f["status"]; len(st) > 0 && !anyOf(st, func(s string) bool { return s == c.state() }) {
			return false
		}
		if len(exited) > 0 && (c.state() != stateExited || !anyOf(exited, func(n int) bool { return n == c.pod.Status.ExitCode })) {
			return false
		}
		if len(ancestors) > 0 && !anyOf(ancestors, func(id string) bool { return id == c.pod.Spec.Containers[0].Image }) {
			return false
		}
		if nets := f["network"]; len(nets) > 0 && !anyOf(nets, c.onNetwork) {
			return false
		}
		if hs := f["health"]; len(hs) > 0 {
			st := "none"
			if h := c.health(); h != nil {
				st = string(h.Status)
			}
			if !anyOf(hs, func(h string) bool { return h == st }) {
				return false
			}
		}
		if t := f["is-task"]; len(t) > 0 && !anyOf(t, func(v string) bool { return v == "false" || v == "0" }) {
			return false
		}
		if vs := f["volume"]; len(vs) > 0 && !anyOf(vs, func(v string) bool {
			for _, m := range c.mounts() {
				if m.Source == v || m.Destination == v || m.Name == v {
					return true
				}
			}
			return false
		}) {
			return false
		}
		if len(f["publish"]) > 0 {
			return false // nothing is published yet
		}
		if ex := f["expose"]; len(ex) > 0 && !anyOf(ex, func(e string) bool {
			for p := range c.cfg.ExposedPorts {
				if p.String() == e || strconv.Itoa(int(p.Num())) == e {
					return true
				}
			}
			return false
		}) {
			return false
		}
		if !before.IsZero() && !c.pod.CreatedAt.Before(before) {
			return false
		}
		if !since.IsZero() && !c.pod.CreatedAt.After(since) {
			return false
		}
		return true
	}, nil
}

func anyOf[T any](xs []T, fn func(T) bool) bool {
	for _, x := range xs {
		if fn(x) {
			return true
		}
	}
	return false
}

// configuredStop is the container's own stop timeout and signal, which a
// start restores after a `stop -t` or `stop -s` changed them for one stop.
func (c *ctr) configuredStop() (*int, int) {
	sig := 0
	if c.cfg.StopSignal != "" {
		if s, err := parseSignal(c.cfg.StopSignal); err == nil {
			sig = int(s)
		}
	}
	return c.cfg.StopTimeout, sig
}

// startContainer is POST /containers/{id}/start.
func (s *Server) startContainer(w http.ResponseWriter, r *http.Request, tenant string) {
	if err := s.start(r.Context(), tenant, r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// startTimeout bounds a start: scheduling, the image on its node, the VM.
const startTimeout = 5 * time.Minute

// start starts a container and returns once its process runs (or could
// not): the pod's VM boots held, attached clients join, then the
// container starts, so that a command that cannot run fails the start as
// with Docker.
func (s *Server) start(ctx context.Context, tenant, ref string) error {
	c, err := s.resolve(ctx, tenant, ref)
	if err != nil {
		return err
	}
	if c.state() == stateRunning || c.state() == statePaused {
		return errNotModified
	}
	timeout, sig := c.configuredStop()
	var updated *model.Pod
	err = s.withStartAdmitted(ctx, c.pod, func() (err error) {
		updated, err = s.markStarted(ctx, tenant, c.ID(), timeout, sig)
		return err
	})
	if err != nil {
		if c.host.AutoRemove && !errors.Is(err, errNotModified) {
			// As Docker's, a --rm container that cannot start goes:
			// the attached CLI waits for its removal.
			if rerr := s.remove(context.WithoutCancel(ctx), tenant, c, true); rerr == nil {
				volume.RemoveAnonymous(context.WithoutCancel(ctx), s.Store, c.pod)
			}
		}
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	p, err := s.waitStarted(wctx, tenant, c.ID(), updated.Revision)
	if err != nil {
		return err
	}
	key := tenant + "/" + c.ID()
	s.gate.wait(wctx, key, 10*time.Second)
	if err := s.Pods.Client(ctx, tenant, p.Name).StartPod(); err != nil {
		var ce *spec.CallError
		if errors.As(err, &ce) && (ce.Kind == spec.ErrNotFound || ce.Kind == spec.ErrNotExecutable) {
			return errdefs.InvalidArgument("failed to create task for container: %s: unknown", strings.TrimPrefix(ce.Message, "start container main: "))
		}
		return fmt.Errorf("start container %s: %w", c.ID()[:12], err)
	}
	return nil
}

// markStarted sets a container's pod to run, held for the start that
// follows.
func (s *Server) markStarted(ctx context.Context, tenant, id string, timeout *int, sig int) (*model.Pod, error) {
	return store.Modify[model.Pod](ctx, s.Store, model.KindPod, tenant, id, func(p *model.Pod) (bool, error) {
		if p.Status.Phase == model.PhaseRunning && p.Spec.Desired == model.DesiredRunning {
			return false, errNotModified
		}
		p.Spec.Desired = model.DesiredRunning
		p.Spec.HoldStart = true
		p.Spec.ExitOnNext = false
		p.Spec.StopTimeout = timeout
		p.Spec.Containers[0].StopSignal = sig
		if model.Terminal(p.Status.Phase) && p.Status.Phase != model.PhaseLost {
			// A start is a new run: it counts no restarts.
			p.Status.RestartCount = 0
		}
		return true, nil
	})
}

// withStartAdmitted runs fn, which starts p, once p may start: no other
// running pod holds p's disk volumes in a way that excludes p, and the
// tenant's quota has room for it. Both are checked under the tenant's
// lock, so that two starts cannot both pass.
func (s *Server) withStartAdmitted(ctx context.Context, p *model.Pod, fn func() error) error {
	disks := false
	for _, v := range p.Spec.Volumes {
		disks = disks || (v.Type == "volume" && !v.Shared)
	}
	quota, limited, err := tenancy.Limited(ctx, s.Store, p.Tenant)
	if err != nil {
		return err
	}
	if !disks && !limited {
		return fn()
	}
	return s.Store.Locked(ctx, store.TenantLock(p.Tenant), func() error {
		pods, _, err := store.List[model.Pod](ctx, s.Store, model.KindPod, p.Tenant)
		if err != nil {
			return err
		}
		if err := volume.Conflict(p, pods); err != nil {
			return err
		}
		if limited {
			// The pod as it is now, under the lock: an update may
			// have resized it since it was read.
			i := slices.IndexFunc(pods, func(q *model.Pod) bool { return q.Name == p.Name })
			if i < 0 {
				return errdefs.NotFound("No such container: %s", p.Name)
			}
			if now := pods[i]; now.Spec.Desired != model.DesiredRunning {
				if err := tenancy.Admit(ctx, s.Store, quota, tenancy.PodUsage(now, true), p.Name); err != nil {
					return err
				}
			}
		}
		return fn()
	})
}

// waitStarted follows a pod after the start written at rev until it runs,
// or fails to.
func (s *Server) waitStarted(ctx context.Context, tenant, id string, rev int64) (*model.Pod, error) {
	p, err := store.WaitFor[model.Pod](ctx, s.Store, model.KindPod, tenant, id, func(p *model.Pod) bool {
		if p == nil {
			return true
		}
		if p.Revision <= rev {
			return false
		}
		switch {
		case p.Status.Phase == model.PhaseRunning && p.Status.CradleID != "":
			return true
		case p.Status.Phase == model.PhasePending && p.Status.Reason != "":
			return true // the scheduler found no place
		case model.Terminal(p.Status.Phase):
			return true
		}
		return false
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, errdefs.Unavailable("container %s did not start within %s", id[:12], startTimeout)
		}
		return nil, err
	}
	if p == nil {
		return nil, errdefs.NotFound("No such container: %s", id)
	}
	switch {
	case p.Status.Phase == model.PhaseRunning:
		return p, nil
	case p.Status.Phase == model.PhasePending:
		// As with Docker, a start that failed leaves the container
		// stopped: it must not start by itself once room frees up.
		store.Modify[model.Pod](ctx, s.Store, model.KindPod, tenant, id, func(q *model.Pod) (bool, error) {
			if q.Spec.NodeName != "" || q.Spec.Desired != model.DesiredRunning {
				return false, store.ErrSkip
			}
			q.Spec.Desired = model.DesiredStopped
			return true, nil
		})
		return nil, errdefs.Unavailable("cannot start container %s: %s", id[:12], p.Status.Message)
	}
	msg := p.Status.Message
	if msg == "" && len(p.Status.Containers) > 0 {
		msg = p.Status.Containers[0].Error
	}
	return nil, fmt.Errorf("cannot start container %s: %s", id[:12], msg)
}

// stopContainer is POST /containers/{id}/stop.
func (s *Server) stopContainer(w http.ResponseWriter, r *http.Request, tenant string) {
	c, err := s.resolve(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.stop(r, tenant, c); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// stop stops a container with the request's timeout (t) and signal, and
// returns once it has stopped.
func (s *Server) stop(r *http.Request, tenant string, c *ctr) error {
	ctx := r.Context()
	timeout, sig := c.configuredStop()
	if v := r.URL.Query().Get("t"); v != "" {
		t, err := strconv.Atoi(v)
		if err != nil {
			return errdefs.InvalidArgument("invalid value for t: %s", v)
		}
		timeout = &t
	}
	if v := r.URL.Query().Get("signal"); v != "" {
		s, err := parseSignal(v)
		if err != nil {
			return err
		}
		sig = int(s)
	}
	if !c.running() && c.pod.Spec.Desired == model.DesiredStopped {
		return errNotModified
	}
	_, err := store.Modify[model.Pod](ctx, s.Store, model.KindPod, tenant, c.ID(), func(p *model.Pod) (bool, error) {
		p.Spec.Desired = model.DesiredStopped
		p.Spec.StopTimeout = timeout
		p.Spec.Containers[0].StopSignal = sig
		return true, nil
	})
	if err != nil {
		return err
	}
	if !c.running() {
		return nil
	}
	stopSig := syscall.SIGTERM
	if sig != 0 {
		stopSig = syscall.Signal(sig)
	}
	// The signal goes out now; its die follows.
	s.emit(tenant, "container", "kill", c.ID(), map[string]string{"name": c.pod.Alias, "signal": strconv.Itoa(int(stopSig))})
	grace := model.DefaultStopTimeout
	if timeout != nil {
		grace = time.Duration(*timeout) * time.Second
	}
	if grace < 0 {
		grace = 24 * time.Hour
	}
	wctx, cancel := context.WithTimeout(ctx, grace+30*time.Second)
	defer cancel()
	stopped, err := store.WaitFor[model.Pod](wctx, s.Store, model.KindPod, tenant, c.ID(), func(p *model.Pod) bool {
		return p == nil || model.Terminal(p.Status.Phase) || p.Status.Phase == model.PhasePending
	})
	if err != nil {
		return fmt.Errorf("stop container %s: %w", c.ID()[:12], err)
	}
	if stopped != nil && s.events != nil {
		s.events.waitSeen(ctx, stopped.Revision, 2*time.Second)
	}
	s.emit(tenant, "container", "stop", c.ID(), map[string]string{"name": c.pod.Alias})
	return nil
}

// restartContainer is POST /containers/{id}/restart.
func (s *Server) restartContainer(w http.ResponseWriter, r *http.Request, tenant string) {
	c, err := s.resolve(r.Context(), tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.stop(r, tenant, c); err != nil && !errors.Is(err, errNotModified) {
		writeError(w, err)
		return
	}
	if err := s.start(r.Context(), tenant, c.ID()); err != nil && !errors.Is(err, errNotModified) {
		writeError(w, err)
		return
	}
	s.emit(tenant, "container", "restart", c.ID(), map[string]string{"name": c.pod.Alias})
	w.WriteHeader(http.StatusNoContent)
}

// killContainer is POST /containers/{id}/kill.
func (s *Server) killContainer(w http.ResponseWriter, r *http.Request, tenant string) {
	ctx := r.Context()
	ref := r.PathValue("id")
	c, err := s.resolve(ctx, tenant, ref)
	if err != nil {
		writeError(w, err)
		return
	}
	sig := syscall.SIGKILL
	if v := r.URL.Query().Get("signal"); v != "" {
		if sig, err = parseSignal(v); err != nil {
			writeError(w, err)
			return
		}
	}
	if c.pod.Status.Phase != model.PhaseRunning {
		writeError(w, errdefs.Conflict("cannot kill container: %s: container %s is not running", ref, c.ID()))
		return
	}
	// SIGKILL, or the stop signal, ends the container for good, as
	// Docker's kill does: no restart follows the exit. That is written
	// before the signal goes, so that the exit finds it.
	_, stopSig := c.configuredStop()
	if sig == syscall.SIGKILL || int(sig) == stopSig || (stopSig == 0 && sig == syscall.SIGTERM) {
		_, err = store.Modify[model.Pod](ctx, s.Store, model.KindPod, tenant, c.ID(), func(p *model.Pod) (bool, error) {
			if p.Spec.ExitOnNext {
				return false, store.ErrSkip
			}
			p.Spec.ExitOnNext = true
			return true, nil
		})
		if err != nil {
			writeError(w, err)
			return
		}
	}
	if err := s.Pods.Client(ctx, tenant, c.ID()).Signal(mainContainer, sig); err != nil {
		writeError(w, fmt.Errorf("cannot kill container: %s: %w", ref, err))
		return
	}
	s.emit(tenant, "container", "kill", c.ID(), map[string]string{"name": c.pod.Alias, "signal": strconv.Itoa(int(sig))})
	w.WriteHeader(http.StatusNoContent)
}

// removeContainer is DELETE /containers/{id}.
func (s *Server) removeContainer(w http.ResponseWriter, r *http.Request, tenant string) {
	ctx := r.Context()
	if boolParam(r, "link") {
		writeError(w, errdefs.InvalidArgument("links are not supported"))
		return
	}
	c, err := s.resolve(ctx, tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if err := s.remove(ctx, tenant, c, boolParam(r, "force")); err != nil {
		writeError(w, err)
		return
	}
	if boolParam(r, "v") {
		removed, err := volume.RemoveAnonymous(ctx, s.Store, c.pod)
		for _, name := range removed {
			s.emit(tenant, events.VolumeEventType, events.ActionDestroy, name, map[string]string{"driver": "local"})
		}
		if err != nil {
			writeError(w, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) remove(ctx context.Context, tenant string, c *ctr, force bool) error {
	if c.running() {
		if !force {
			return errdefs.Conflict("cannot remove container %q: container is running: stop the container before removing or force remove", c.Name())
		}
		zero := 0
		if _, err := store.Modify[model.Pod](ctx, s.Store, model.KindPod, tenant, c.ID(), func(p *model.Pod) (bool, error) {
			p.Spec.Desired = model.DesiredStopped
			p.Spec.StopTimeout = &zero
			return true, nil
		}); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		store.WaitFor[model.Pod](wctx, s.Store, model.KindPod, tenant, c.ID(), func(p *model.Pod) bool {
			return p == nil || model.Terminal(p.Status.Phase) || p.Status.Phase == model.PhasePending
		})
		cancel()
	}
	if err := s.Store.Delete(ctx, model.KindPod, tenant, c.ID(), 0); err != nil {
		if errdefs.IsNotFound(err) {
			return errdefs.NotFound("No such container: %s", c.ID())
		}
		return err
	}
	return nil
}

// waitContainer is POST /containers/{id}/wait.
func (s *Server) waitContainer(w http.ResponseWriter, r *http.Request, tenant string) {
	ctx := r.Context()
	cond := container.WaitCondition(r.URL.Query().Get("condition"))
	switch cond {
	case "":
		cond = container.WaitConditionNotRunning
	case container.WaitConditionNotRunning, container.WaitConditionNextExit, container.WaitConditionRemoved:
	default:
		writeError(w, errdefs.InvalidArgument("invalid condition: %q", cond))
		return
	}
	c, err := s.resolve(ctx, tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	// The answer's head goes now, as Docker's does: a client waits for
	// it before it starts the container.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flush(w)
	last := c.pod
	f0 := c.pod.Status.FinishedAt
	sawRun := !model.Terminal(c.pod.Status.Phase)
	done := func(p *model.Pod) bool {
		if p == nil {
			return true
		}
		last = p
		cc, _ := asContainer(p)
		switch cond {
		case container.WaitConditionNotRunning:
			return cc == nil || !cc.running()
		case container.WaitConditionNextExit:
			if !model.Terminal(p.Status.Phase) {
				sawRun = true
				return false
			}
			return sawRun || !p.Status.FinishedAt.Equal(f0)
		}
		return false
	}
	resp := container.WaitResponse{}
	if cond == container.WaitConditionNotRunning && !c.running() {
		resp.StatusCode = int64(c.pod.Status.ExitCode)
	} else {
		_, err := store.WaitFor[model.Pod](ctx, s.Store, model.KindPod, tenant, c.ID(), done)
		if err != nil {
			resp.Error = &container.WaitExitError{Message: err.Error()}
		}
		resp.StatusCode = int64(last.Status.ExitCode)
	}
	json.NewEncoder(w).Encode(resp)
}

// renameContainer is POST /containers/{id}/rename.
func (s *Server) renameContainer(w http.ResponseWriter, r *http.Request, tenant string) {
	ctx := r.Context()
	name := strings.TrimPrefix(r.URL.Query().Get("name"), "/")
	if name == "" {
		writeError(w, errdefs.InvalidArgument("Neither old nor new names may be empty"))
		return
	}
	if err := validName(name); err != nil {
		writeError(w, err)
		return
	}
	c, err := s.resolve(ctx, tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if c.pod.Alias == name {
		writeError(w, errdefs.InvalidArgument("Renaming a container with the same name as its current name"))
		return
	}
	err = s.Store.Rename(ctx, model.KindPod, tenant, c.ID(), name)
	var inUse *store.AliasInUseError
	if errors.As(err, &inUse) {
		err = errdefs.Conflict("Error when allocating new name: Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", name, inUse.Holder)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	s.emit(tenant, "container", "rename", c.ID(), map[string]string{"name": name, "oldName": c.Name()})
	w.WriteHeader(http.StatusNoContent)
}

// updateContainer is POST /containers/{id}/update: the restart policy,
// and the VM's size, which takes effect at the next start.
func (s *Server) updateContainer(w http.ResponseWriter, r *http.Request, tenant string) {
	ctx := r.Context()
	var u container.UpdateConfig
	if err := readJSON(r, &u); err != nil {
		writeError(w, err)
		return
	}
	c, err := s.resolve(ctx, tenant, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	res := u.Resources
	probe := container.HostConfig{Resources: res}
	probe.Resources.NanoCPUs, probe.Resources.Memory, probe.Resources.MemorySwap = 0, 0, 0
	if err := unsupported(&container.CreateRequest{Config: &container.Config{}, HostConfig: &probe}); err != nil {
		writeError(w, err)
		return
	}
	warnings := []string{}
	var restart *model.Restart
	if u.RestartPolicy.Name != "" {
		rp, err := restartPolicy(u.RestartPolicy)
		if err != nil {
			writeError(w, err)
			return
		}
		if c.host.AutoRemove && rp.Policy != model.RestartNo {
			writeError(w, errdefs.InvalidArgument("Restart policy cannot be updated because AutoRemove is enabled for the container"))
			return
		}
		restart = &rp
	}
	var size model.Resources
	if err := resources(res, &size); err != nil {
		writeError(w, err)
		return
	}
	if (size.CPUs != 0 || size.MemoryMiB != 0) && c.running() {
		warnings = append(warnings, "the new CPU and memory limits take effect when the container next starts: a running VM keeps its size")
	}
	apply := func() error {
		_, err := store.Modify[model.Pod](ctx, s.Store, model.KindPod, tenant, c.ID(), func(p *model.Pod) (bool, error) {
			hc := &container.HostConfig{}
			json.Unmarshal([]byte(p.Annotations[annHost]), hc)
			if restart != nil {
				p.Spec.Restart = *restart
				hc.RestartPolicy = u.RestartPolicy
			}
			if size.CPUs != 0 {
				p.Spec.Resources.CPUs = size.CPUs
				hc.NanoCPUs = res.NanoCPUs
			}
			if size.MemoryMiB != 0 {
				p.Spec.Resources.MemoryMiB = size.MemoryMiB
				hc.Memory = res.Memory
			}
			b, err := json.Marshal(hc)
			if err != nil {
				return false, err
			}
			p.Annotations[annHost] = string(b)
			// Not a change the running VM must follow: no new generation.
			return false, nil
		})
		return err
	}
	// A container meant to run holds its quota at its new size. Under
	// the lock, so that a start cannot admit the old size meanwhile.
	quota, limited, err := tenancy.Limited(ctx, s.Store, tenant)
	if err == nil && limited && (size.CPUs != 0 || size.MemoryMiB != 0) {
		err = s.Store.Locked(ctx, store.TenantLock(tenant), func() error {
			now, err := store.Get[model.Pod](ctx, s.Store, model.KindPod, tenant, c.ID())
			if err != nil {
				return err
			}
			if now.Spec.Desired == model.DesiredRunning {
				grown := *now
				if size.CPUs != 0 {
					grown.Spec.Resources.CPUs = size.CPUs
				}
				if size.MemoryMiB != 0 {
					grown.Spec.Resources.MemoryMiB = size.MemoryMiB
				}
				if err := tenancy.Admit(ctx, s.Store, quota, tenancy.PodUsage(&grown, true), grown.Name); err != nil {
					return err
				}
			}
			return apply()
		})
	} else if err == nil {
		err = apply()
	}
	if err != nil {
		writeError(w, err)
		return
	}
	s.emit(tenant, "container", "update", c.ID(), map[string]string{"name": c.pod.Alias})
	writeJSON(w, http.StatusOK, container.UpdateResponse{Warnings: warnings})
}

// pruneContainers is POST /containers/prune.
func (s *Server) pruneContainers(w http.ResponseWriter, r *http.Request, tenant string) {
	ctx := r.Context()
	f, err := parseFilters(r, "label", "label!", "until")
	if err != nil {
		writeError(w, err)
		return
	}
	until, err := f.until(time.Now())
	if err != nil {
		writeError(w, err)
		return
	}
	cs, err := s.containers(ctx, tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	report := container.PruneReport{ContainersDeleted: []string{}}
	for _, c := range cs {
		if c.running() || !f.matchLabels(c.pod.Labels) || (!until.IsZero() && !c.pod.CreatedAt.Before(until)) {
			continue
		}
		if err := s.Store.Delete(ctx, model.KindPod, tenant, c.ID(), c.pod.Revision); err != nil {
			if errdefs.IsNotFound(err) || errdefs.IsConflict(err) {
				continue
			}
			writeError(w, err)
			return
		}
		report.ContainersDeleted = append(report.ContainersDeleted, c.ID())
	}
	s.emit(tenant, "container", "prune", "", map[string]string{"reclaimed": "0"})
	writeJSON(w, http.StatusOK, report)
}
