package main

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/testutil"
)

// A purge up to a sequence far past the last stored one leaves the stream
// starting there: what lies below is one line of events and one problem of
// audit, not one per sequence (3,000,000 lines before).
func TestPurgedRangeIsOneLine(t *testing.T) {
	t.Parallel()
	h := newHistory(t) // seq 1-3
	const first = 3_000_000
	require.NoError(t, h.stream().Purge(h.ctx, jetstream.WithPurgeSequence(first)))

	text := replayOK(t, "events", "--nats-url", h.url)
	require.Equal(t, fmt.Sprintf("%6d  %20s  PURGED             seq 1–%d purged or never stored: the stream starts at %d\n", 1, "", first-1, first), text)
	lines := reencode[rangeLine](t, replayOK(t, "events", "--nats-url", h.url, "--json"))
	require.Equal(t, []rangeLine{{Seq: 1, Through: first - 1, Status: statusPurged, Count: first - 1}}, lines)
	// Clipped to the range and the point.
	lines = reencode[rangeLine](t, replayOK(t, "events", "--nats-url", h.url, "--json", "--from-seq", "10", "--seq", "20"))
	require.Equal(t, []rangeLine{{Seq: 10, Through: 20, Status: statusPurged, Count: 11}}, lines)
	require.Empty(t, replayOK(t, "events", "--nats-url", h.url, "--from-seq", fmt.Sprint(first)))

	out, _, err := replay(t, "audit", "--nats-url", h.url, "--json")
	require.ErrorIs(t, err, errProblems)
	rep := decode[auditReport](t, out)
	require.Equal(t, []problem{{Seq: 1, Kind: "purged",
		Detail: fmt.Sprintf("seq 1–%d purged or never stored: the stream starts at %d; an event log never deletes", first-1, first)}}, rep.Problems)
	require.Equal(t, map[string]int{"purged": 1}, rep.Counts)
	out, _, err = replay(t, "audit", "--nats-url", h.url)
	require.ErrorIs(t, err, errProblems)
	require.Less(t, len(out), 1000, out)
	require.Contains(t, out, fmt.Sprintf("seq 1–%d purged or never stored", first-1))
	rep = decode[auditReport](t, must(replay(t, "audit", "--nats-url", h.url, "--json", "--seq", "2")))
	require.Equal(t, "seq 1–2 purged or never stored: the stream starts at 3000000; an event log never deletes", rep.Problems[0].Detail)
}

func must(out, _ string, _ error) string { return out }

// Deleted sequences inside the stream are listed one by one up to
// maxListedDeletes; the rest are counted on one last line (one problem).
func TestDeletedListBounded(t *testing.T) {
	t.Parallel()
	state := []uint64{9, 7, 7, 2, 5}
	require.Equal(t, []run{{lo: 1, hi: 2, purged: true}, {lo: 5, hi: 5}, {lo: 7, hi: 7}, {lo: 9, hi: 9}}, removedRuns(3, state))
	require.Equal(t, []uint64{9, 7, 7, 2, 5}, state, "the stream state is not changed")
	require.Equal(t, []run{{lo: 4, hi: 4}}, removedRuns(1, []uint64{4}))

	h := newHistory(t) // seq 1-3
	const n = maxListedDeletes + 5
	var last uint64
	for range n + 1 {
		last = testutil.PublishRaw(t, h.nc, "agentreg.x", nil, nil) // strays, then deleted but the last
	}
	require.Equal(t, uint64(3+n+1), last)
	stream := h.stream()
	for seq := uint64(4); seq < last; seq++ {
		require.NoError(t, stream.DeleteMsg(h.ctx, seq))
	}

	lines := strings.Split(strings.TrimSuffix(replayOK(t, "events", "--nats-url", h.url, "--json"), "\n"), "\n")
	require.Len(t, lines, 3+maxListedDeletes+1+1)
	require.Equal(t, fmt.Sprintf(`{"seq":%d,"through":%d,"status":"deleted_unlisted","count":5}`, 4+maxListedDeletes, last-1), lines[len(lines)-1])
	require.Contains(t, lines[len(lines)-2], fmt.Sprintf(`{"seq":%d,"status":"stray"`, last))
	require.Equal(t, fmt.Sprintf(`{"seq":%d,"status":"deleted","subject":"","stored":null,"violation":null,"event":null,"error":""}`, 3+maxListedDeletes), lines[len(lines)-3])
	text := replayOK(t, "events", "--nats-url", h.url)
	require.True(t, strings.HasSuffix(text, fmt.Sprintf("DELETED            5 more deleted sequence(s) from seq %d to %d, not listed one by one (at most 10000 are)\n", 4+maxListedDeletes, last-1)))

	out, _, err := replay(t, "audit", "--nats-url", h.url, "--json")
	require.ErrorIs(t, err, errProblems)
	rep := decode[auditReport](t, out)
	require.Equal(t, map[string]int{"deleted": n, "stray": 1}, rep.Counts)
	require.Len(t, rep.Problems, maxListedDeletes+2)
	require.Equal(t, problem{Seq: 4 + maxListedDeletes, Kind: "deleted",
		Detail: fmt.Sprintf("5 more deleted sequence(s) from seq %d to %d, not listed one by one (at most 10000 are)", 4+maxListedDeletes, last-1)},
		rep.Problems[maxListedDeletes])
}

// A flag's value of "--" is no end of the flags.
func TestParseDashDashValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args       []string
		root       string
		json       bool
		positional []string
	}{
		{[]string{"--root", "--", "REF", "--json"}, "--", true, []string{"REF"}},
		{[]string{"REF", "-root", "--", "--json"}, "--", true, []string{"REF"}},
		{[]string{"--root=--", "REF", "--", "--json"}, "--", false, []string{"REF", "--json"}},
		{[]string{"--json", "--", "--root", "x"}, "", true, []string{"--root", "x"}},
		{[]string{"--json=true", "REF", "--", "--root", "x"}, "", true, []string{"REF", "--root", "x"}},
		{[]string{"--seq", "4", "--root", "--", "--", "--json"}, "--", false, []string{"--json"}},
		{[]string{"A", "--", "B", "--json"}, "", false, []string{"A", "B", "--json"}},
	} {
		var c common
		fs := newFlagSet("resolve", "REF", "", &c, io.Discard)
		require.NoError(t, parse(fs, tc.args), tc.args)
		require.Equal(t, tc.root, c.root, tc.args)
		require.Equal(t, tc.json, c.json, tc.args)
		require.Equal(t, tc.positional, fs.Args(), tc.args)
	}
}
