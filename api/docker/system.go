package docker

import (
	"net/http"
	"runtime"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/api/types/volume"
	"golang.org/x/sys/unix"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/version"
)

func (s *Server) systemRoutes(handle handleFunc) {
	ping := func(w http.ResponseWriter, r *http.Request, _ string) {
		h := w.Header()
		h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
		h.Set("Pragma", "no-cache")
		h.Set("Swarm", "inactive")
		h.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			w.Write([]byte("OK"))
		}
	}
	handle("GET /_ping", ping)
	handle("HEAD /_ping", ping)
	handle("GET /version", s.version)
	handle("GET /info", s.info)
	handle("GET /system/df", s.diskUsage)
	handle("GET /events", s.getEvents)
	handle("POST /build", func(w http.ResponseWriter, r *http.Request, _ string) {
		writeError(w, errdefs.InvalidArgument("image builds are not supported yet: build the image elsewhere and bring it to Hearth with `docker push` to a registry (then `docker pull`), or with `docker save IMAGE | docker load`"))
	})
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func (s *Server) version(w http.ResponseWriter, r *http.Request, _ string) {
	kernel := kernelRelease()
	writeJSON(w, http.StatusOK, system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "Hearth"},
		Version:       version.Version,
		APIVersion:    APIVersion,
		MinAPIVersion: MinAPIVersion,
		Os:            "linux",
		Arch:          runtime.GOARCH,
		KernelVersion: kernel,
		GoVersion:     runtime.Version(),
		Components: []system.ComponentVersion{{Name: "Engine", Version: version.Version, Details: map[string]string{
			"ApiVersion": APIVersion, "MinAPIVersion": MinAPIVersion, "Os": "linux", "Arch": runtime.GOARCH,
			"KernelVersion": kernel, "GoVersion": runtime.Version(),
		}}},
	})
}

func (s *Server) info(w http.ResponseWriter, r *http.Request, tenant string) {
	cs, err := s.containers(r.Context(), tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	imgs, err := s.Images.List(tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	info := system.Info{
		ID:                 s.Node,
		Containers:         len(cs),
		Images:             len(imgs),
		Driver:             "hearth",
		DriverStatus:       [][2]string{{"Isolation", "one microVM per container"}},
		MemoryLimit:        true,
		IPv4Forwarding:     true,
		NGoroutines:        runtime.NumGoroutine(),
		SystemTime:         time.Now().Format(time.RFC3339Nano),
		LoggingDriver:      "json-file",
		CgroupDriver:       "none",
		KernelVersion:      kernelRelease(),
		OperatingSystem:    "Hearth",
		OSType:             "linux",
		Architecture:       "x86_64",
		NCPU:               s.NCPU,
		MemTotal:           s.MemTotal,
		Name:               s.Node,
		ServerVersion:      version.Version,
		DefaultRuntime:     "hearth",
		Runtimes:           map[string]system.RuntimeWithStatus{"hearth": {Runtime: system.Runtime{Path: "hearth cradle"}}},
		Isolation:          container.IsolationDefault,
		IndexServerAddress: "https://index.docker.io/v1/",
		Labels:             []string{},
		SecurityOptions:    []string{"name=microvm"},
		CDISpecDirs:        []string{},
		Warnings:           []string{},
		DockerRootDir:      s.DataDir,
		Swarm:              swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive},
		Plugins:            system.PluginsInfo{Volume: []string{}, Network: []string{}, Authorization: []string{}, Log: []string{"json-file"}},
	}
	for _, c := range cs {
		switch c.state() {
		case stateRunning, stateRestarting:
			info.ContainersRunning++
		case statePaused:
			info.ContainersPaused++
		default:
			info.ContainersStopped++
		}
	}
	writeJSON(w, http.StatusOK, info)
}

// legacyDiskUsage is /system/df as API versions before 1.52 answer it,
// which are all that is served (moby's types have the newer shape only).
type legacyDiskUsage struct {
	LayersSize int64
	Images     []image.Summary
	Containers []container.Summary
	Volumes    []volume.Volume
	BuildCache []build.CacheRecord
}

func (s *Server) diskUsage(w http.ResponseWriter, r *http.Request, tenant string) {
	imgs, size, err := s.imageSummaries(r.Context(), tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	cs, err := s.containers(r.Context(), tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	now := time.Now()
	ctrs := []container.Summary{}
	for _, c := range cs {
		ctrs = append(ctrs, c.summary(now))
	}
	vols, err := s.volumeUsage(r.Context(), tenant)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, legacyDiskUsage{LayersSize: size, Images: imgs, Containers: ctrs,
		Volumes: vols, BuildCache: []build.CacheRecord{}})
}
