//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-cloud/hearth/internal/testimage"
)

// benchCompose is the end-to-end tests' three-tier app: kv (a volume and
// a healthcheck) gates api, web depends on api.
const benchCompose = `name: shop
services:
  kv:
    image: hearth.bench/app:latest
    command: ["/app", "kv"]
    volumes: [kvdata:/data]
    healthcheck:
      test: ["CMD", "/app", "check", "http://localhost:8080/health"]
      interval: 1s
      timeout: 5s
      retries: 60
      start_interval: 200ms
      start_period: 30s
  api:
    image: hearth.bench/app:latest
    command: ["/app", "api"]
    depends_on:
      kv: {condition: service_healthy}
  web:
    image: hearth.bench/app:latest
    command: ["/app", "web"]
    depends_on: [api]
volumes:
  kvdata:
`

// benchIndependent is three services that depend on nothing: compose
// starts them at once.
const benchIndependent = `name: trio
services:
  a: {image: hearth.bench/app:latest, command: ["/app", "kv"]}
  b: {image: hearth.bench/app:latest, command: ["/app", "kv"]}
  c: {image: hearth.bench/app:latest, command: ["/app", "kv"]}
`

// TestBenchCompose times `docker compose up -d --wait` of the three-tier
// app. The baseline is the sum of one `hearth cradle run` start of the
// same image per service, in the same run.
func TestBenchCompose(t *testing.T) {
	e := setup(t)
	plugin := filepath.Join(e.repo, "bin", "cli-plugins", "docker-compose")
	if _, err := os.Stat(plugin); err != nil {
		t.Fatalf("the compose plugin is missing (make compose): %v", err)
	}
	plugins := filepath.Join(e.dir, "docker-config", "cli-plugins")
	if err := os.MkdirAll(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(plugin, filepath.Join(plugins, "docker-compose")); err != nil {
		t.Fatal(err)
	}
	n := dockerNode(t, e, "co1", 12)
	tar := loadImage(t, e, n, "hearth.bench/app:latest", testimage.App)
	file := filepath.Join(e.dir, "compose.yaml")
	if err := os.WriteFile(file, []byte(benchCompose), 0o644); err != nil {
		t.Fatal(err)
	}
	trio := filepath.Join(e.dir, "trio.yaml")
	if err := os.WriteFile(trio, []byte(benchIndependent), 0o644); err != nil {
		t.Fatal(err)
	}
	compose := func(args ...string) time.Duration {
		return timeIt(t, dockerCmd(e, n, append([]string{"compose", "-f", file}, args...)...))
	}
	composeTrio := func(args ...string) time.Duration {
		return timeIt(t, dockerCmd(e, n, append([]string{"compose", "-f", trio}, args...)...))
	}
	// Warm: the image's layers are prepared once per node.
	compose("up", "-d", "--wait")
	compose("down", "-v")
	e.hearthOut(t, "cradle", "run", tar, "true")

	const runs = 5
	var up, indep, sum []time.Duration
	for i := 0; i < runs; i++ {
		up = append(up, compose("up", "-d", "--wait"))
		compose("down", "-v")
		indep = append(indep, composeTrio("up", "-d", "--wait"))
		composeTrio("down", "-v")
		var s time.Duration
		for range 3 { // one start per service
			s += timeIt(t, e.hearthCmd("cradle", "run", tar, "true"))
		}
		sum = append(sum, s)
	}
	fmt.Printf("\nCompose: `docker compose up -d --wait` of a three-tier app (kv healthy before api; web after api), %d runs, accelerator %s\n\n", runs, e.accel)
	fmt.Println("| what                                              | p50 (ms) | p90 (ms) |")
	fmt.Println("|---------------------------------------------------|---------:|---------:|")
	for _, row := range []struct {
		name string
		d    []time.Duration
	}{{"docker compose up -d --wait, the chain", up}, {"docker compose up -d --wait, 3 independent", indep}, {"sum of 3 `hearth cradle run IMG true`", sum}} {
		fmt.Printf("| %-49s | %8.0f | %8.0f |\n", row.name, ms(pct(row.d, .5)), ms(pct(row.d, .9)))
	}
	fmt.Printf("\nratio compose/sum: the chain p50 %.2fx, p90 %.2fx; independent services p50 %.2fx, p90 %.2fx (target below 1)\n",
		ratio(up, sum, .5), ratio(up, sum, .9), ratio(indep, sum, .5), ratio(indep, sum, .9))
}
