package projector_test

import (
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// Under a trust policy only events signed by a trusted key over their
// stored bytes are applied; unsigned, badly signed and untrusted ones are
// violations with their own codes, and nothing of them takes effect.
func TestTrustPolicy(t *testing.T) {
	trusted, err := nkeys.CreateUser()
	require.NoError(t, err)
	stranger, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, err := trusted.PublicKey()
	require.NoError(t, err)
	policy, err := projector.NewTrust([]string{pub})
	require.NoError(t, err)
	require.NotEmpty(t, policy.ID())

	f := newFold(t)
	f.reg.SetTrust(policy)
	require.Equal(t, policy.ID(), f.reg.TrustID())
	signed := func(e *events.Event, key nkeys.KeyPair) []byte {
		b, err := events.EncodeSigned(e, key)
		require.NoError(t, err)
		return b
	}
	reg := f.event(events.RootRegistered, "")
	reg.Registered = &events.RootData{Def: f.def}
	ok(t, f.publish(f.subject(""), signed(reg, trusted)))

	create := func(path string) *events.Event {
		e := f.event(events.AgentCreated, path)
		e.Created = &events.CreatedData{Primer: "p"}
		return e
	}
	// Unsigned: refused.
	violation(t, f.publish(f.subject("a"), f.encode(create("a"))), projector.CodeUnsigned)
	// Signed by a key the policy does not hold: refused.
	violation(t, f.publish(f.subject("a"), signed(create("a"), stranger)), projector.CodeUntrusted)
	// Signed by the trusted key, then edited: refused.
	b := signed(create("a"), trusted)
	edited := append([]byte(nil), b...)
	for i := range len(edited) - 1 {
		if edited[i] == 0xa1 && edited[i+1] == 'p' { // the primer "p"
			edited[i+1] = 'q'
			break
		}
	}
	violation(t, f.publish(f.subject("a"), edited), projector.CodeBadSignature)
	require.NotContains(t, f.reg.Agents, "a", "nothing of a refused event takes effect")
	// Signed by the trusted key: applied.
	good := signed(create("a"), trusted)
	ok(t, f.publish(f.subject("a"), good))
	require.Contains(t, f.reg.Agents, "a")
	// The same bytes again: the copy of an applied event never chains.
	violation(t, f.publish(f.subject("a"), good), projector.CodeChain)

	// A policy needs valid keys.
	_, err = projector.NewTrust([]string{"not-a-key"})
	require.Error(t, err)
	_, err = projector.NewTrust(nil)
	require.Error(t, err)
}

// A refused event's copy published again later is refused as replayed,
// even when it would now pass every other check (the issue: a replayed
// event applied with its original actor and time).
func TestReplayOfRefusedEvent(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	// A grant to an agent that does not exist yet: refused.
	g := f.event(events.CapabilityGranted, "a")
	g.Prev = ""
	g.Granted = &events.GrantedData{Capability: mathCap([]string{"sin"}, nil)}
	refused := f.encode(g)
	violation(t, f.publish(f.subject("a"), refused), projector.CodeUnknown)
	// The agent is created; the refused grant's bytes would now chain.
	ok(t, f.create("a", ""))
	g2 := *g
	g2.Prev = f.reg.LastHash("a")
	replay := f.encode(&g2) // same id, as a writer re-sending its event
	violation(t, f.publish(f.subject("a"), replay), projector.CodeReplayed)
	require.Empty(t, f.reg.Agents["a"].Capabilities)

	// The ids survive a snapshot.
	body, err := f.reg.Marshal()
	require.NoError(t, err)
	back, err := projector.Unmarshal(body)
	require.NoError(t, err)
	require.Equal(t, f.reg.IDCount(), back.IDCount())
	require.True(t, back.HasID("a", g.ID))
	require.False(t, back.HasID("", g.ID), "remembered on its own subject only")
}

// A pattern grant the parent cannot be shown to cover is refused in a
// version 2 event, and folds as before (bounded at resolve time) in a
// version 1 event: histories written before version 2 keep their meaning.
func TestPatternGrantsByVersion(t *testing.T) {
	for _, version := range []uint64{1, 2} {
		f := newFold(t)
		f.version = version
		ok(t, f.register())
		ok(t, f.create("p", ""))
		ok(t, f.grant("p", mathCap([]string{"sin", "cos"}, nil)))
		if version == 1 {
			ok(t, f.create("p/c", ""))
		} else {
			ok(t, f.apply(func() *events.Event {
				e := f.event(events.AgentCreated, "p/c")
				e.Created = &events.CreatedData{}
				return e
			}()))
		}
		v := f.grant("p/c", mathCap([]string{"s*"}, nil))
		if version == 1 {
			ok(t, v)
			e, found := effective(t, f.reg, "p/c", mathCap(nil, nil).Key())
			require.True(t, found)
			require.True(t, e.Allows("sin"))
			require.False(t, e.Allows("sqrt"), "bounded by the parent when intersected")
		} else {
			violation(t, v, projector.CodeEscalation)
		}
	}
}
