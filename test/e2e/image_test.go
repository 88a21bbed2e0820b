//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/hearth-cloud/hearth/internal/testimage"
)

// pushArchive puts a docker-archive into a registry with go-containerregistry,
// as a third party would, and returns the reference.
func pushArchive(t *testing.T, archive, ref string) string {
	t.Helper()
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

// blobsTrustworthy checks every blob in a store hashes to its name.
func blobsTrustworthy(t *testing.T, data string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(data, "images", "blobs", "sha256", "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != filepath.Base(f) {
			t.Errorf("blob %s does not match its digest", filepath.Base(f))
		}
	}
	return len(files)
}

func TestImageLifecycle(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, noAuth)
	e := newImageEnv(t)
	ref := reg.Host + "/team/layered:v1"

	// load, tag, push.
	out := e.must(t, "image", "load", "-i", img.layered)
	if !strings.Contains(out, "Loaded image: hearth.test/layered:latest") {
		t.Fatalf("load: %q", out)
	}
	e.must(t, "image", "tag", "hearth.test/layered", ref)
	out = e.must(t, "image", "push", ref)
	if !strings.Contains(out, "v1: digest: sha256:") {
		t.Fatalf("push: %q", out)
	}
	// Remove everything, then pull it back.
	e.must(t, "image", "rm", "hearth.test/layered", ref)
	if got := e.must(t, "image", "ls", "-q"); got != "" {
		t.Fatalf("images left after rm: %q", got)
	}
	out = e.must(t, "image", "pull", ref)
	for _, want := range []string{"v1: Pulling from team/layered", "Pull complete", "Digest: sha256:", "Status: Downloaded newer image for " + ref, ref} {
		if !strings.Contains(out, want) {
			t.Fatalf("pull output lacks %q:\n%s", want, out)
		}
	}
	out = e.must(t, "image", "pull", ref)
	if !strings.Contains(out, "Already exists") || !strings.Contains(out, "Status: Image is up to date") {
		t.Fatalf("second pull:\n%s", out)
	}
	ls := e.must(t, "image", "ls")
	if !strings.Contains(ls, reg.Host+"/team/layered") || !strings.Contains(ls, "v1") {
		t.Fatalf("ls:\n%s", ls)
	}
	var infos []struct {
		ID          string `json:"Id"`
		RepoTags    []string
		RepoDigests []string
		Os          string
		RootFS      struct{ Layers []string }
	}
	if err := json.Unmarshal([]byte(e.must(t, "image", "inspect", ref)), &infos); err != nil || len(infos) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	if infos[0].RepoTags[0] != ref || len(infos[0].RepoDigests) != 1 || infos[0].Os != "linux" || len(infos[0].RootFS.Layers) != 3 {
		t.Fatalf("inspect: %+v", infos[0])
	}

	// Run by reference; whiteouts and opaque directories, seen in the VM.
	r := e.hearth(t, "cradle", "run", ref, "sh", "-c", "ls /data; ls /gone 2>&1; cat /keep")
	if r.code != 0 || r.stdout != "new\nls: /gone: No such file or directory\nkeep\n" {
		t.Fatalf("run by reference: %s", r)
	}
	// Run by ID prefix too.
	id := strings.TrimPrefix(infos[0].ID, "sha256:")[:12]
	if r := e.hearth(t, "cradle", "run", id, "true"); r.code != 0 {
		t.Fatalf("run by ID: %s", r)
	}

	// save, then load what was saved into an empty store, and run it.
	saved := filepath.Join(t.TempDir(), "saved.tar")
	e.must(t, "image", "save", "-o", saved, ref)
	// skopeo, an independent reader, accepts the archive.
	if out, err := exec.Command("skopeo", "inspect", "docker-archive:"+saved).CombinedOutput(); err != nil {
		t.Fatalf("skopeo inspect of the saved archive: %v\n%s", err, out)
	}
	e2 := newImageEnv(t)
	out = e2.must(t, "image", "load", "-i", saved)
	if !strings.Contains(out, "Loaded image: "+ref) {
		t.Fatalf("load of saved: %q", out)
	}
	if r := e2.hearth(t, "cradle", "run", ref, "cat", "/keep"); r.stdout != "keep\n" {
		t.Fatalf("run of reloaded: %s", r)
	}
	// The same content, loaded, is the same image.
	var infos2 []struct {
		ID string `json:"Id"`
	}
	json.Unmarshal([]byte(e2.must(t, "image", "inspect", ref)), &infos2)
	if len(infos2) != 1 || infos2[0].ID != infos[0].ID {
		t.Fatalf("image ID changed across save/load: %v vs %s", infos2, infos[0].ID)
	}

	// An OCI archive (made by skopeo) loads too.
	ociTar := filepath.Join(t.TempDir(), "oci.tar")
	if out, err := exec.Command("skopeo", "copy", "-q", "docker-archive:"+saved, "oci-archive:"+ociTar+":hearth.test/fromoci:2").CombinedOutput(); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	if out := e2.must(t, "image", "load", "-i", ociTar); !strings.Contains(out, "Loaded image: hearth.test/fromoci:2") {
		t.Fatalf("load OCI archive: %q", out)
	}

	// rm of an image a pod uses is refused, unless forced.
	pod := strings.TrimSpace(e.must(t, "cradle", "run", "-d", ref, "sleep", "600"))
	r = e.hearth(t, "image", "rm", ref)
	if r.code == 0 || !strings.Contains(r.stderr, "must force") || !strings.Contains(r.stderr, pod[:12]) {
		t.Fatalf("rm of an image in use: %s", r)
	}
	e.must(t, "cradle", "rm", "-f", pod)
	out = e.must(t, "image", "rm", ref)
	if !strings.Contains(out, "Untagged: "+ref) || !strings.Contains(out, "Deleted: "+infos[0].ID) {
		t.Fatalf("rm: %q", out)
	}
	// prune: prepared layers no image uses go, and so do stray blobs.
	layers, _ := filepath.Glob(filepath.Join(e.data, "images", "layers", "sha256", "*.erofs"))
	if len(layers) == 0 {
		t.Fatal("no prepared layers before prune")
	}
	out = e.must(t, "image", "prune", "-f")
	if !strings.Contains(out, "Total reclaimed space") {
		t.Fatalf("prune: %q", out)
	}
	layers, _ = filepath.Glob(filepath.Join(e.data, "images", "layers", "sha256", "*.erofs"))
	blobs, _ := filepath.Glob(filepath.Join(e.data, "images", "blobs", "sha256", "*"))
	if len(layers) != 0 || len(blobs) != 0 {
		t.Fatalf("after prune: %d prepared layers, %d blobs", len(layers), len(blobs))
	}
}

