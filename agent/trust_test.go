package agent_test

import (
	"context"
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

// A runtime with a trust policy applies only events signed by a trusted
// key: a forged grant within the parent's limits, published by a writer
// with publish rights but no trusted key, takes no effect; a runtime
// without the trusted key cannot write at all; a snapshot made without the
// policy is not used by a runtime with it.
func TestTrustedSignersInTheRuntime(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	key, err := nkeys.CreateUser()
	require.NoError(t, err)
	seed, err := key.Seed()
	require.NoError(t, err)
	pub, err := key.PublicKey()
	require.NoError(t, err)

	writer, root := w.openRegistered(agent.WithSigningSeed(seed), agent.WithTrustedSigners(pub))
	tr := buildTree(t, writer, root)
	// A snapshot by a runtime without the policy (it exists in the store).
	plain := w.open()
	_, err = plain.Snapshot(ctx, agent.RootID(w.fp))
	require.NoError(t, err)

	// The forgery: a grant of math cos to the parser (within what its
	// parent holds, beyond what it holds), correctly chained, unsigned,
	// published raw.
	var last *events.Event
	require.NoError(t, inspect.View(ctx, writer, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
		last = &events.Event{ID: "01JFORGED00000000000000000", Type: events.CapabilityGranted, Version: events.SchemaVersion,
			Root: w.fp, Path: tr.parser.Path, Time: 1, Actor: "user:alice", Correlation: "x",
			Prev: reg.LastHash(tr.parser.Path), Granted: &events.GrantedData{Capability: mathCap("cos", "sin", "sqrt")}}
		return nil
	}))
	data, err := events.Encode(last)
	require.NoError(t, err)
	nc := testutil.Connect(t, w.url)
	seq := testutil.PublishRaw(t, nc, events.Subject("agentreg", w.fp, tr.parser.Path), data, nil)

	fresh := w.open(agent.WithTrustedSigners(pub))
	_, err = fresh.RegisterRoot(ctx, w.def)
	require.NoError(t, err)
	for name, rt := range map[string]*agent.Runtime{"writer": writer, "fresh": fresh} {
		require.NoError(t, inspect.View(ctx, rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
			g := reg.Agents[tr.parser.Path].Capabilities[mathCap().Key()]
			require.NotNil(t, g, name)
			require.NotContains(t, g.Capability.Include, "cos", "%s: the forged grant took effect", name)
			var found bool
			for _, v := range reg.Violations {
				if v.Seq == seq {
					require.Equal(t, projector.CodeUnsigned, v.Code, name)
					found = true
				}
			}
			require.True(t, found, "%s: the forgery at seq %d is a violation", name, seq)
			return nil
		}))
	}
	if from, ok := fresh.RestoredFrom(agent.RootID(w.fp)); ok {
		require.Empty(t, from.Trust, "restored from a snapshot of another policy")
		t.Fatalf("restored from snapshot %s made without the trust policy", from.Name())
	}
	// The signed writer's next write applies; an unsigned runtime under the
	// policy is refused before anything is written.
	_, err = writer.Grant(ctx, tr.parser, mathCap("sin"), agent.Replace())
	require.NoError(t, err)
	_, err = fresh.Grant(ctx, tr.parser, mathCap("sin"), agent.Replace())
	require.ErrorIs(t, err, events.ErrUnsigned)
}
