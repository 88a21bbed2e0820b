// Package metrics exports a node's Prometheus metrics: pods by phase,
// scheduling and VM start latency, leadership, node capacity and
// allocation, and (through the default registry, where the embedded etcd
// registers them) etcd's health and leader changes.
package metrics

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Metrics are one node's instruments.
type Metrics struct {
	SchedulingLatency prometheus.Histogram
	VMStart           prometheus.Histogram
	Leader            prometheus.Gauge
	LeaderChanges     prometheus.Counter

	reg *prometheus.Registry
	srv *http.Server
}

// New makes the instruments, and a collector that reads pods and nodes
// from the store at each scrape.
func New(st *store.Store, node string) *Metrics {
	m := &Metrics{
		SchedulingLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hearth_scheduling_latency_seconds", Help: "Time from a pod's creation to its binding to a node.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		VMStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hearth_vm_start_seconds", Help: "Time to start a pod's microVM, up to its containers running.",
			Buckets: prometheus.ExponentialBuckets(0.05, 1.6, 14),
		}),
		Leader:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "hearth_leader", Help: "1 while this node leads the cluster."}),
		LeaderChanges: prometheus.NewCounter(prometheus.CounterOpts{Name: "hearth_leader_changes_total", Help: "Times this node gained or lost leadership."}),
		reg:           prometheus.NewRegistry(),
	}
	// Go and process metrics come from the default registry, with etcd's.
	m.reg.MustRegister(m.SchedulingLatency, m.VMStart, m.Leader, m.LeaderChanges, &stateCollector{st: st})
	return m
}

// OnLeader records a change of leadership.
func (m *Metrics) OnLeader(leading bool) {
	m.LeaderChanges.Inc()
	if leading {
		m.Leader.Set(1)
	} else {
		m.Leader.Set(0)
	}
}

// Serve exposes /metrics on addr: this node's registry and the default
// one (etcd's).
func (m *Metrics) Serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return errdefs.FailedPrecondition("metrics: cannot listen on %s: %v", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{m.reg, prometheus.DefaultGatherer}, promhttp.HandlerOpts{}))
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go m.srv.Serve(ln)
	return nil
}

// Close stops serving.
func (m *Metrics) Close() {
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		m.srv.Shutdown(ctx)
	}
}

var (
	podsDesc      = prometheus.NewDesc("hearth_pods", "Pods by phase.", []string{"phase"}, nil)
	capacityDesc  = prometheus.NewDesc("hearth_node_capacity", "What a node offers pods.", []string{"node", "resource"}, nil)
	allocatedDesc = prometheus.NewDesc("hearth_node_allocated", "What a node's pods reserve.", []string{"node", "resource"}, nil)
	nodeUpDesc    = prometheus.NewDesc("hearth_node_ready", "1 when a node is ready.", []string{"node"}, nil)
)

// stateCollector reads the cluster's state at scrape time: no loop keeps
// it current between scrapes.
type stateCollector struct{ st *store.Store }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- podsDesc
	ch <- capacityDesc
	ch <- allocatedDesc
	ch <- nodeUpDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	pods, _, err := store.List[model.Pod](ctx, c.st, model.KindPod, "")
	if err != nil {
		return
	}
	nodes, _, err := store.List[model.Node](ctx, c.st, model.KindNode, "")
	if err != nil {
		return
	}
	phases := map[string]float64{}
	alloc := map[string]model.Resources{}
	for _, p := range pods {
		phase := p.Status.Phase
		if phase == "" {
			phase = model.PhasePending
		}
		phases[phase]++
		if p.Spec.NodeName != "" && !model.Terminal(p.Status.Phase) {
			a := alloc[p.Spec.NodeName]
			a.CPUs += p.Spec.Resources.CPUs
			a.MemoryMiB += p.Spec.Resources.MemoryMiB
			alloc[p.Spec.NodeName] = a
		}
	}
	for _, ph := range []string{model.PhasePending, model.PhaseScheduled, model.PhaseStarting, model.PhaseRunning, model.PhaseExited, model.PhaseFailed, model.PhaseLost} {
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, phases[ph], ph)
	}
	for _, n := range nodes {
		ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(n.Spec.Capacity.CPUs), n.Name, "cpus")
		ch <- prometheus.MustNewConstMetric(capacityDesc, prometheus.GaugeValue, float64(n.Spec.Capacity.MemoryMiB)*(1<<20), n.Name, "memory_bytes")
		a := alloc[n.Name]
		ch <- prometheus.MustNewConstMetric(allocatedDesc, prometheus.GaugeValue, float64(a.CPUs), n.Name, "cpus")
		ch <- prometheus.MustNewConstMetric(allocatedDesc, prometheus.GaugeValue, float64(a.MemoryMiB)*(1<<20), n.Name, "memory_bytes")
		up := 0.0
		if n.Status.State == model.NodeReady {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(nodeUpDesc, prometheus.GaugeValue, up, n.Name)
	}
}
