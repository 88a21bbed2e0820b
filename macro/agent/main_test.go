package agent_test

import (
	"testing"

	"github.com/hearth-cloud/hearth/internal/testetcd"
)

// TestMain fails the package when its tests leave goroutines behind.
func TestMain(m *testing.M) { testetcd.Main(m) }
