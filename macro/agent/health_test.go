package agent

import (
	"testing"

	"github.com/hearth-cloud/hearth/macro/model"
)

func TestApplyHealth(t *testing.T) {
	fail, pass := model.HealthResult{ExitCode: 1}, model.HealthResult{ExitCode: 0}
	var h model.Health
	// Failures in the start period don't count while starting.
	applyHealth(&h, fail, 2, true)
	applyHealth(&h, fail, 2, true)
	if h.Status != model.HealthStarting || h.FailingStreak != 0 {
		t.Fatalf("in start period: %+v", h)
	}
	applyHealth(&h, fail, 2, false)
	if h.Status != model.HealthStarting || h.FailingStreak != 1 {
		t.Fatalf("one failure: %+v", h)
	}
	applyHealth(&h, fail, 2, false)
	if h.Status != model.HealthUnhealthy || h.FailingStreak != 2 {
		t.Fatalf("retries failures: %+v", h)
	}
	applyHealth(&h, pass, 2, false)
	if h.Status != model.HealthHealthy || h.FailingStreak != 0 {
		t.Fatalf("a pass: %+v", h)
	}
	// Once healthy, the start period no longer shields failures.
	applyHealth(&h, fail, 2, true)
	if h.FailingStreak != 1 {
		t.Fatalf("failure after healthy: %+v", h)
	}
	for i := 0; i < 10; i++ {
		applyHealth(&h, pass, 2, false)
	}
	if len(h.Log) != healthLogEntries {
		t.Fatalf("log keeps %d entries", len(h.Log))
	}
}

func TestHealthParams(t *testing.T) {
	i, to, si, r := healthParams(&model.Healthcheck{})
	if i != healthInterval || to != healthTimeout || si != healthStartInterval || r != healthRetries {
		t.Errorf("defaults %v %v %v %d", i, to, si, r)
	}
	if _, err := healthArgs(&model.Healthcheck{Test: []string{"CMD"}}); err == nil {
		t.Error("CMD without a command accepted")
	}
	if a, err := healthArgs(&model.Healthcheck{Test: []string{"CMD", "curl", "-f", "x"}}); err != nil || len(a) != 3 {
		t.Errorf("CMD args %q %v", a, err)
	}
}
