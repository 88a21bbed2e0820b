// Package testimage builds small real images for tests, benchmarks and the
// `make run` demo, since no public registry is reachable from the machines
// Hearth is built on: busybox from Debian's busybox-static, and static Go
// programs.
package testimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// BusyboxPath is where Debian's busybox-static installs the binary.
const BusyboxPath = "/bin/busybox"

// File is one entry of a layer.
type File struct {
	Path     string // absolute, inside the image
	Mode     int64  // permission bits; type comes from the fields below
	Data     []byte
	Dir      bool
	Link     string // symlink target
	Hardlink string // hard link target path
	UID, GID int
	Char     bool // character device (0/0 is an OCI whiteout only when named .wh.*)
}

// Layer builds a layer from files, in the order given.
func Layer(files []File) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range files {
		name := f.Path
		if len(name) > 0 && name[0] == '/' {
			name = name[1:]
		}
		h := &tar.Header{Name: name, Mode: f.Mode, Uid: f.UID, Gid: f.GID, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case f.Dir:
			h.Typeflag = tar.TypeDir
			h.Name += "/"
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Link != "":
			h.Typeflag = tar.TypeSymlink
			h.Linkname = f.Link
			h.Mode = 0o777
		case f.Hardlink != "":
			h.Typeflag = tar.TypeLink
			h.Linkname = f.Hardlink[1:]
		case f.Char:
			h.Typeflag = tar.TypeChar
		default:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.Data))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	})
}

// Image stacks layers under a config.
func Image(cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// BusyboxFiles is a minimal busybox root: the binary, its applets as
// symlinks, and /etc/passwd and /etc/group with a few users.
func BusyboxFiles() ([]File, error) {
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("busybox: %w (apt-get install busybox-static)", err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	applets := bytes.Fields(out)
	sort.Slice(applets, func(i, j int) bool { return bytes.Compare(applets[i], applets[j]) < 0 })
	files := []File{
		{Path: "/bin", Dir: true}, {Path: "/etc", Dir: true}, {Path: "/tmp", Dir: true, Mode: 0o1777},
		{Path: "/root", Dir: true, Mode: 0o700}, {Path: "/home", Dir: true},
		{Path: "/home/alice", Dir: true, UID: 1000, GID: 1000},
		{Path: "/bin/busybox", Mode: 0o755, Data: bb},
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/bin/sh\n" +
			"alice:x:1000:1000:Alice:/home/alice:/bin/sh\n" +
			"bob:x:1001:1001:Bob:/home/bob:/bin/sh\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{Path: "/etc/group", Data: []byte("root:x:0:\nalice:x:1000:\nbob:x:1001:\nstaff:x:50:alice,bob\nnogroup:x:65534:\n")},
	}
	for _, a := range applets {
		if string(a) == "busybox" {
			continue
		}
		files = append(files, File{Path: "/bin/" + string(a), Link: "busybox"})
	}
	return files, nil
}

// BusyboxConfig is the config of the busybox image: sh as the command.
var BusyboxConfig = v1.Config{
	Cmd: []string{"sh"},
	Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
}

// Busybox returns the busybox image, plus extra layers on top.
func Busybox(extra ...v1.Layer) (v1.Image, error) {
	files, err := BusyboxFiles()
	if err != nil {
		return nil, err
	}
	base, err := Layer(files)
	if err != nil {
		return nil, err
	}
	return Image(BusyboxConfig, append([]v1.Layer{base}, extra...)...)
}

// GoBinary builds a static Go program from source (a main package) and
// returns its bytes.
func GoBinary(src string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "hearth-gobin")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module prog\n\ngo 1.22\n"), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", "prog", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w: %s", err, out)
	}
	return os.ReadFile(filepath.Join(dir, "prog"))
}

// WriteDockerArchive saves img as a docker-archive tarball (`docker save`
// format) tagged ref.
func WriteDockerArchive(path, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, tag, img)
}
