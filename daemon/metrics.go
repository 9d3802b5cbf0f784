package daemon

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/agentreg/agentreg/agent"
)

// metrics are the daemon's Prometheus collectors, on their own registry.
// No metric has a per-root label unless Config.MetricsTopRoots asks for
// one on the largest roots: label sets stay bounded however many roots
// the stream holds.
type metrics struct {
	reg        *prometheus.Registry
	eventsSeen prometheus.Counter
	lag        prometheus.Gauge
	gaps       prometheus.Counter
	// violationsLogged counts the violations logged at WARN.
	violationsLogged prometheus.Counter
	requests         *prometheus.HistogramVec
	running          prometheus.Gauge
	saturated        *prometheus.CounterVec
	late             *prometheus.CounterVec
	conflicts        *prometheus.CounterVec
	appendConflicts  prometheus.Counter
	replays          *prometheus.CounterVec
	disconnects      prometheus.Counter
	reconnects       prometheus.Counter
	snapshots        *prometheus.CounterVec
	followerStalled  prometheus.Gauge

	mu        sync.Mutex
	endpoints map[string]*endpointStats
}

func newMetrics() *metrics {
	ns := "agentreg"
	m := &metrics{
		reg: prometheus.NewRegistry(),
		eventsSeen: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "events_followed_total",
			Help: "Events the daemon's follower received from the stream."}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "follower_lag_events",
			Help: "Messages in the stream the follower had not received yet, as of its last delivery."}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "follower_missing_sequences_total",
			Help: "Stream sequences the follower never received: messages deleted or purged from the stream (each gap logged at WARN)."}),
		violationsLogged: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "violations_logged_total",
			Help: "Violations (events stored but not applied) the daemon logged at WARN."}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "request_duration_seconds",
			Help:    "API request latency, arrival to answer (queue time included), by endpoint and reply code; its _count is the request count.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"endpoint", "code"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "requests_running",
			Help: "API requests a worker is running now."}),
		saturated: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_saturated_total",
			Help: "API requests answered 503 because every worker was busy and the queue full."}, []string{"endpoint"}),
		late: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_late_total",
			Help: "API requests answered 504 by the deadline timer while their work was still running."}, []string{"endpoint"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "write_conflicts_total",
			Help: "Writes answered 409 conflict: stored but not applied (the registry changed after the check), or out of retries."}, []string{"endpoint"}),
		appendConflicts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "append_conflicts_total",
			Help: "Appends the server refused because another writer had moved the agent's subject on (the runtime caught up and retried)."}),
		replays: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "idempotent_replays_total",
			Help: "Writes answered with the receipt of an earlier copy (same idempotency_key): replayed, not written again."}, []string{"endpoint"}),
		disconnects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "nats_disconnects_total",
			Help: "Times the daemon's NATS connection was lost."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "nats_reconnects_total",
			Help: "Times the daemon's NATS connection was re-established."}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "snapshots_total",
			Help: "Background snapshots, by result: taken or failed (each failure logged at WARN)."}, []string{"result"}),
		followerStalled: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "follower_stalled",
			Help: "1 while the follower lags the stream by more than Config.FollowerLagThreshold for longer than Config.FollowerLagFor (logged at WARN)."}),
		endpoints: map[string]*endpointStats{},
	}
	m.snapshots.WithLabelValues("taken")
	m.snapshots.WithLabelValues("failed")
	m.reg.MustRegister(m.eventsSeen, m.lag, m.gaps, m.violationsLogged, m.requests, m.running, m.saturated, m.late, m.conflicts,
		m.appendConflicts, m.replays, m.disconnects, m.reconnects, m.snapshots, m.followerStalled, buildInfo(),
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// buildInfo is agentreg_build_info, 1, labelled with the module version,
// VCS revision and Go version the binary was built with.
func buildInfo() prometheus.Collector {
	version, revision, goVersion := "unknown", "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "agentreg", Name: "build_info",
		Help:        "The agentreg build: module version, VCS revision, Go version (value 1).",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "goversion": goVersion}})
	g.Set(1)
	return g
}

