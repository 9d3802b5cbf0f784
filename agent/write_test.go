package agent_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

// A grant beyond what the parent effectively holds is refused before
// anything is written.
func TestEscalationRefusedBeforeWrite(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	tr := buildTree(t, rt, root)
	l := w.log()
	seq := lastRootSeq(t, l, w.fp)
	require.NotZero(t, seq)

	for _, tc := range []struct {
		name    string
		do      func() error
		created string // path that must not exist afterwards
		names   string // what the message must name
	}{
		{"CreateWithCapabilityParentLacks", func() error {
			_, _, err := rt.Create(ctx, tr.solver, agent.Spec{Name: "builder",
				Capabilities: []events.Capability{{Kind: events.KindType, Name: "Agent"}}})
			return err
		}, "math_solver/builder", `"Agent"`},
		{"CreateWithMemberParentExcludes", func() error {
			_, _, err := rt.Create(ctx, tr.solver, agent.Spec{Name: "trig",
				Capabilities: []events.Capability{mathCap("sin", "tan")}, Tasks: []events.TaskDef{solveTask()}})
			return err
		}, "math_solver/trig", "tan"},
		{"CreateWithFuncRootLacks", func() error {
			// eval is in the catalog but not held by the root.
			_, _, err := rt.Create(ctx, root, agent.Spec{Name: "evaluator",
				Capabilities: []events.Capability{{Kind: events.KindFunc, Name: "eval"}}})
			return err
		}, "evaluator", `"eval"`},
		{"GrantCapabilityParentLacks", func() error {
			return errOf(rt.Grant(ctx, tr.parser, events.Capability{Kind: events.KindType, Name: "Agent"}))
		}, "", `"Agent"`},
		{"GrantMemberParentExcludes", func() error {
			// math_solver holds sin cos pi sqrt, not tan.
			return errOf(rt.Grant(ctx, tr.parser, mathCap("sqrt", "tan")))
		}, "", "tan"},
		{"GrantPrivateMemberRootExcludes", func() error {
			// The root's math excludes _* by default.
			return errOf(rt.Grant(ctx, tr.solver, mathCap("_helper")))
		}, "", "_helper"},
		{"GrantPrivateMemberWithEmptyExclude", func() error {
			// Dropping the default exclude does not widen what the root holds.
			c := mathCap("_helper")
			c.Exclude = []string{}
			return errOf(rt.Grant(ctx, tr.solver, c))
		}, "", "_helper"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			require.ErrorIs(t, err, agent.ErrEscalation)
			require.ErrorContains(t, err, tc.names)
			require.Equal(t, seq, lastRootSeq(t, l, w.fp), "the refused write moved the root's stream")
			if tc.created != "" {
				require.NoError(t, inspect.View(ctx, rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
					require.NotContains(t, reg.Agents, tc.created)
					return nil
				}))
			}
		})
	}

	// What the parent holds is still grantable; a pattern the parent's
	// list of members does not provably cover is refused.
	require.ErrorIs(t, errOf(rt.Grant(ctx, tr.parser, mathCap("*"))), events.ErrEscalation)
	require.NoError(t, errOf(rt.Grant(ctx, tr.parser, mathCap("cos", "pi", "sin", "sqrt"), agent.Replace())))
	task, err := rt.Resolve(ctx, tr.parseRef)
	require.NoError(t, err)
	require.Equal(t, []string{"cos", "pi", "sin", "sqrt"}, memberNames(t, task, events.KindModule, "math"))
	require.Greater(t, lastRootSeq(t, l, w.fp), seq)
}