func TestImageMultiArchIndex(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, noAuth)
	e := newImageEnv(t)
	amd, err := tarball.ImageFromPath(img.busybox, nil)
	if err != nil {
		t.Fatal(err)
	}
	arm, err := tarball.ImageFromPath(img.arm64, nil)
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	multi, _ := name.ParseReference(reg.Host + "/multi:latest")
	if err := remote.WriteIndex(multi, idx); err != nil {
		t.Fatal(err)
	}
	armOnly, _ := name.ParseReference(reg.Host + "/armonly:latest")
	if err := remote.WriteIndex(armOnly, mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})); err != nil {
		t.Fatal(err)
	}
	e.must(t, "image", "pull", reg.Host+"/multi")
	if r := e.hearth(t, "cradle", "run", reg.Host+"/multi", "uname", "-m"); r.stdout != "x86_64\n" {
		t.Fatalf("run of the amd64 image from an index: %s", r)
	}
	// The repo digest is the index's, as with docker.
	idxDigest, _ := idx.Digest()
	if out := e.must(t, "image", "ls", "--digests"); !strings.Contains(out, idxDigest.String()) {
		t.Fatalf("ls --digests lacks the index digest %s:\n%s", idxDigest, out)
	}
	// By digest.
	e.must(t, "image", "pull", reg.Host+"/multi@"+idxDigest.String())

	r := e.hearth(t, "image", "pull", reg.Host+"/armonly")
	if r.code == 0 || !strings.Contains(r.stderr, "no matching manifest for linux/amd64") {
		t.Fatalf("arm64-only index: %s", r)
	}
}

