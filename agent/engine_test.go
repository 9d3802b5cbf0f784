package agent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

// subjectEvents returns the ids and types of the events stored on one
// agent's subject, in stream order.
func subjectEvents(t *testing.T, l *natsstore.Log, root, path string) []*events.Event {
	t.Helper()
	var out []*events.Event
	require.NoError(t, l.ReadLiteral(context.Background(), []string{events.Subject("agentreg", root, path)}, func(r events.Record) error {
		e, err := events.Decode(r.Data)
		require.NoError(t, err)
		out = append(out, e)
		return nil
	}))
	return out
}

func countType(evs []*events.Event, typ events.Type) int {
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// A write retried with the same idempotency key, after another write to
// the agent and after the server's dedupe window, from the same process
// and from another one, returns the original receipt and stores nothing
// twice: on a single server and on a 3-node cluster.
func TestIdempotentRetryAfterDedupeWindow(t *testing.T) {
	const window = 300 * time.Millisecond
	run := func(t *testing.T, url string, replicas int) {
		ctx := context.Background()
		open := func(follow bool) *agent.Runtime {
			rt, err := agent.Open(ctx, agent.WithNATSURL(url), agent.WithReplicas(replicas),
				agent.WithStream(natsstore.Config{Duplicates: window, Replicas: replicas}), agent.WithFollow(follow),
				agent.WithCatalog(newCatalog(t, true)), agent.WithLogger(testLogger(t)))
			require.NoError(t, err)
			t.Cleanup(func() { _ = rt.Close() })
			return rt
		}
		// rt1 follows the log; rt2 does not (its writes read the chain).
		rt1, rt2 := open(true), open(false)
		root, err := rt1.RegisterRoot(ctx, architectDef())
		require.NoError(t, err)
		_, err = rt2.RegisterRoot(ctx, architectDef())
		require.NoError(t, err)
		nc := testutil.Connect(t, url)
		l, err := natsstore.ExistingLog(ctx, nc, natsstore.Config{})
		require.NoError(t, err)

		createKey := agent.WithIdempotencyKey(ctx, "create-solver-1")
		spec := agent.Spec{Name: "solver", Primer: "p", Capabilities: []events.Capability{mathCap("sin", "cos")}, Tasks: []events.TaskDef{solveTask()}}
		solver, rc, err := rt1.Create(createKey, root, spec)
		require.NoError(t, err)
		require.False(t, rc.Replayed)

		grantKey := agent.WithIdempotencyKey(ctx, "grant-agent-1")
		grc, err := rt1.Grant(grantKey, solver, events.Capability{Kind: events.KindType, Name: "Agent"})
		require.NoError(t, err)
		require.Greater(t, grc.Seq, rc.Seq)

		// Another write to the subject, then past the dedupe window.
		_, _, err = rt2.DefineTask(agent.WithMinSeq(ctx, grc.Seq), solver, parseTask())
		require.NoError(t, err)
		time.Sleep(2 * window)

		for name, rt := range map[string]*agent.Runtime{"SameProcess": rt1, "OtherProcessNotFollowing": rt2} {
			t.Run(name, func(t *testing.T) {
				got, again, err := rt.Create(createKey, root, spec)
				require.NoError(t, err, "a retried create must not report ErrExists for its own stored write")
				require.Equal(t, solver, got)
				require.Equal(t, agent.Receipt{Seq: rc.Seq, Replayed: true}, again)

				gagain, err := rt.Grant(grantKey, solver, events.Capability{Kind: events.KindType, Name: "Agent"})
				require.NoError(t, err)
				require.Equal(t, agent.Receipt{Seq: grc.Seq, Replayed: true}, gagain)
			})
		}
		evs := subjectEvents(t, l, string(root.Root), "solver")
		require.Equal(t, 1, countType(evs, events.AgentCreated), "the create is stored once")
		require.Equal(t, 1, countType(evs, events.CapabilityGranted), "the grant is stored once")
		require.Len(t, evs, 3)

		// A new key is a new write: stored, applied.
		rc3, err := rt2.Grant(agent.WithIdempotencyKey(ctx, "grant-agent-2"), solver, events.Capability{Kind: events.KindType, Name: "Agent"}, agent.Replace())
		require.NoError(t, err)
		require.False(t, rc3.Replayed)
		require.Len(t, subjectEvents(t, l, string(root.Root), "solver"), 4)
	}
	t.Run("Standalone", func(t *testing.T) {
		run(t, testutil.RunServer(t).ClientURL(), 1)
	})
	t.Run("Cluster", func(t *testing.T) {
		run(t, testutil.ClusterURL(testutil.RunCluster(t, 3)), 3)
	})
}

// Creation is one event: when the parent is narrowed between the check
// and the append, the create is refused whole (no agent, no grant), its
// error says it conflicted, and asking again is refused before anything is
// written, never ErrExists for a half-made agent. Retried with the same
// key, the original refusal comes back; with a spec the parent allows, it
// succeeds.
func TestCreateRefusedWholeWhenParentNarrowed(t *testing.T) {
	for _, follow := range []bool{true, false} {
		t.Run(fmt.Sprintf("follow=%t", follow), func(t *testing.T) { testCreateRefusedWhole(t, follow) })
	}
}

func testCreateRefusedWhole(t *testing.T, follow bool) {
	ctx := context.Background()
	w := newWorld(t)
	other, root := w.openRegistered()
	tr := buildTree(t, other, root)

	rt, hl := openHooked(t, w, agent.WithFollow(follow))

	spec := agent.Spec{Name: "trig", Primer: "p", Capabilities: []events.Capability{mathCap("sin")}, Tasks: []events.TaskDef{solveTask()}}
	key := agent.WithIdempotencyKey(ctx, "create-trig")
	hl.before = func() { require.NoError(t, errOf(other.Revoke(ctx, tr.solver, events.KindModule, "math"))) }
	_, rc, err := rt.Create(key, tr.solver, spec)
	require.ErrorIs(t, err, agent.ErrConflict)
	require.ErrorIs(t, err, agent.ErrEscalation)
	require.NotZero(t, rc.Seq, "the refused event is stored; its sequence is reported")
	require.NoError(t, inspect.View(ctx, rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
		require.NotContains(t, reg.Agents, "math_solver/trig", "nothing of the agent is created")
		return nil
	}))

	_, _, err = rt.Create(key, tr.solver, spec)
	require.ErrorIs(t, err, agent.ErrEscalation, "the same key returns the original refusal")
	require.NotErrorIs(t, err, agent.ErrExists)

	seq := lastRootSeq(t, hl.Log, w.fp)
	_, _, err = rt.Create(ctx, tr.solver, spec)
	require.ErrorIs(t, err, agent.ErrEscalation)
	require.NotErrorIs(t, err, agent.ErrExists)
	require.Equal(t, seq, lastRootSeq(t, hl.Log, w.fp), "refused before writing")

	spec.Capabilities = nil
	trig, _, err := rt.Create(ctx, tr.solver, spec)
	require.NoError(t, err)
	require.Equal(t, "math_solver/trig", trig.Path)
}