// Names that cannot be subjects, look-alikes and malformed refs are
// refused with ErrInvalidName naming the offender, and nothing is written.
func TestInvalidNamesRefused(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	l := w.log()
	seq := lastRootSeq(t, l, w.fp)

	long := strings.Repeat("a", events.MaxSegmentLen+1)
	for _, tc := range []struct {
		name, offender string
	}{
		{"a.b", "a.b"},
		{"*", "*"},
		{">", ">"},
		{"with space", "with space"},
		{"", "empty"},
		{long, long},
		{"math_sоlver", "math_sоlver"}, // Cyrillic о (U+043E)
		{"архитектор", "архитектор"},
		{"a/b", "a/b"},
		{"tab\there", `tab\there`},
	} {
		t.Run("Create/"+tc.name, func(t *testing.T) {
			_, _, err := rt.Create(ctx, root, agent.Spec{Name: tc.name, Primer: "p"})
			require.ErrorIs(t, err, agent.ErrInvalidName)
			require.ErrorContains(t, err, tc.offender)
		})
	}
	// At exactly the limit a segment is fine.
	_, _, err := rt.Create(ctx, root, agent.Spec{Name: strings.Repeat("a", events.MaxSegmentLen)})
	require.NoError(t, err)
	seq++
	require.Equal(t, seq, lastRootSeq(t, l, w.fp), "a refused Create wrote something")

	t.Run("AgentRef", func(t *testing.T) {
		_, err := rt.Grant(ctx, agent.AgentRef{Root: agent.RootID(w.fp), Path: "x.y"}, mathCap("sin"))
		require.ErrorIs(t, err, agent.ErrInvalidName)
		require.ErrorContains(t, err, "x.y")
		_, _, err = rt.DefineTask(ctx, agent.AgentRef{Root: agent.RootID(w.fp), Path: "a//b"}, solveTask())
		require.ErrorIs(t, err, agent.ErrInvalidName)
		require.ErrorContains(t, err, "a//b")
		_, err = rt.Retire(ctx, agent.AgentRef{Root: "ABC", Path: "x"}, "r")
		require.ErrorIs(t, err, agent.ErrInvalidName)
		require.ErrorContains(t, err, "ABC")
		require.Equal(t, seq, lastRootSeq(t, l, w.fp))
	})

	fp := w.fp
	upper := strings.ToUpper(fp)
	for _, tc := range []struct {
		ref, offender string
	}{
		{"", `""`},
		{"no-slash-at-all", "no-slash-at-all"},
		{fp + "/math_solver", "math_solver"},
		{"short/math_solver#solve", "short"},
		{upper + "/math_solver#solve", upper},
		{fp + "/a.b#solve", "a.b"},
		{fp + "/a//b#solve", "a//b"},
		{fp + "/math_solver/#solve", "math_solver/"},
		{fp + "/math_solver#", "task name"},
		{fp + "/math_solver#bad task", "bad task"},
		{fp + "/math_solver#a.b", "a.b"},
		{fp + "/math_sоlver#solve", "math_sоlver"}, // Cyrillic о
		{fp + "/*#solve", "*"},
		{fp + "/>#solve", ">"},
	} {
		t.Run("ParseTaskRef/"+tc.ref, func(t *testing.T) {
			_, err := agent.ParseTaskRef(tc.ref)
			require.ErrorIs(t, err, agent.ErrInvalidName)
			require.ErrorContains(t, err, tc.offender)
			var r agent.TaskRef
			require.ErrorIs(t, r.UnmarshalText([]byte(tc.ref)), agent.ErrInvalidName)
			require.Equal(t, agent.TaskRef{}, r, "a failed UnmarshalText changed the ref")
		})
	}
}

