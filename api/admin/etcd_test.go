package admin_test

import (
	"testing"
	"time"

	"github.com/hearth-cloud/hearth/internal/testetcd"
)

type testEtcd = testetcd.Etcd

func startEtcd(t testing.TB) *testEtcd { return testetcd.Start(t) }

func freePort(t testing.TB) int { return testetcd.FreePort(t) }

func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testetcd.Eventually(t, d, what, cond)
}
