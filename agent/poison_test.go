package agent_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

// TestPoisonMessages: bytes that are not a valid event, published by another
// program on the stream's subjects, are each a recorded violation with its
// sequence; none stops the fold, a resolve of another agent, or a later
// write. Escalations written straight to the stream (also after an
// ancestor's revocation) are never effective.
func TestPoisonMessages(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	tr := buildTree(t, rt, root)
	nc := testutil.Connect(t, w.url)
	subj := func(path string) string { return events.Subject("agentreg", w.fp, path) }
	lastHash := func(path string) (h string) {
		require.NoError(t, inspect.View(ctx, rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error { h = reg.LastHash(path); return nil }))
		return h
	}
	raw := func(e *events.Event) []byte {
		e.ID, e.Root, e.Time, e.Actor = ulid.Make().String(), w.fp, 1, "mallory"
		if e.Version == 0 {
			e.Version = events.SchemaVersion
		}
		b, err := msgpack.Marshal(e) // not events.Encode: it refuses what it would not write
		require.NoError(t, err)
		return b
	}
	grant := func(path string, c events.Capability) *events.Event {
		return &events.Event{Type: events.CapabilityGranted, Path: path, Prev: lastHash(path), Granted: &events.GrantedData{Capability: c}}
	}

	future := grant(tr.parser.Path, mathCap("sin"))
	future.Version = events.SchemaVersion + 1
	futureBytes := raw(future)
	unknown := grant(tr.parser.Path, mathCap("sin"))
	unknown.Type = "Teleported"
	wrongSubject := raw(grant(tr.solver.Path, mathCap("sin"))) // the solver's event, on the parser's subject
	escalation := raw(grant(tr.parser.Path, mathCap("tan")))   // the solver does not hold tan

	cases := []struct {
		name, subject string
		data          []byte
		code          string
	}{
		{"garbage", subj(tr.parser.Path), []byte("\xc1 not msgpack"), projector.CodeMalformed},
		{"empty", subj(tr.parser.Path), []byte{}, projector.CodeMalformed},
		{"huge", subj(tr.solver.Path), bytes.Repeat([]byte{0x91}, 512<<10), projector.CodeMalformed},
		{"unknown type", subj(tr.parser.Path), raw(unknown), projector.CodeUnknownType},
		{"future version", subj(tr.parser.Path), futureBytes, projector.CodeFutureVersion},
		{"wrong subject", subj(tr.parser.Path), wrongSubject, projector.CodeWrongSubject},
		{"escalation", subj(tr.parser.Path), escalation, projector.CodeEscalation},
		{"root subject garbage", subj(""), []byte{0x80}, projector.CodeMalformed},
	}
	want := map[uint64]string{}
	for _, c := range cases {
		seq := testutil.PublishRaw(t, nc, c.subject, c.data, nil)
		want[seq] = c.code
	}

	// Revoke math from the solver, then write a raw grant of math to the
	// parser with the right hash chain: an escalation through revocation.
	require.NoError(t, errOf(rt.Revoke(ctx, tr.solver, events.KindModule, "math")))
	afterRevoke := testutil.PublishRaw(t, nc, subj(tr.parser.Path), raw(grant(tr.parser.Path, mathCap("sin"))), nil)
	want[afterRevoke] = projector.CodeEscalation

	// A fresh runtime folds everything: each poison message is a violation
	// with its code, and nothing of it took effect.
	fresh := w.open()
	_, err := fresh.RegisterRoot(ctx, w.def)
	require.NoError(t, err)
	require.NoError(t, inspect.View(ctx, fresh, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
		got := map[uint64]string{}
		for _, v := range reg.Violations {
			got[v.Seq] = v.Code
		}
		require.Equal(t, want, got)
		require.NotContains(t, reg.Agents[tr.parser.Path].Capabilities, "module:math", "revoked from the parent, so from the child; the raw re-grant did nothing")
		eff, err := reg.Effective(tr.parser.Path)
		require.NoError(t, err)
		for _, e := range eff {
			require.False(t, e.Allows("tan"), "escalation took effect: %+v", e)
		}
		return nil
	}))

	// Resolution of other agents and later writes go on.
	task, err := fresh.Resolve(ctx, tr.rootTask)
	require.NoError(t, err)
	require.Equal(t, "create_specialist", task.Def.Name)
	_, err = fresh.Resolve(ctx, tr.parseRef)
	require.NoError(t, err)
	_, _, err = rt.DefineTask(ctx, tr.parser, solveTask())
	require.NoError(t, err, "the parser's own subject took poison; writes to it go on")
	_, _, err = rt.Create(ctx, root, agent.Spec{Name: "after_poison"})
	require.NoError(t, err)
}
