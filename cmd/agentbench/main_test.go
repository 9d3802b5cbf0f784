package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSmallRun runs every phase at a tiny size and checks that each figure
// is printed with a positive value and, where it has one, a baseline. It
// asserts nothing about speed.
func TestSmallRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and writes a few thousand events")
	}
	var out bytes.Buffer
	err := Run(context.Background(), []string{"-events", "4000", "-roots", "40", "-small", "1500", "-resolves", "10",
		"-big-agents", "200", "-mem-agents", "500", "-appends", "50", "-pipelined", "300", "-creates", "20",
		"-growth-agents", "2000", "-growth-ops", "40", "-write-ops", "30", "-snap-creates", "60", "-snap-every", "10",
		"-agentd-roots", "20", "-agentd-agents", "5", "-load-clients", "20", "-load-requests", "3", "-load-roots", "2", "-json"}, &out, io.Discard)
	require.NoError(t, err)
	names := map[string]Figure{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var f Figure
		require.NoError(t, json.Unmarshal([]byte(line), &f), line)
		switch {
		case strings.HasSuffix(f.Name, "_added_mib"): // a difference of two heap readings
		case strings.HasSuffix(f.Name, ".gc_pause_max_ms"), strings.HasSuffix(f.Name, ".sched_latency_max_ms"): // none may happen in a tiny run
			require.GreaterOrEqual(t, f.Value, 0.0, f.Name)
		default:
			require.Greater(t, f.Value, 0.0, f.Name)
		}
		names[f.Name] = f
	}
	for _, want := range []string{"append.sequential_occ", "append.pipelined_occ", "append.atomic_create", "replay.fold_full_stream",
		"resolve.cold_p50_at_4000", "resolve.cold_p50_growth", "snapshot.restore_200_agents", "memory.per_agent_500_agents",
		"create_growth", "grant_growth", "warm_resolve_growth", "cold_resolve_growth", "warm_resolve_p50_ms", "cold_resolve_p50_ms",
		"create_p50_ms_at_10", "create_p99_ms_at_2000", "grant_vs_append", "create_vs_raw", "create_worst_over_p50",
		"create_worst_over_p50_at_2000", "create_worst_over_p50_no_snapshots", "create_worst_over_p50_raw_publish", "agentd_start_10k_roots", "agentd_start_20_roots_x_5", "replay_vs_raw",
		"agentd_resolve_p99_20c", "agentd_create_p99_20c", "agentd_resolve_p99_20c.single_call_p50_ms"} {
		f, ok := names[want]
		require.True(t, ok, "figure %s missing from %v", want, names)
		if strings.HasPrefix(want, "append") || strings.HasPrefix(want, "replay") || strings.HasPrefix(want, "snapshot") || strings.HasSuffix(want, "_vs_append") || strings.HasSuffix(want, "_vs_raw") {
			require.Greater(t, f.Baseline, 0.0, want)
			require.InDelta(t, f.Value/f.Baseline, f.Ratio, 1e-9, want)
		}
	}
}
