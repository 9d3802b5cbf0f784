// Package agent is the API services embed to make dynamic agents durable.
//
// A Runtime is opened on an embedded JetStream server (the default, in a
// data directory) or an external NATS server or cluster. The host registers
// what it offers in a Catalog and its root agents (defined in code) with
// RegisterRoot. Dynamic agents are created, granted, revoked, given tasks
// and retired through the Runtime; each change is an event in the log. A
// TaskRef (root fingerprint, agent path, task name) resolves in any process
// that registers the same root: Resolve rebuilds the agent from its recipe,
// checking every capability against the catalog and the agent's ancestors,
// and Task.Call validates the arguments and hands the call to the Executor.
//
//	rt, _ := agent.Open(ctx, agent.WithCatalog(cat), agent.WithExecutor(loop))
//	root, _ := rt.RegisterRoot(ctx, def)
//	child, _, _ := rt.Create(agent.WithIdempotencyKey(ctx, "req-1"), root, agent.Spec{Name: "math_solver", ...})
//	ref, receipt, _ := rt.DefineTask(ctx, child, task)
//	t, _ := rt.Resolve(agent.WithMinSeq(ctx, receipt.Seq), ref) // in this process or any other
//	out, _ := t.Call(ctx, map[string]any{"equation": "4x + 5 = 13"})
//
// Files, one path each: write.go (how a write works), follow.go (how a
// process stays current), resolve.go, tools.go (tool definitions for a
// model, contract digests and pinned refs, SchemaFor), snapshots.go (the
// snapshot policy), context.go (actor, correlation, idempotency key,
// minimum sequence), values.go (Describe, List, Lineage: what a registry
// holds, as values the caller owns), catalog.go (the host's offer; typed
// access with Member and Func).
//
// A root is named by its RootID (its definition's fingerprint), an agent by
// an AgentRef. Capability semantics (grants, Replace, RevokeMembers) are in
// docs/capabilities.md.
//
// Concurrency: a Runtime is safe for concurrent use. Writes to one root are
// serialised within the process; across processes each agent's subject is
// written with optimistic concurrency: a writer that finds the subject
// moved on catches up and checks again, so of two racing creates of one
// path the second gets ErrExists, and a write whose check a concurrent
// change to an ancestor invalidates gets ErrConflict.
package agent