// A grant checked against the parent and racing the parent's revoke
// conflicts: the caller is told, and the grant does not take effect.
func TestGrantRacingParentRevokeConflicts(t *testing.T) {
	for _, follow := range []bool{true, false} {
		t.Run(fmt.Sprintf("follow=%t", follow), func(t *testing.T) { testGrantRacing(t, follow) })
	}
}

func testGrantRacing(t *testing.T, follow bool) {
	ctx := context.Background()
	w := newWorld(t)
	other, root := w.openRegistered()
	tr := buildTree(t, other, root)
	rt, hl := openHooked(t, w, agent.WithFollow(follow))
	// Load the root in this runtime before the race.
	require.NoError(t, inspect.View(ctx, rt, string(agent.RootID(w.fp)), func(*projector.Registry) error { return nil }))

	hl.before = func() { require.NoError(t, errOf(other.Revoke(ctx, tr.solver, events.KindModule, "math"))) }
	_, err := rt.Grant(ctx, tr.parser, mathCap("sin"), agent.Replace())
	require.ErrorIs(t, err, agent.ErrConflict)
	task, err := other.Resolve(agent.WithMinSeq(ctx, agent.LatestSeq), tr.parseRef)
	require.NoError(t, err)
	require.Nil(t, memberNames(t, task, events.KindModule, "math"))
}

// A write acknowledged through one node of a 3-node cluster is seen by a
// read through a runtime on another node that asks for its receipt: warm
// (the root loaded there) and cold (only the chain read).
func TestReadYourWritesAcrossRuntimesOnCluster(t *testing.T) {
	ctx := context.Background()
	srvs := testutil.RunCluster(t, 3)
	open := func(url string) *agent.Runtime {
		rt, err := agent.Open(ctx, agent.WithNATSURL(url), agent.WithReplicas(3),
			agent.WithCatalog(newCatalog(t, true)), agent.WithLogger(testLogger(t)))
		require.NoError(t, err)
		t.Cleanup(func() { _ = rt.Close() })
		_, err = rt.RegisterRoot(ctx, architectDef())
		require.NoError(t, err)
		return rt
	}
	writer, warm := open(srvs[0].ClientURL()), open(srvs[1].ClientURL())
	root := agent.AgentRef{Root: agent.RootID(architectDef().Fingerprint())}
	solver, _, err := writer.Create(ctx, root, agent.Spec{Name: "solver", Capabilities: []events.Capability{mathCap("sin")}})
	require.NoError(t, err)
	require.NoError(t, inspect.View(ctx, warm, string(root.Root), func(*projector.Registry) error { return nil }))

	for i := range 40 {
		td := solveTask()
		td.Name = fmt.Sprintf("task_%d", i)
		ref, rc, err := writer.DefineTask(ctx, solver, td)
		require.NoError(t, err)
		rctx := agent.WithMinSeq(ctx, rc.Seq)
		_, err = warm.Resolve(rctx, ref)
		require.NoError(t, err, "warm read %d after seq %d", i, rc.Seq)
		cold := open(srvs[2].ClientURL())
		_, err = cold.Resolve(rctx, ref)
		require.NoError(t, err, "cold read %d after seq %d", i, rc.Seq)
		require.NoError(t, cold.Close())
	}
}

