package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the daemon's Prometheus collectors, on their own registry.
type metrics struct {
	reg        *prometheus.Registry
	eventsSeen prometheus.Counter
	lag        prometheus.Gauge
	gaps       prometheus.Counter
	// violationsLogged counts the violations logged at WARN.
	violationsLogged prometheus.Counter
	requests         *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		eventsSeen: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agentreg", Name: "events_followed_total",
			Help: "Events the daemon's follower received from the stream.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "agentreg", Name: "follower_lag_events",
			Help: "Messages in the stream the follower has not received yet.",
		}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agentreg", Name: "follower_missing_sequences_total",
			Help: "Stream sequences the follower never received: messages deleted or purged from the stream (each logged at WARN).",
		}),
		violationsLogged: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "agentreg", Name: "violations_logged_total",
			Help: "Violations (events stored but not applied) the daemon logged at WARN.",
		}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "agentreg", Name: "request_duration_seconds",
			Help:    "API request latency by endpoint and reply code.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"endpoint", "code"}),
	}
	m.reg.MustRegister(m.eventsSeen, m.lag, m.gaps, m.violationsLogged, m.requests,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) request(endpoint, code string, d time.Duration) {
	m.requests.WithLabelValues(endpoint, code).Observe(d.Seconds())
}

// registryCollector reports, at scrape time, the state of the loaded
// registries: events applied, violations and snapshot ages per root.
type registryCollector struct {
	d                            *Daemon
	applied, violations, snapAge *prometheus.Desc
}

func (c *registryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.applied
	ch <- c.violations
	ch <- c.snapAge
}

func (c *registryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.d.rt.Stats() {
		ch <- prometheus.MustNewConstMetric(c.applied, prometheus.CounterValue, float64(s.Applied), s.Root)
		ch <- prometheus.MustNewConstMetric(c.violations, prometheus.GaugeValue, float64(s.Violations), s.Root)
		if !s.SnapshotTime.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.snapAge, prometheus.GaugeValue, time.Since(s.SnapshotTime).Seconds(), s.Root)
		}
	}
}

func (d *Daemon) startHTTP() error {
	d.metrics.reg.MustRegister(&registryCollector{d: d,
		applied:    prometheus.NewDesc("agentreg_events_applied_total", "Events folded into a root's registry (applied or recorded as violations).", []string{"root"}, nil),
		violations: prometheus.NewDesc("agentreg_violations", "Events of a root that broke an invariant and were not applied.", []string{"root"}, nil),
		snapAge:    prometheus.NewDesc("agentreg_snapshot_age_seconds", "Age of the newest snapshot this daemon took or loaded for a root.", []string{"root"}, nil),
	})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := d.health(r.Context(), nil); err != nil || !d.nc.IsConnected() {
			http.Error(w, fmt.Sprintf("not ready: connected=%v err=%v", d.nc.IsConnected(), err), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
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
