package controller

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/scheduler"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Labels on a service's pods.
const (
	LabelServiceIndex      = "hearth.service.index"
	LabelServiceGeneration = "hearth.service.generation"
)

// reconcileServices keeps each service at its replica count, and
// replaces pods of an older template (the "recreate" update).
func (m *Manager) reconcileServices(ctx context.Context, c *cache) {
	c.mu.Lock()
	var services []*model.Service
	for _, s := range c.services {
		services = append(services, s)
	}
	c.mu.Unlock()
	pods := c.podsSnapshot()
	for _, s := range services {
		var mine []*model.Pod
		for _, p := range pods {
			if p.Tenant == s.Tenant && p.Labels[scheduler.ServiceLabel] == s.Name {
				mine = append(mine, p)
			}
		}
		m.reconcileService(ctx, s, mine)
	}
	// Pods of services that are gone go too.
	for _, p := range pods {
		name := p.Labels[scheduler.ServiceLabel]
		if name == "" {
			continue
		}
		c.mu.Lock()
		_, ok := c.services[store.Key(model.KindService, p.Tenant, name)]
		c.mu.Unlock()
		if !ok {
			m.deletePod(ctx, p)
		}
	}
}

func (m *Manager) reconcileService(ctx context.Context, s *model.Service, pods []*model.Pod) {
	gen := strconv.FormatInt(s.Generation, 10)
	used := map[int]bool{}
	var current []*model.Pod
	for _, p := range pods {
		if p.Labels[LabelServiceGeneration] != gen {
			m.deletePod(ctx, p)
			continue
		}
		i, _ := strconv.Atoi(p.Labels[LabelServiceIndex])
		used[i] = true
		current = append(current, p)
	}
	sort.Slice(current, func(i, j int) bool {
		a, _ := strconv.Atoi(current[i].Labels[LabelServiceIndex])
		b, _ := strconv.Atoi(current[j].Labels[LabelServiceIndex])
		return a < b
	})
	for len(current) > s.Spec.Replicas {
		m.deletePod(ctx, current[len(current)-1])
		current = current[:len(current)-1]
	}
	for i := 1; len(current) < s.Spec.Replicas; i++ {
		if used[i] {
			continue
		}
		p := &model.Pod{
			Meta: model.Meta{
				Kind: model.KindPod, Tenant: s.Tenant, Name: fmt.Sprintf("%s-%d", s.Name, i),
				Labels: map[string]string{scheduler.ServiceLabel: s.Name, LabelServiceIndex: strconv.Itoa(i), LabelServiceGeneration: gen},
			},
			Spec: s.Spec.Template,
		}
		for k, v := range s.Labels {
			if _, ok := p.Labels[k]; !ok {
				p.Labels[k] = v
			}
		}
		p.Spec.NodeName = ""
		if p.Spec.Desired == "" {
			p.Spec.Desired = model.DesiredRunning
		}
		p.Status = model.PodStatus{Phase: model.PhasePending}
		if err := m.Store.Create(ctx, p); err != nil && !errdefs.IsAlreadyExists(err) {
			m.Log.Warn("create service pod", "service", s.Tenant+"/"+s.Name, "err", err)
			return
		}
		used[i] = true
		current = append(current, p)
	}
	running := 0
	for _, p := range current {
		if p.Status.Phase == model.PhaseRunning {
			running++
		}
	}
	if s.Status.Replicas != len(current) || s.Status.Running != running {
		cp := *s
		cp.Status = model.ServiceStatus{Replicas: len(current), Running: running}
		m.Store.Update(ctx, &cp, false)
	}
}

func (m *Manager) deletePod(ctx context.Context, p *model.Pod) {
	if err := m.Store.Delete(ctx, model.KindPod, p.Tenant, p.Name, p.Revision); err != nil && !errdefs.IsNotFound(err) {
		m.Log.Debug("delete pod", "pod", p.Tenant+"/"+p.Name, "err", err)
	}
}