// Eight processes race to create the same agent: exactly one wins, the
// others get ErrExists, and the log holds one AgentCreated for it.
func TestCreateRace(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	const n = 8
	rts := make([]*agent.Runtime, n)
	for i := range rts {
		rts[i] = w.open(agent.WithDefaultActor("racer-" + string(rune('a'+i))))
	}
	root := agent.AgentRef{Root: agent.RootID(w.fp)}

	// countEvents counts the events of a type at a path in the log.
	countEvents := func(typ events.Type, path string) int {
		t.Helper()
		n := 0
		_, err := w.log().ReadRoot(ctx, w.fp, 1, func(r events.Record) error {
			e, err := events.Decode(r.Data)
			require.NoError(t, err)
			if e.Type == typ && e.Path == path {
				n++
			}
			return nil
		})
		require.NoError(t, err)
		return n
	}

	// All register the root at once: every one succeeds, one event is written.
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, rt := range rts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = rt.RegisterRoot(ctx, w.def)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "runtime %d", i)
	}
	require.Equal(t, 1, countEvents(events.RootRegistered, ""))

	for _, tc := range []struct {
		name string
		spec agent.Spec // single event (plain publish) or several (atomic batch)
	}{
		{"Single", agent.Spec{Name: "solo", Primer: "p"}},
		{"Batch", agent.Spec{Name: "math_solver", Primer: "p",
			Capabilities: []events.Capability{mathCap("sin")}, Tasks: []events.TaskDef{solveTask()}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := make(chan struct{})
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i, rt := range rts {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, _, errs[i] = rt.Create(ctx, root, tc.spec)
				}()
			}
			close(start)
			wg.Wait()

			won := -1
			for i, err := range errs {
				if err == nil {
					require.Equal(t, -1, won, "runtimes %d and %d both created %q", won, i, tc.spec.Name)
					won = i
					continue
				}
				require.ErrorIs(t, err, agent.ErrExists, "runtime %d", i)
				require.ErrorContains(t, err, tc.spec.Name)
			}
			require.NotEqual(t, -1, won, "no runtime created %q: %v", tc.spec.Name, errs)

			require.Equal(t, 1, countEvents(events.AgentCreated, tc.spec.Name), "the log holds more than one AgentCreated")

			// Every runtime agrees on the winner and sees no violation.
			for i, rt := range rts {
				require.NoError(t, inspect.View(ctx, rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
					a := reg.Agents[tc.spec.Name]
					require.NotNil(t, a, "runtime %d", i)
					require.Equal(t, "racer-"+string(rune('a'+won)), a.Creator, "runtime %d", i)
					require.Len(t, a.Capabilities, len(tc.spec.Capabilities))
					require.Len(t, a.Tasks, len(tc.spec.Tasks))
					require.Empty(t, reg.Violations, "runtime %d", i)
					return nil
				}))
			}
		})
	}
}

// An append retried with the same message (as after a lost ack) is stored
// once, and the fold sees one agent and no violation.
func TestRetriedAppendStoredOnce(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	_, _ = w.openRegistered()
	l := w.log()

	encode := func(e *events.Event) []byte {
		t.Helper()
		e.ID, e.Version, e.Root, e.Time, e.Actor, e.Correlation =
			ulid.Make().String(), events.SchemaVersion, w.fp, time.Now().UnixNano(), "test", "corr"
		b, err := events.Encode(e)
		require.NoError(t, err)
		return b
	}
	message := func(e *events.Event, expect *uint64) events.Message {
		return events.Message{Subject: events.Subject("agentreg", w.fp, e.Path), Data: encode(e), ID: e.ID, Type: e.Type, ExpectSeq: expect}
	}
	zero := uint64(0)
	appendTwice := func(msgs []events.Message) {
		t.Helper()
		s1, err := l.Append(ctx, msgs)
		require.NoError(t, err)
		s2, err := l.Append(ctx, msgs)
		require.NoError(t, err, "retry of a stored append")
		require.Equal(t, s1, s2)
	}

	// With an expected sequence (the server checks it before dedupe).
	appendTwice([]events.Message{message(&events.Event{Type: events.AgentCreated, Path: "with_expect",
		Created: &events.CreatedData{Primer: "p"}}, &zero)})
	// Without one (plain dedupe by message id).
	appendTwice([]events.Message{message(&events.Event{Type: events.AgentCreated, Path: "no_expect",
		Created: &events.CreatedData{Primer: "p"}}, nil)})
	// An atomic batch: created, then a grant chained to it.
	created := message(&events.Event{Type: events.AgentCreated, Path: "batched", Created: &events.CreatedData{Primer: "p"}}, &zero)
	grant := &events.Event{Type: events.CapabilityGranted, Path: "batched",
		Granted: &events.GrantedData{Capability: mathCap("sin").Normalized()}}
	grant.Prev = events.Hash(created.Data)
	appendTwice([]events.Message{created, message(grant, nil)})

	// RootRegistered + 3 created + 1 grant.
	n := 0
	_, err := l.ReadRoot(ctx, w.fp, 1, func(events.Record) error { n++; return nil })
	require.NoError(t, err)
	require.Equal(t, 5, n)

	rt, _ := w.openRegistered()
	require.NoError(t, inspect.View(ctx, rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
		require.Equal(t, []string{"batched", "no_expect", "with_expect"}, reg.Paths())
		require.Empty(t, reg.Violations)
		require.Equal(t, uint64(5), reg.Count)
		require.Contains(t, reg.Agents["batched"].Capabilities, "module:math")
		return nil
	}))
	// The runtime writes on top of the retried events.
	_, _, err = rt.DefineTask(ctx, agent.AgentRef{Root: agent.RootID(w.fp), Path: "batched"}, solveTask())
	require.NoError(t, err)
}

