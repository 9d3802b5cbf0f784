package main

import (
	"math"
	"runtime/metrics"
	"time"
)

// schedWatch reads the Go runtime's histograms of goroutine scheduling
// latency (time spent runnable before running: the CPU was busy elsewhere,
// with other goroutines or other processes) and of stop-the-world pauses,
// so that a phase can tell what stretched its worst operation.
type schedWatch struct{ lat, pause *metrics.Float64Histogram }

const (
	metricSchedLatency = "/sched/latencies:seconds"
	metricGCPauses     = "/sched/pauses/total/gc:seconds"
)

func readHists() (lat, pause *metrics.Float64Histogram) {
	s := []metrics.Sample{{Name: metricSchedLatency}, {Name: metricGCPauses}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindFloat64Histogram {
		lat = s[0].Value.Float64Histogram()
	}
	if s[1].Value.Kind() == metrics.KindFloat64Histogram {
		pause = s[1].Value.Float64Histogram()
	}
	return lat, pause
}

func watchSched() schedWatch {
	lat, pause := readHists()
	return schedWatch{lat, pause}
}

// schedStats is what happened since the watch started: the upper bound of
// the highest bucket reached and the 99.9th percentile of scheduling
// latency, and the same of GC pauses.
type schedStats struct {
	latMax, lat999, pauseMax time.Duration
	pauses                   uint64
}

func (w schedWatch) since() schedStats {
	lat, pause := readHists()
	var st schedStats
	if w.lat != nil && lat != nil {
		st.latMax, st.lat999, _ = histDelta(w.lat, lat)
	}
	if w.pause != nil && pause != nil {
		st.pauseMax, _, st.pauses = histDelta(w.pause, pause)
	}
	return st
}

// histDelta returns the upper bound of the highest bucket with new
// samples, the bucket holding the 99.9th percentile of the new samples, and
// their count.
func histDelta(before, after *metrics.Float64Histogram) (maxB, p999 time.Duration, n uint64) {
	if len(before.Counts) != len(after.Counts) {
		return 0, 0, 0
	}
	delta := make([]uint64, len(after.Counts))
	for i := range delta {
		delta[i] = after.Counts[i] - before.Counts[i]
		n += delta[i]
	}
	bound := func(i int) time.Duration {
		b := after.Buckets[i+1]
		if math.IsInf(b, 1) {
			b = after.Buckets[i]
		}
		return time.Duration(b * float64(time.Second))
	}
	var seen uint64
	for i, c := range delta {
		if c == 0 {
			continue
		}
		maxB = bound(i)
		seen += c
		if p999 == 0 && float64(seen) >= 0.999*float64(n) {
			p999 = bound(i)
		}
	}
	return maxB, p999, n
}
