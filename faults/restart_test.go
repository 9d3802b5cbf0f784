package faults_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

// TestServerRestarts restarts the NATS server 5 times on the same port and
// store while a runtime writes in a loop and an in-process daemon follows
// the stream; both reconnect by themselves. Afterwards every acknowledged
// write is in the log exactly once, a write that failed is either absent
// or there whole (never in part, never twice), and the writer's registry
// and the daemon's follower (without being asked) end on the state of a
// fresh fold of the log: no gap, no double apply.
func TestServerRestarts(t *testing.T) {
	ctx := context.Background()
	s := seed(t)
	restarts := pick(5, 20)
	opts := testutil.ServerOptions(t.TempDir())
	opts.Port = freePort(t)
	srv := testutil.RunServerWithOptions(t, opts)
	url := srv.ClientURL()

	rt := openRuntime(t, url)
	root, err := rt.RegisterRoot(ctx, rootDef("restarts"))
	require.NoError(t, err)
	l := newLoad(rt, root, s, 2*time.Second)
	for range 10 {
		require.True(t, l.step(ctx), "a write before any restart failed: %v", l.snapshot())
	}
	// The daemon loads the root on first use (here one read) and from
	// then on keeps its registry hot through its follower alone.
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	d, err := daemon.Start(dctx, daemon.Config{Conn: natsstore.ConnectOptions{URL: url}, Logger: testLogger(t), RequestTimeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Close() })
	require.NoError(t, inspect.View(dctx, d.Runtime(), string(root.Root), func(*projector.Registry) error { return nil }))

	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { l.run(lctx) })
	defer func() { stop(); wg.Wait() }()

	start := time.Now()
	var outages []time.Duration
	for i := range restarts {
		l.waitOK(t, 10, 30*time.Second, "before restart")
		srv = testutil.Restart(t, srv) // shut down, then a new server on the same port and store
		outages = append(outages, l.waitOK(t, 1, 30*time.Second, "after restart"))
		t.Logf("restart %d: writes resumed after %v", i+1, outages[i].Round(time.Millisecond))
	}
	l.waitOK(t, 10, 30*time.Second, "after the last restart")
	stop()
	wg.Wait()

	lg := openLog(t, url, natsstore.Config{})
	st := agreeWith(t, ctx, lg, rt, string(root.Root), "the writer's runtime")
	st.requireUniqueIDs(t)
	attempts := l.snapshot()
	storedAfterError := checkAttempts(t, st, attempts)
	resent, resentOK := resends(attempts)
	t.Logf("%d writes sent again with their idempotency key after an error, %d of them succeeded; each found once", resent, resentOK)
	// The follower folds what it sees by itself: wait until it covers the
	// log (no request reaches the daemon), then compare.
	drt := d.Runtime()
	eventually(t, 30*time.Second, func() bool {
		for _, rs := range drt.Stats() {
			if rs.Root == root.Root {
				return rs.Seq >= st.reg.Seq
			}
		}
		return false
	}, "the daemon's follower reaches seq %d", st.reg.Seq)
	agreeWith(t, ctx, lg, drt, string(root.Root), "the daemon")
	t.Logf("%d restarts in %v (writes resumed after %v): %d writes succeeded and were found whole, %d failed "+
		"(%d of them stored whole nonetheless), %d reads failed; %d events checked, %d agents, %d violations",
		restarts, time.Since(start).Round(time.Millisecond), outages, l.ok.Load(), l.errs.Load(), storedAfterError,
		l.views.Load(), len(st.recs), len(st.reg.Agents), len(st.reg.Violations))
}
