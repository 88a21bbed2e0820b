//go:build bench

package bench

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hearth-cloud/hearth/internal/testimage"
	"github.com/hearth-cloud/hearth/internal/testregistry"
)

// bigImage is busybox with four 25 MiB layers of noise (which does not
// compress): about 100 MB on the wire, in five layers.
func bigImage(t *testing.T) v1.Image {
	var layers []v1.Layer
	for i := 0; i < 4; i++ {
		noise := make([]byte, 25<<20)
		rand.Read(noise)
		l, err := testimage.Layer([]testimage.File{{Path: fmt.Sprintf("/noise%d", i), Data: noise}})
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, l)
	}
	img, err := testimage.Busybox(layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func startRegistry(t *testing.T, dir string) *testregistry.Registry {
	reg, err := testregistry.Start(filepath.Join(dir, "registry"), testregistry.NoAuth)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	return reg
}

func TestBenchPull(t *testing.T) {
	e := setup(t)
	reg := startRegistry(t, e.dir)
	ref := reg.Host + "/bench/big:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, bigImage(t)); err != nil {
		t.Fatal(err)
	}
	n := 5
	var hearth, skopeo []time.Duration
	for i := 0; i < n; i++ {
		data := filepath.Join(e.dir, fmt.Sprintf("pull%d", i))
		hearth = append(hearth, timeIt(t, exec.Command(e.hearth, "--data-dir", data, "--run-dir", e.run, "image", "pull", ref)))
		os.RemoveAll(data)
		out := filepath.Join(e.dir, fmt.Sprintf("skopeo%d", i))
		skopeo = append(skopeo, timeIt(t, exec.Command("skopeo", "copy", "-q", "--src-tls-verify=false", "docker://"+ref, "dir:"+out)))
		os.RemoveAll(out)
	}
	fmt.Printf("\nPull of a ~100 MB, 5-layer image from a loopback registry, %d runs each\n\n", n)
	fmt.Println("| what                                 | p50 (ms) | p90 (ms) |")
	fmt.Println("|--------------------------------------|---------:|---------:|")
	fmt.Printf("| hearth image pull                    | %8.0f | %8.0f |\n", ms(pct(hearth, .5)), ms(pct(hearth, .9)))
	fmt.Printf("| skopeo copy docker:// dir:           | %8.0f | %8.0f |\n", ms(pct(skopeo, .5)), ms(pct(skopeo, .9)))
	fmt.Printf("\nratio hearth/skopeo: p50 %.2fx, p90 %.2fx (target 1.2x)\n", ratio(hearth, skopeo, .5), ratio(hearth, skopeo, .9))
}

func TestBenchImageStart(t *testing.T) {
	e := setup(t)
	reg := startRegistry(t, e.dir)
	ref := reg.Host + "/bench/big:1"
	r, _ := name.ParseReference(ref)
	if err := remote.Write(r, bigImage(t)); err != nil {
		t.Fatal(err)
	}
	if out, err := e.hearthCmd("image", "pull", ref).CombinedOutput(); err != nil {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	first := timeIt(t, e.hearthCmd("cradle", "run", ref, "true"))
	n := runs()
	var second, tiny, floor []time.Duration
	for i := 0; i < n; i++ {
		floor = append(floor, timeIt(t, e.floorVM(e.floorInitrd)))
		second = append(second, timeIt(t, e.hearthCmd("cradle", "run", ref, "true")))
		tiny = append(tiny, timeIt(t, e.hearthCmd("cradle", "run", e.image, "true")))
	}
	fmt.Printf("\nStart of a ~100 MB image: first start (prepares its layers) and later ones, %d runs each, accelerator %s\n\n", n, e.accel)
	fmt.Println("| what                                          | p50 (ms) | ratio to floor |")
	fmt.Println("|-----------------------------------------------|---------:|---------------:|")
	fmt.Printf("| first start of the 100 MB image               | %8.0f | %14.2f |\n", ms(first), float64(first)/float64(pct(floor, .5)))
	fmt.Printf("| later starts of the 100 MB image              | %8.0f | %14.2f |\n", ms(pct(second, .5)), ratio(second, floor, .5))
	fmt.Printf("| starts of the tiny busybox image              | %8.0f | %14.2f |\n", ms(pct(tiny, .5)), ratio(tiny, floor, .5))
	fmt.Printf("| floor                                         | %8.0f | %14.2f |\n", ms(pct(floor, .5)), 1.0)
}
