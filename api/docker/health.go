package docker

import (
	"github.com/moby/moby/api/types/container"
)

// health is the container's healthcheck state, nil without one.
func (c *ctr) health() *container.Health {
	h := c.pod.Status.Health
	hc := c.cfg.Healthcheck
	if hc == nil || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
		return nil
	}
	if h == nil || !c.running() {
		if c.running() {
			return &container.Health{Status: container.Starting, Log: []*container.HealthcheckResult{}}
		}
		if h == nil {
			return nil
		}
	}
	out := &container.Health{Status: container.HealthStatus(h.Status), FailingStreak: h.FailingStreak, Log: []*container.HealthcheckResult{}}
	for _, r := range h.Log {
		out.Log = append(out.Log, &container.HealthcheckResult{Start: r.Start, End: r.End, ExitCode: r.ExitCode, Output: r.Output})
	}
	return out
}
