package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Docker's healthcheck defaults and bounds.
const (
	healthInterval      = 30 * time.Second
	healthTimeout       = 30 * time.Second
	healthStartInterval = 5 * time.Second
	healthRetries       = 3
	healthLogEntries    = 5
	healthOutputMax     = 4096
)

// healthParams fills in Docker's defaults.
func healthParams(hc *model.Healthcheck) (interval, timeout, startInterval time.Duration, retries int) {
	interval, timeout, startInterval, retries = hc.Interval, hc.Timeout, hc.StartInterval, hc.Retries
	if interval <= 0 {
		interval = healthInterval
	}
	if timeout <= 0 {
		timeout = healthTimeout
	}
	if startInterval <= 0 {
		startInterval = healthStartInterval
	}
	if retries <= 0 {
		retries = healthRetries
	}
	return
}

// healthArgs is the command a healthcheck runs.
func healthArgs(hc *model.Healthcheck) ([]string, error) {
	if len(hc.Test) < 2 {
		return nil, errors.New("healthcheck has no command")
	}
	switch hc.Test[0] {
	case "CMD":
		return hc.Test[1:], nil
	case "CMD-SHELL":
		return []string{"/bin/sh", "-c", hc.Test[1]}, nil
	}
	return nil, fmt.Errorf("healthcheck test %q", hc.Test[0])
}

// applyHealth folds one probe's result into the health state as Docker
// does: a pass makes the container healthy, and retries failures in a row
// make it unhealthy, except that failures in the start period don't count
// while it is still starting.
func applyHealth(h *model.Health, r model.HealthResult, retries int, inStartPeriod bool) {
	if h.Status == "" {
		h.Status = model.HealthStarting
	}
	h.Log = append(h.Log, r)
	if n := len(h.Log); n > healthLogEntries {
		h.Log = append([]model.HealthResult(nil), h.Log[n-healthLogEntries:]...)
	}
	if r.ExitCode == 0 {
		h.FailingStreak = 0
		h.Status = model.HealthHealthy
		return
	}
	if h.Status == model.HealthStarting && inStartPeriod {
		return
	}
	h.FailingStreak++
	if h.FailingStreak >= retries {
		h.Status = model.HealthUnhealthy
	}
}

// checkHealth runs the pod's healthcheck in VM vm until ctx ends (the VM
// exited, or the worker stopped), and writes each result to the pod's
// status while that VM is still the pod's.
func (w *worker) checkHealth(ctx context.Context, p *model.Pod, vm string, hc *model.Healthcheck, seed *model.Health) {
	args, err := healthArgs(hc)
	if err != nil {
		w.a.Log.Warn("healthcheck", "pod", w.key, "err", err)
		return
	}
	interval, timeout, startInterval, retries := healthParams(hc)
	began := time.Now()
	health := model.Health{Status: model.HealthStarting}
	if seed != nil {
		health = *seed
		health.Log = append([]model.HealthResult(nil), seed.Log...)
	}
	for {
		inStart := health.Status == model.HealthStarting && time.Since(began) < hc.StartPeriod
		wait := interval
		if inStart {
			wait = startInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		r := w.probe(ctx, vm, args, timeout)
		if ctx.Err() != nil {
			return
		}
		inStart = health.Status == model.HealthStarting && r.Start.Sub(began) < hc.StartPeriod
		applyHealth(&health, r, retries, inStart)
		snapshot := health
		snapshot.Log = append([]model.HealthResult(nil), health.Log...)
		_, err := store.Modify[model.Pod](ctx, w.a.Store, model.KindPod, p.Tenant, p.Name, func(cur *model.Pod) (bool, error) {
			if cur.UID != p.UID || cur.Status.CradleID != vm || cur.Status.Phase != model.PhaseRunning {
				return false, store.ErrSkip
			}
			cur.Status.Health = &snapshot
			return false, nil
		})
		if err != nil && ctx.Err() == nil {
			w.a.Log.Warn("write health", "pod", w.key, "err", err)
		}
	}
}

// probe runs the healthcheck command once.
func (w *worker) probe(ctx context.Context, vm string, args []string, timeout time.Duration) model.HealthResult {
	r := model.HealthResult{Start: time.Now().UTC()}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	code, out, err := w.a.VMM.Probe(pctx, vm, args, healthOutputMax)
	cancel()
	r.End = time.Now().UTC()
	switch {
	case err == nil:
		r.ExitCode, r.Output = code, out
	case errors.Is(err, context.DeadlineExceeded):
		r.ExitCode, r.Output = -1, fmt.Sprintf("Health check exceeded timeout (%s)", timeout)
	default:
		r.ExitCode, r.Output = -1, err.Error()
	}
	return r
}