func (m *metrics) request(endpoint, code string, d time.Duration) {
	m.requests.WithLabelValues(endpoint, code).Observe(d.Seconds())
}

func (m *metrics) saturatedReq(endpoint string) { m.saturated.WithLabelValues(endpoint).Inc() }

// endpointStats is what micro's stats of an endpoint cannot count, since
// workers answer after the handler returned: shown as the endpoint's
// `data` in `nats micro stats agentreg`.
type endpointStats struct {
	mu        sync.Mutex
	Answered  uint64  `json:"answered"`
	Errors    uint64  `json:"errors"`
	Saturated uint64  `json:"saturated"`
	LastError string  `json:"last_error,omitempty"`
	TotalMS   float64 `json:"total_ms"`
	AverageMS float64 `json:"average_ms"`
}

func (m *metrics) endpoint(name string) *endpointStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.endpoints[name]
	if s == nil {
		s = &endpointStats{}
		m.endpoints[name] = s
	}
	return s
}

func (s *endpointStats) done(code, desc string, took time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Answered++
	s.TotalMS += float64(took) / float64(time.Millisecond)
	s.AverageMS = s.TotalMS / float64(s.Answered)
	switch code {
	case "200":
	case "503":
		if strings.HasPrefix(desc, "agentd is saturated:") {
			s.Saturated++
		}
		s.Errors++
		s.LastError = code + " " + desc
	default:
		s.Errors++
		s.LastError = code + " " + desc
	}
}

func (s *endpointStats) snapshot() json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, _ := json.Marshal(s)
	return b
}

// registryCollector reports, at scrape time, the loaded registries in
// aggregate (no root label), and per root only for the Config.MetricsTopRoots
// roots with the most events folded.
type registryCollector struct {
	d                                     *Daemon
	loaded, agents, viol, applied, oldest *prometheus.Desc
	rootApplied, rootViol, rootSnapAge    *prometheus.Desc
}

func newRegistryCollector(d *Daemon) *registryCollector {
	return &registryCollector{d: d,
		loaded:      prometheus.NewDesc("agentreg_loaded_roots", "Root registries loaded in memory.", nil, nil),
		agents:      prometheus.NewDesc("agentreg_loaded_agents", "Agents in the loaded registries.", nil, nil),
		viol:        prometheus.NewDesc("agentreg_loaded_violations", "Events of the loaded roots that broke an invariant and were not applied.", nil, nil),
		applied:     prometheus.NewDesc("agentreg_loaded_events", "Events folded into the loaded registries (applied or recorded as violations).", nil, nil),
		oldest:      prometheus.NewDesc("agentreg_snapshot_oldest_age_seconds", "Age of the oldest newest-snapshot among loaded roots that have one.", nil, nil),
		rootApplied: prometheus.NewDesc("agentreg_root_events", "Events folded into a root's registry (only the Config.MetricsTopRoots largest loaded roots).", []string{"root", "name"}, nil),
		rootViol:    prometheus.NewDesc("agentreg_root_violations", "A root's events not applied (only the Config.MetricsTopRoots largest loaded roots).", []string{"root", "name"}, nil),
		rootSnapAge: prometheus.NewDesc("agentreg_root_snapshot_age_seconds", "Age of a root's newest snapshot (only the Config.MetricsTopRoots largest loaded roots).", []string{"root", "name"}, nil),
	}
}

func (c *registryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.loaded, c.agents, c.viol, c.applied, c.oldest, c.rootApplied, c.rootViol, c.rootSnapAge} {
		ch <- d
	}
}

