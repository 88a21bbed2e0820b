// Package testetcd runs an embedded etcd member for one test, for the
// packages whose tests need a real store.
package testetcd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-cloud/hearth/macro/cluster"
)

// FreePort is a TCP port on 127.0.0.1 that nothing listened on a moment
// ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Etcd is an embedded etcd member for one test.
type Etcd struct {
	*cluster.Etcd
	URL string
	// Stop closes the member (and its client) before the test ends.
	Stop func()
}

// Start runs an embedded etcd member in a temporary directory; it is
// closed when the test ends.
func Start(t testing.TB) *Etcd {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		clientURL := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
		e, err := cluster.StartEtcd(ctx, cluster.EtcdConfig{
			Name:      "test",
			DataDir:   t.TempDir(),
			ClientURL: clientURL,
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
			Log:       slog.New(slog.DiscardHandler),
		})
		if err == nil {
			te := &Etcd{Etcd: e, URL: clientURL, Stop: sync.OnceFunc(e.Close)}
			t.Cleanup(te.Stop)
			return te
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("start etcd: %v", lastErr)
	return nil
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Main runs a package's tests and fails them when they leave goroutines
// behind (watches, agents, managers, etcd servers): call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if left := leftover(10 * time.Second); left != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind by the tests:\n\n%s\n", left)
			code = 1
		}
	}
	os.Exit(code)
}

// leftover waits for every goroutine but this one to end, and returns
// the stacks of those that do not.
func leftover(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		stacks := strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
		left := stacks[1:] // the first is this goroutine
		if len(left) == 0 || time.Now().After(deadline) {
			return strings.Join(left, "\n\n")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
