package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math"
	"os"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
)

// The README's library snippet (TestREADMESnippet keeps the two equal): a
// runtime on an embedded server, a root, a dynamic agent created with one
// event, and its task resolved and called.
func Example() {
	ctx := context.Background()
	cat := agent.NewCatalog()
	if err := cat.AddModule("math", map[string]any{"sqrt": math.Sqrt, "abs": math.Abs, "pi": math.Pi}); err != nil {
		log.Fatal(err)
	}
	// The executor runs task calls: a real deployment's model loop. It gets
	// the agent's primer, its usable capabilities and the arguments.
	loop := agent.ExecutorFunc(func(ctx context.Context, call *agent.Call) (any, error) {
		m, _ := call.Task.Capability(events.KindModule, "math")
		sqrt, err := agent.Member[func(float64) float64](m, "sqrt") // typed: no type assertion
		if err != nil {
			return nil, err
		}
		return fmt.Sprintf("%s: x = %g", call.Args["equation"], sqrt(4)), nil
	})

	dir, err := os.MkdirTemp("", "agentreg-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	rt, err := agent.Open(ctx,
		agent.WithDataDir(dir), // embedded server; or agent.WithNATSURL("nats://…")
		agent.WithCatalog(cat),
		agent.WithExecutor(loop),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()

	root, err := rt.RegisterRoot(ctx, events.RootDef{
		Name: "architect", Primer: "You design specialists.",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	// One event, applied whole or refused whole; the key makes a retry
	// (after a timeout, a crash, a lost reply) return this same receipt.
	wctx := agent.WithIdempotencyKey(agent.WithActor(ctx, "user:alice"), "request-8f3a")
	solver, receipt, err := rt.Create(wctx, root, agent.Spec{
		Name:         "math_solver",
		Primer:       "You solve equations.",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math", Include: []string{"sqrt", "abs"}}},
		Tasks: []events.TaskDef{{Name: "solve", Doc: "Solve an equation for x.", // JSON Schema in and out
			InputSchema:  events.MustJSONSchema(`{"type":"object","properties":{"equation":{"type":"string"}},"required":["equation"]}`),
			OutputSchema: events.MustJSONSchema(`{"type":"string"}`)}},
	})
	if err != nil {
		log.Fatal(err)
	}
	ref := solver.Task("solve") // ref.String() is "<fingerprint>/math_solver#solve": store it anywhere

	// In any process that registers the same root definition; the receipt's
	// sequence makes the read see the write on any server of a cluster.
	task, err := rt.Resolve(agent.WithMinSeq(ctx, receipt.Seq), ref)
	if err != nil {
		log.Fatal(err)
	}
	out, err := task.Call(ctx, map[string]any{"equation": "x² = 4"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ref.Path, ref.Task, out)
	// Output: math_solver solve x² = 4: x = 2
}

// A member-level revocation reaches the whole subtree, and widening the
// agent's grant again (an explicit replacement) gives nothing back below
// it.
func ExampleRuntime_RevokeMembers() {
	ctx := context.Background()
	rt, root, cleanup := exampleRuntime(ctx)
	defer cleanup()
	math := func(include ...string) events.Capability {
		return events.Capability{Kind: events.KindModule, Name: "math", Include: include}
	}
	solver, _, err := rt.Create(ctx, root, agent.Spec{Name: "solver", Capabilities: []events.Capability{math("sqrt", "abs", "pi")}})
	if err != nil {
		log.Fatal(err)
	}
	parser, _, err := rt.Create(ctx, solver, agent.Spec{Name: "parser", Capabilities: []events.Capability{math("sqrt", "abs")}})
	if err != nil {
		log.Fatal(err)
	}
	members := func(a agent.AgentRef) []string {
		info, err := rt.Describe(ctx, a)
		if err != nil {
			log.Fatal(err)
		}
		return info.Effective[0].Members
	}

	if _, err := rt.RevokeMembers(ctx, solver, events.KindModule, "math", "sqrt"); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after revoke:", members(solver), members(parser))

	// A grant of a held capability must say it replaces it.
	_, err = rt.Grant(ctx, solver, math())
	fmt.Println("grant again:", errors.Is(err, agent.ErrExists))
	if _, err := rt.Grant(ctx, solver, math(), agent.Replace()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after widening:", members(solver), members(parser))

	// Output:
	// after revoke: [abs pi] [abs]
	// grant again: true
	// after widening: [abs pi sqrt] [abs]
}

// Refusals carry their facts.
func ExampleEscalationError() {
	ctx := context.Background()
	rt, root, cleanup := exampleRuntime(ctx)
	defer cleanup()
	solver, _, err := rt.Create(ctx, root, agent.Spec{Name: "solver",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math", Include: []string{"abs"}}}})
	if err != nil {
		log.Fatal(err)
	}
	_, _, err = rt.Create(ctx, solver, agent.Spec{Name: "parser",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math", Include: []string{"abs", "sqrt"}}}})
	var esc *agent.EscalationError
	if errors.As(err, &esc) {
		fmt.Println(esc.Parent, "lacks", esc.Capability.Name, esc.Members)
	}
	// Output: solver lacks math [sqrt]
}

// exampleRuntime opens a runtime on an embedded server in a temporary
// directory and registers a root offering module math.
func exampleRuntime(ctx context.Context) (*agent.Runtime, agent.AgentRef, func()) {
	cat := agent.NewCatalog()
	if err := cat.AddModule("math", map[string]any{"sqrt": math.Sqrt, "abs": math.Abs, "pi": math.Pi}); err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "agentreg-example")
	if err != nil {
		log.Fatal(err)
	}
	rt, err := agent.Open(ctx, agent.WithDataDir(dir), agent.WithCatalog(cat))
	if err != nil {
		log.Fatal(err)
	}
	root, err := rt.RegisterRoot(ctx, events.RootDef{Name: "architect", Primer: "You design specialists.",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}}})
	if err != nil {
		log.Fatal(err)
	}
	return rt, root, func() { _ = rt.Close(); _ = os.RemoveAll(dir) }
}
