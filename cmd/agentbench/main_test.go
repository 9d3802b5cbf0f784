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
		"-big-agents", "200", "-mem-agents", "500", "-appends", "50", "-pipelined", "300", "-creates", "20", "-json"}, &out, io.Discard)
	require.NoError(t, err)
	names := map[string]Figure{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var f Figure
		require.NoError(t, json.Unmarshal([]byte(line), &f), line)
		require.Greater(t, f.Value, 0.0, f.Name)
		names[f.Name] = f
	}
	for _, want := range []string{"append.sequential_occ", "append.pipelined_occ", "append.atomic_create", "replay.fold_full_stream",
		"resolve.cold_p50_at_4000", "resolve.cold_p50_growth", "snapshot.restore_200_agents", "memory.per_agent_500_agents"} {
		f, ok := names[want]
		require.True(t, ok, "figure %s missing from %v", want, names)
		if strings.HasPrefix(want, "append") || strings.HasPrefix(want, "replay") || strings.HasPrefix(want, "snapshot") {
			require.Greater(t, f.Baseline, 0.0, want)
			require.InDelta(t, f.Value/f.Baseline, f.Ratio, 1e-9, want)
		}
	}
}
