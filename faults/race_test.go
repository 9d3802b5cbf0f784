package faults_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

// TestRacingWriters runs 16 writers, each with its own runtime and
// connection, against one agent for a bounded time. Writer i alternately
// grants and revokes its own capability f<i>; a write either succeeds or
// fails with agent.ErrConflict (another writer moved the agent's subject
// on), and is then retried. At the end the log holds exactly the writes
// that succeeded (each once), the registry equals the serial fold of those
// writes in stream order on a fresh projector, and the agent holds exactly
// the capabilities whose writer's last successful write was a grant.
func TestRacingWriters(t *testing.T) {
	ctx := context.Background()
	const writers = 16
	d := pick(3*time.Second, 10*time.Second)
	srv := testutil.RunServer(t)
	url := srv.ClientURL()

	setup := openRuntime(t, url)
	root, err := setup.RegisterRoot(agent.WithCorrelation(ctx, "setup-root"), rootDef("race"))
	require.NoError(t, err)
	target, _, err := setup.Create(agent.WithCorrelation(ctx, "setup-target"), root, agent.Spec{Name: "target", Primer: "Everyone writes to me."})
	require.NoError(t, err)

	type result struct {
		ok        []string // correlation ids of the writes that succeeded
		conflicts int
		granted   bool // the writer's last successful write was a grant
		err       error
	}
	results := make([]result, writers)
	rts := make([]*agent.Runtime, writers)
	for i := range rts {
		rts[i] = openRuntime(t, url)
		_, err := rts[i].RegisterRoot(ctx, rootDef("race"))
		require.NoError(t, err)
	}
	start := make(chan struct{})
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			r := &results[i]
			rt, c := rts[i], fnCap(i)
			<-start
			for n := 0; time.Now().Before(deadline); n++ {
				for attempt := 0; ; attempt++ {
					corr := fmt.Sprintf("w%02d-%d-%d", i, n, attempt)
					wctx, cancel := context.WithTimeout(agent.WithCorrelation(ctx, corr), 10*time.Second)
					var err error
					if r.granted {
						_, err = rt.Revoke(wctx, target, events.KindFunc, c.Name)
					} else {
						_, err = rt.Grant(wctx, target, c)
					}
					cancel()
					if err == nil {
						r.ok = append(r.ok, corr)
						r.granted = !r.granted
						break
					}
					if !errors.Is(err, agent.ErrConflict) {
						r.err = fmt.Errorf("writer %d, write %d (%s): %w", i, n, corr, err)
						return
					}
					r.conflicts++
				}
			}
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)

	succeeded := map[string]bool{"setup-root": true, "setup-target": true}
	conflicts, writes := 0, 0
	var wantCaps []string
	for i, r := range results {
		require.NoError(t, r.err, "a write failed with an error other than a conflict")
		for _, c := range r.ok {
			succeeded[c] = true
		}
		writes += len(r.ok)
		conflicts += r.conflicts
		if r.granted {
			wantCaps = append(wantCaps, fnCap(i).Key())
		}
	}
	l := openLog(t, url, natsstore.Config{})
	st, err := readLog(ctx, l, string(root.Root))
	require.NoError(t, err)
	st.requireUniqueIDs(t)
	require.Empty(t, st.reg.Violations)
	// The log holds the writes that succeeded, each once (each is one
	// event: the target is created with no grants and no tasks), and
	// nothing else.
	for c := range succeeded {
		require.Equal(t, 1, st.corrs[c], "write %s succeeded: its event in the log", c)
	}
	for c, n := range st.corrs {
		require.True(t, succeeded[c], "%d event(s) of write %s, which was reported as failed, are in the log", n, c)
	}
	// The serial fold of the writes that succeeded, in stream order.
	serial := projector.New(string(root.Root))
	for _, rec := range st.recs {
		if e := st.events[rec.Seq]; e != nil && succeeded[e.Correlation] {
			serial.Apply(rec)
		}
	}
	require.Empty(t, serial.Violations)
	want, err := serial.StateHash()
	require.NoError(t, err)
	for i, rt := range rts {
		hash, seq, err := rt.StateHash(ctx, root.Root)
		require.NoError(t, err)
		require.Equal(t, serial.Seq, seq, "runtime %d: sequence", i)
		require.Equal(t, want, hash, "runtime %d: state hash differs from the serial fold of the writes that succeeded", i)
	}
	var gotCaps []string
	for k := range serial.Agents[target.Path].Capabilities {
		gotCaps = append(gotCaps, k)
	}
	slices.Sort(gotCaps)
	slices.Sort(wantCaps)
	require.Equal(t, wantCaps, gotCaps, "capabilities held after the race")
	t.Logf("%d writers for %v: %d writes succeeded (%.0f/s), %d conflicts retried; %d events checked, %d capabilities held at the end",
		writers, elapsed.Round(time.Millisecond), writes, float64(writes)/elapsed.Seconds(), conflicts, len(st.recs), len(gotCaps))
}