func (c *registryCollector) Collect(ch chan<- prometheus.Metric) {
	stats := c.d.rt.Stats()
	var agents, viol int
	var applied uint64
	var oldest time.Duration
	for _, s := range stats {
		agents += s.Agents
		viol += s.Violations
		applied += s.Applied
		if !s.SnapshotTime.IsZero() {
			oldest = max(oldest, time.Since(s.SnapshotTime))
		}
	}
	ch <- prometheus.MustNewConstMetric(c.loaded, prometheus.GaugeValue, float64(len(stats)))
	ch <- prometheus.MustNewConstMetric(c.agents, prometheus.GaugeValue, float64(agents))
	ch <- prometheus.MustNewConstMetric(c.viol, prometheus.GaugeValue, float64(viol))
	ch <- prometheus.MustNewConstMetric(c.applied, prometheus.GaugeValue, float64(applied))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, oldest.Seconds())
	n := c.d.cfg.MetricsTopRoots
	if n <= 0 {
		return
	}
	slices.SortStableFunc(stats, func(a, b agent.RootStats) int { return cmp.Compare(b.Applied, a.Applied) }) // largest first
	for _, s := range stats[:min(n, len(stats))] {
		name := ""
		if def, ok := c.d.rt.RootDef(s.Root); ok {
			name = def.Name
		}
		ch <- prometheus.MustNewConstMetric(c.rootApplied, prometheus.GaugeValue, float64(s.Applied), string(s.Root), name)
		ch <- prometheus.MustNewConstMetric(c.rootViol, prometheus.GaugeValue, float64(s.Violations), string(s.Root), name)
		if !s.SnapshotTime.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.rootSnapAge, prometheus.GaugeValue, time.Since(s.SnapshotTime).Seconds(), string(s.Root), name)
		}
	}
}

// poolCollector reports the request pool's size and queue at scrape time.
func (d *Daemon) poolCollector() prometheus.Collector {
	return prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("agentreg_request_workers", "Request workers (Config.Workers, agentd --workers).", nil, nil),
			prometheus.GaugeValue, float64(d.pool.workers))
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("agentreg_requests_queued", "API requests waiting for a worker.", nil, nil),
			prometheus.GaugeValue, float64(d.pool.queued.Load()))
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("agentreg_request_queue_size", "Requests the queue holds before answering 503 (Config.QueueSize).", nil, nil),
			prometheus.GaugeValue, float64(cap(d.pool.jobs)))
	})
}

// watchConnection counts and logs the connection's losses and returns.
// It is set after the connection is made, keeping any handler set there.
func (d *Daemon) watchConnection() {
	prevDisc, prevRec := d.nc.Opts.DisconnectedErrCB, d.nc.Opts.ReconnectedCB
	d.nc.SetDisconnectErrHandler(func(nc *nats.Conn, err error) {
		if prevDisc != nil {
			prevDisc(nc, err)
		}
		if d.ctx.Err() != nil {
			return
		}
		d.metrics.disconnects.Inc()
		d.log.Warn("NATS connection lost; reconnecting", keyURL, nc.ConnectedUrlRedacted(), keyErr, err)
	})
	d.nc.SetReconnectHandler(func(nc *nats.Conn) {
		if prevRec != nil {
			prevRec(nc)
		}
		d.metrics.reconnects.Inc()
		d.log.Info("NATS connection re-established", keyURL, nc.ConnectedUrlRedacted())
	})
}

// healthTimeout bounds /healthz and agentd.health: a probe is answered
// within a second whatever the state of NATS.
const healthTimeout = 800 * time.Millisecond

func (d *Daemon) startHTTP() error {
	d.metrics.reg.MustRegister(newRegistryCollector(d), d.poolCollector())
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		h, err := d.health(ctx, nil)
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			h = map[string]any{"status": "unavailable", "reason": err.Error(), "nats": d.nc.Status().String()}
		}
		_ = json.NewEncoder(w).Encode(h)
	})
	ln, err := net.Listen("tcp", d.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP on %s: %w", d.cfg.HTTPAddr, err)
	}
	d.httpLn = ln
	d.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.errc <- fmt.Errorf("HTTP server: %w", err)
		}
	}()
	return nil
}