// Bytes that are not events, published straight onto a root's subjects,
// become violations; every ref still resolves and writes still succeed.
func TestUndecodableBytesOnRootSubjects(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt1, root := w.openRegistered()
	tr := buildTree(t, rt1, root)
	refs := []agent.TaskRef{tr.rootTask, tr.solveRef, tr.parseRef}
	for _, ref := range refs {
		_, err := rt1.Resolve(ctx, ref) // fill the cache before the garbage
		require.NoError(t, err)
	}

	nc := testutil.Connect(t, w.url)
	garbage := map[uint64]string{
		testutil.PublishRaw(t, nc, events.Subject("agentreg", w.fp, "math_solver"), []byte("\xc1\x00not msgpack"), nil): "agentreg." + w.fp + ".math_solver",
		testutil.PublishRaw(t, nc, events.Subject("agentreg", w.fp, ""), []byte(`{"type":"RootMigrated"}`), nil):        "agentreg." + w.fp,
		testutil.PublishRaw(t, nc, events.Subject("agentreg", w.fp, "math_solver"), nil, nil):                           "agentreg." + w.fp + ".math_solver",
	}

	rt2, _ := w.openRegistered()
	for name, rt := range map[string]*agent.Runtime{"cached": rt1, "fresh": rt2} {
		t.Run(name, func(t *testing.T) {
			for _, ref := range refs {
				task, err := rt.Resolve(ctx, ref)
				require.NoError(t, err, "%s", ref)
				require.Equal(t, ref, task.Ref)
			}
			require.NoError(t, inspect.View(ctx, rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
				got := map[uint64]string{}
				for _, v := range reg.Violations {
					require.Equal(t, projector.CodeMalformed, v.Code, "violation at seq %d: %s", v.Seq, v.Reason)
					got[v.Seq] = v.Subject
				}
				require.Equal(t, garbage, got)
				return nil
			}))
		})
	}

	// Writes after the garbage: the expected subject sequence counts the
	// undecodable message, in the runtime that saw it arrive and in a fresh one.
	_, _, err := rt1.DefineTask(ctx, tr.solver, parseTask())
	require.NoError(t, err)
	_, _, err = rt2.Create(ctx, tr.solver, agent.Spec{Name: "checker", Capabilities: []events.Capability{mathCap("pi")}})
	require.NoError(t, err)
	require.NoError(t, errOf(rt2.Grant(ctx, tr.solver, events.Capability{Kind: events.KindType, Name: "Agent"})))

	// And on the root's own subject: migrating writes RootMigrated there.
	v2 := w.def
	v2.Primer = "release 2"
	v2fp := v2.Fingerprint()
	_, err = rt2.RegisterRoot(ctx, v2)
	require.NoError(t, err)
	require.NoError(t, errOf(rt2.MigrateRoot(ctx, agent.RootID(w.fp), agent.RootID(v2fp), "after garbage")))

	require.NoError(t, inspect.View(ctx, rt1, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
		require.Equal(t, v2fp, reg.MigratedTo)
		require.Len(t, reg.Violations, len(garbage), "a write after the garbage was not applied")
		require.Contains(t, reg.Agents["math_solver"].Tasks, "parse_equation")
		require.Contains(t, reg.Agents["math_solver"].Capabilities, "type:Agent")
		require.Contains(t, reg.Agents, "math_solver/checker")
		return nil
	}))
}

var _ agent.Log = (*natsstore.Log)(nil)
