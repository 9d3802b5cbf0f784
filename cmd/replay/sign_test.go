package main

import (
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

// TestAuditSignatures: a history written by a signing runtime audits clean
// with its key allowed; other keys' events are reported with an allow-list;
// an event edited after signing (republished with its old signature) is a
// bad signature, also when the edit is to a grant a creation carries;
// unsigned events are counted, not failed.
func TestAuditSignatures(t *testing.T) {
	ctx := agent.WithActor(t.Context(), "user:alice")
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	alice, err := nkeys.CreateUser()
	require.NoError(t, err)
	aliceSeed, _ := alice.Seed()
	alicePub, _ := alice.PublicKey()
	bob, err := nkeys.CreateUser()
	require.NoError(t, err)
	bobSeed, _ := bob.Seed()
	bobPub, _ := bob.PublicKey()

	open := func(opts ...agent.Option) *agent.Runtime {
		rt, err := agent.Open(ctx, append(append(runtimeOptions(t), agent.WithNATSURL(url)), opts...)...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = rt.Close() })
		return rt
	}
	signed := open(agent.WithSigningSeed(aliceSeed))
	root, err := signed.RegisterRoot(ctx, architect())
	require.NoError(t, err)
	solver, _, err := signed.Create(ctx, root, agent.Spec{Name: "math_solver", Capabilities: []events.Capability{mathCap("sin", "cos")}})
	require.NoError(t, err)

	rep := decode[auditReport](t, replayOK(t, "audit", "--nats-url", url, "--json", "--signers", alicePub))
	require.True(t, rep.Clean, "%+v", rep.Problems)
	require.Equal(t, 2, rep.Signed) // root, create (carrying the grant)
	require.Equal(t, 0, rep.Unsigned)
	require.Equal(t, 2, rep.Events)
	require.Equal(t, []string{alicePub}, rep.Signers)

	// Bob signs a grant; an unsigned runtime defines a task.
	bobRT := open(agent.WithSigningSeed(bobSeed))
	_, err = bobRT.RegisterRoot(ctx, architect())
	require.NoError(t, err)
	require.NoError(t, errOf(bobRT.Grant(ctx, solver, agentCap)))
	plain := open()
	_, err = plain.RegisterRoot(ctx, architect())
	require.NoError(t, err)
	_, _, err = plain.DefineTask(ctx, solver, task("solve", "equation", events.Schema{Type: "string"}))
	require.NoError(t, err)

	_, _, err = replay(t, "audit", "--nats-url", url, "--json", "--signers", alicePub)
	require.ErrorIs(t, err, errProblems)
	rep = decode[auditReport](t, func() string {
		out, _, _ := replay(t, "audit", "--nats-url", url, "--json", "--signers", alicePub)
		return out
	}())
	require.Equal(t, 1, rep.Counts["unknown_signer"], "%+v", rep.Problems)
	require.Equal(t, 1, rep.Unsigned)
	require.Equal(t, 3, rep.Signed)
	// Without an allow-list, two signers and one unsigned event: clean.
	rep = decode[auditReport](t, replayOK(t, "audit", "--nats-url", url, "--json"))
	require.True(t, rep.Clean, "%+v", rep.Problems)
	require.ElementsMatch(t, []string{alicePub, bobPub}, rep.Signers)
	text := replayOK(t, "audit", "--nats-url", url)
	require.Contains(t, text, "signatures: 3 event(s) signed by 2 key(s), 1 unsigned")

	// Edit the grant Alice's creation carries after signing: same
	// signature, wider include.
	nc := testutil.Connect(t, url)
	var created *events.Event
	l, err := natsstore.ExistingLog(ctx, nc, natsstore.Config{})
	require.NoError(t, err)
	_, err = l.ReadRoot(ctx, string(root.Root), 1, func(r events.Record) error {
		if e, err := events.Decode(r.Data); err == nil && e.Type == events.AgentCreated && e.Signer == alicePub {
			created = e
		}
		return nil
	})
	require.NoError(t, err)
	require.NotNil(t, created)
	require.Equal(t, events.SchemaVersion, created.Version)
	require.NoError(t, events.VerifySignature(created))
	require.Len(t, created.Created.Capabilities, 1)
	created.Created.Capabilities[0].Include = []string{"*"}
	edited, err := events.Encode(created) // keeps Signer and the old Sig
	require.NoError(t, err)
	seq := testutil.PublishRaw(t, nc, events.Subject("agentreg", string(root.Root), solver.Path), edited, nil)
	out, _, err := replay(t, "audit", "--nats-url", url, "--json")
	require.ErrorIs(t, err, errProblems)
	rep = decode[auditReport](t, out)
	var kinds []string
	for _, p := range rep.Problems {
		if p.Seq == seq {
			kinds = append(kinds, p.Kind)
		}
	}
	require.Contains(t, kinds, "bad_signature", "bad signature at seq %d not reported: %+v", seq, rep.Problems)
	require.Equal(t, 3, rep.Signed, "the edited copy is not counted as signed")
}

// TestSignersTrustPolicy: with --signers every fold of replay applies only
// events signed by those keys, as an agentd with the same --signers does: a
// grant by another key is in the registry without it, not with it.
func TestSignersTrustPolicy(t *testing.T) {
	ctx := t.Context()
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	alice, err := nkeys.CreateUser()
	require.NoError(t, err)
	aliceSeed, _ := alice.Seed()
	alicePub, _ := alice.PublicKey()
	open := func(opts ...agent.Option) *agent.Runtime {
		rt, err := agent.Open(ctx, append(append(runtimeOptions(t), agent.WithNATSURL(url)), opts...)...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = rt.Close() })
		return rt
	}
	signed := open(agent.WithSigningSeed(aliceSeed))
	root, err := signed.RegisterRoot(ctx, architect())
	require.NoError(t, err)
	solver, _, err := signed.Create(ctx, root, agent.Spec{Name: "math_solver", Capabilities: []events.Capability{mathCap("sin", "cos")}})
	require.NoError(t, err)
	plain := open()
	_, err = plain.RegisterRoot(ctx, architect())
	require.NoError(t, err)
	require.NoError(t, errOf(plain.Grant(ctx, solver, agentCap))) // unsigned

	without := replayOK(t, "registry", "--nats-url", url)
	require.Contains(t, without, "\n    cap  type Agent include=", "without --signers the unsigned grant is applied")
	with := replayOK(t, "registry", "--nats-url", url, "--signers", alicePub)
	require.NotContains(t, with, "\n    cap  type Agent include=", "with --signers only alice's events are applied")
	require.Contains(t, with, "unsigned")
	require.Contains(t, with, "module math")
}