func TestImageAuth(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name string
		auth registryAuth
	}{{"basic", basicAuth}, {"token", tokenAuth}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			reg := startRegistry(t, mode.auth)
			e := newImageEnv(t)
			ref := reg.Host + "/private/busybox:1"
			e.must(t, "image", "load", "-i", img.busybox)
			e.must(t, "image", "tag", "hearth.test/busybox", ref)

			r := e.hearth(t, "image", "push", ref)
			if r.code == 0 || !strings.Contains(r.stderr, "login") {
				t.Fatalf("push without login: %s", r)
			}
			r = e.hearth(t, "image", "login", "-u", regUser, "-p", "wrong", reg.Host)
			if r.code == 0 || !strings.Contains(r.stderr, "incorrect username or password") {
				t.Fatalf("login with a wrong password: %s", r)
			}
			r = e.run_(t, cmdOpts{stdin: strings.NewReader(regPass + "\n")}, "image", "login", "-u", regUser, "--password-stdin", reg.Host)
			if r.code != 0 || !strings.Contains(r.stdout, "Login Succeeded") {
				t.Fatalf("login: %s", r)
			}
			e.must(t, "image", "push", ref)
			e.must(t, "image", "rm", ref, "hearth.test/busybox")
			e.must(t, "image", "pull", ref)

			// Logged out, the registry refuses; the image already pulled
			// stays usable.
			e.must(t, "image", "logout", reg.Host)
			r = e.hearth(t, "image", "pull", ref)
			if r.code == 0 || !strings.Contains(r.stderr, "pull access denied") {
				t.Fatalf("pull after logout: %s", r)
			}
			// The user's docker config.json is a source of credentials too.
			dockerDir := strings.TrimPrefix(e.env[0], "DOCKER_CONFIG=")
			os.MkdirAll(dockerDir, 0o700)
			auth := base64.StdEncoding.EncodeToString([]byte(regUser + ":" + regPass))
			os.WriteFile(filepath.Join(dockerDir, "config.json"), []byte(`{"auths":{"`+reg.Host+`":{"auth":"`+auth+`"}}}`), 0o600)
			e.must(t, "image", "pull", ref)
		})
	}
}

func TestImageConcurrentPulls(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, noAuth)
	e := newImageEnv(t)
	ref := pushArchive(t, img.hog, reg.Host+"/hog:1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for i := 0; i < 2; i++ {
		c := exec.CommandContext(ctx, hearthB, "--data-dir", e.data, "--run-dir", e.run, "image", "pull", ref)
		var b bytes.Buffer
		c.Stdout, c.Stderr = &b, &b
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, c), append(outs, &b)
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("pull %d: %v\n%s", i, err, outs[i])
		}
	}
	// Two layers, a config and a manifest: each stored once.
	if n := blobsTrustworthy(t, e.data); n != 4 {
		t.Fatalf("%d blobs after two pulls of a 2-layer image", n)
	}
}

func TestImageKillDuringPull(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, noAuth)
	e := newImageEnv(t)
	// 64 MiB of noise does not compress: the pull takes long enough to kill.
	noise := make([]byte, 64<<20)
	rand.Read(noise)
	big, _ := testimage.Layer([]testimage.File{{Path: "/noise", Data: noise}})
	im, err := testimage.Busybox(big)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(reg.Host + "/big:1")
	if err := remote.Write(r, im); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hearthB, "--data-dir", e.data, "--run-dir", e.run, "image", "pull", r.String())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(e.data, "images", "tmp")
	eventually(t, time.Minute, "a blob half written", func() bool {
		ents, _ := os.ReadDir(tmp)
		for _, en := range ents {
			if fi, err := en.Info(); err == nil && fi.Size() > 1<<20 {
				return true
			}
		}
		return false
	})
	cmd.Process.Kill()
	cmd.Wait()
	blobsTrustworthy(t, e.data)
	if out := e.must(t, "image", "ls", "-q"); out != "" {
		t.Fatalf("a killed pull left an image: %q", out)
	}
	e.must(t, "image", "pull", r.String())
	blobsTrustworthy(t, e.data)
	if r := e.hearth(t, "cradle", "run", r.String(), "sh", "-c", "wc -c < /noise"); strings.TrimSpace(r.stdout) != "67108864" {
		t.Fatalf("run after the interrupted pull: %s", r)
	}
	// What the killed pull left in tmp/ goes with prune.
	e.must(t, "image", "prune", "-f")
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Fatalf("tmp/ after prune: %d entries", len(ents))
	}
}

func TestImagePullProgressOnTerminal(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, noAuth)
	e := newImageEnv(t)
	ref := pushArchive(t, img.hog, reg.Host+"/hog:tty")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hearthB, "--data-dir", e.data, "--run-dir", e.run, "image", "pull", ref)
	ptmx, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(ptmx)
	cmd.Wait()
	s := string(out)
	// A bar per layer, redrawn in place with cursor movements.
	if !strings.Contains(s, "Downloading [") || !strings.Contains(s, "\x1b[") || !strings.Contains(s, "Pull complete") {
		t.Fatalf("terminal output: %q", s)
	}
}

