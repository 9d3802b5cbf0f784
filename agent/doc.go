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
//	child, _ := rt.Create(ctx, root, agent.Spec{Name: "math_solver", ...})
//	ref, _ := rt.DefineTask(ctx, child, task)
//	t, _ := rt.Resolve(ctx, ref) // in this process or any other
//	out, _ := t.Call(ctx, map[string]any{"equation": "4x + 5 = 13"})
//
// Concurrency: a Runtime is safe for concurrent use. Writes to one root are
// serialised within the process; across processes each agent's subject is
// written with optimistic concurrency, so of two racing writers one gets
// ErrConflict (ErrExists for a create).
package agent