// Two processes make the same keyed write at once (a client resends to a
// second process while the first is still storing it): the second finds
// the first's copy when its append conflicts, reports it as replayed, and
// folds the stored event, not its own bytes: both registries agree, and
// the next write through the second is applied everywhere.
func TestKeyedWriteRacingItsRetry(t *testing.T) {
	for _, follow := range []bool{true, false} {
		t.Run(fmt.Sprintf("follow=%t", follow), func(t *testing.T) {
			ctx := context.Background()
			w := newWorld(t)
			other, root := w.openRegistered(agent.WithDefaultActor("A"))
			tr := buildTree(t, other, root)
			hl := &hookLog{Log: w.log()}
			rt, err := agent.Open(ctx, agent.WithLog(hl, nil), agent.WithCatalog(newCatalog(t, true)), agent.WithLogger(testLogger(t)),
				agent.WithFollow(follow), agent.WithDefaultActor("B"))
			require.NoError(t, err)
			t.Cleanup(func() { _ = rt.Close() })
			_, err = rt.RegisterRoot(ctx, w.def)
			require.NoError(t, err)
			if follow {
				require.NoError(t, inspect.View(ctx, rt, string(agent.RootID(w.fp)), func(*projector.Registry) error { return nil }))
			}
			key := agent.WithIdempotencyKey(ctx, "grant-cos")
			var first agent.Receipt
			hl.before = func() {
				first, err = other.Grant(key, tr.parser, mathCap("sin"), agent.Replace())
				require.NoError(t, err)
			}
			second, err := rt.Grant(key, tr.parser, mathCap("sin"), agent.Replace())
			require.NoError(t, err)
			require.Equal(t, agent.Receipt{Seq: first.Seq, Replayed: true}, second)

			latest := agent.WithMinSeq(ctx, agent.LatestSeq)
			wantHash, _, err := other.StateHash(latest, agent.RootID(w.fp))
			require.NoError(t, err)
			if follow {
				gotHash, _, err := rt.StateHash(latest, agent.RootID(w.fp))
				require.NoError(t, err)
				require.Equal(t, wantHash, gotHash, "the second process folded its own bytes, not the stored event")
			}
			next, err := rt.Grant(ctx, tr.parser, mathCap("sin"), agent.Replace())
			require.NoError(t, err)
			require.NoError(t, inspect.View(agent.WithMinSeq(ctx, next.Seq), other, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
				require.Empty(t, reg.Violations, "the next write through the second process is applied everywhere")
				return nil
			}))
		})
	}
}

// A fresh process loading a root on a 3-node cluster right after a write
// through another node holds the write: the load's tail comes from the
// follower (which has every record, in order), not only from direct gets
// that a lagging replica may answer.
func TestLoadRightAfterWriteOnCluster(t *testing.T) {
	ctx := context.Background()
	srvs := testutil.RunCluster(t, 3)
	open := func(url string) *agent.Runtime {
		rt, err := agent.Open(ctx, agent.WithNATSURL(url), agent.WithReplicas(3),
			agent.WithCatalog(newCatalog(t, true)), agent.WithLogger(testLogger(t)))
		require.NoError(t, err)
		t.Cleanup(func() { _ = rt.Close() })
		return rt
	}
	writer := open(srvs[0].ClientURL())
	root, err := writer.RegisterRoot(ctx, architectDef())
	require.NoError(t, err)
	for i := range 30 {
		a, _, err := writer.Create(ctx, root, agent.Spec{Name: fmt.Sprintf("a%d", i)})
		require.NoError(t, err)
		reader := open(srvs[1+i%2].ClientURL())
		// No minimum sequence: the load alone must hold every write the
		// stream had when it started.
		require.NoError(t, inspect.View(agent.WithMinSeq(ctx, 0), reader, string(root.Root), func(reg *projector.Registry) error {
			require.Contains(t, reg.Agents, a.Path, "load %d on node %d", i, 1+i%2)
			require.Len(t, reg.Agents, i+1)
			return nil
		}))
		require.NoError(t, reader.Close())
	}
}