func TestImageBadInput(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, noAuth)
	e := newImageEnv(t)
	ref := pushArchive(t, img.busybox, reg.Host+"/ok:1")
	port := freePort(t) // nothing listens there
	notImage := filepath.Join(t.TempDir(), "plain.tar")
	exec.Command("tar", "-C", repo, "-cf", notImage, "README.md").Run()

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown tag", []string{"image", "pull", reg.Host + "/ok:nope"}, "manifest unknown"},
		{"unknown repository", []string{"image", "pull", reg.Host + "/nosuch:1"}, "not found"},
		{"registry down", []string{"image", "pull", "127.0.0.1:" + strconv.Itoa(port) + "/x:1"}, "unreachable"},
		{"bad reference", []string{"image", "pull", "UPPER/Case::x"}, "invalid reference format"},
		{"corrupt tarball", []string{"image", "load", "-i", img.corrupt}, "invalid"},
		{"not a tarball", []string{"image", "load", "-i", img.garbage}, "invalid archive"},
		{"tarball of a non-image", []string{"image", "load", "-i", notImage}, "neither a docker-archive"},
		{"missing file", []string{"image", "load", "-i", "/nonexistent.tar"}, "no such file"},
		{"rm unknown", []string{"image", "rm", "nosuch:1"}, "No such image: nosuch:1"},
		{"inspect unknown", []string{"image", "inspect", "nosuch"}, "No such image"},
		{"tag unknown", []string{"image", "tag", "nosuch", "x:1"}, "No such image"},
		{"push unknown", []string{"image", "push", reg.Host + "/nosuch:1"}, "does not exist locally"},
		{"save unknown", []string{"image", "save", "-o", filepath.Join(t.TempDir(), "x.tar"), "nosuch"}, "No such image"},
		{"run unknown", []string{"cradle", "run", reg.Host + "/ok:nope", "true"}, "manifest unknown"},
	}
	for _, c := range cases {
		r := e.hearth(t, c.args...)
		if r.code == 0 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%s: want an error with %q, got %s", c.name, c.want, r)
		}
	}

	// A blob the registry serves corrupt is refused, and not kept.
	e.must(t, "image", "pull", ref)
	e.must(t, "image", "rm", ref)
	e.must(t, "image", "prune", "-f")
	blobs, _ := filepath.Glob(filepath.Join(reg.dataDir, "docker/registry/v2/blobs/sha256/*/*/data"))
	var biggest string
	var size int64
	for _, b := range blobs {
		if fi, _ := os.Stat(b); fi.Size() > size {
			biggest, size = b, fi.Size()
		}
	}
	data, _ := os.ReadFile(biggest)
	data[len(data)/2] ^= 0xff
	os.WriteFile(biggest, data, 0o644)
	r := e.hearth(t, "image", "pull", ref)
	if r.code == 0 || !strings.Contains(r.stderr, "mismatch") {
		t.Fatalf("corrupt blob: %s", r)
	}
	blobsTrustworthy(t, e.data)
	if out := e.must(t, "image", "ls", "-q"); out != "" {
		t.Fatalf("a failed pull left an image: %q", out)
	}
	// Not written to a saved archive's name when the save fails.
	target := filepath.Join(t.TempDir(), "never.tar")
	e.hearth(t, "image", "save", "-o", target, "nosuch")
	if _, err := os.Stat(target); err == nil {
		t.Fatal("a failed save left a file")
	}
}

func TestImageFullDisk(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, noAuth)
	e := newImageEnv(t)
	noise := make([]byte, 24<<20)
	rand.Read(noise)
	big, _ := testimage.Layer([]testimage.File{{Path: "/noise", Data: noise}})
	im, _ := testimage.Busybox(big)
	r, _ := name.ParseReference(reg.Host + "/big:1")
	if err := remote.Write(r, im); err != nil {
		t.Fatal(err)
	}
	// A data dir on a 16 MiB filesystem cannot hold the image.
	os.MkdirAll(e.data, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", e.data).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", e.data).Run() })
	res := e.hearth(t, "image", "pull", r.String())
	if res.code == 0 || !strings.Contains(res.stderr, "no space left on device") {
		t.Fatalf("pull onto a full disk: %s", res)
	}
	blobsTrustworthy(t, e.data)
	if ents, _ := os.ReadDir(filepath.Join(e.data, "images", "tmp")); len(ents) != 0 {
		t.Fatalf("a failed write left %d files in tmp/", len(ents))
	}
	// A small image still fits, and the store works.
	small := pushArchive(t, img.busybox, reg.Host+"/small:1")
	e.must(t, "image", "pull", small)
}
