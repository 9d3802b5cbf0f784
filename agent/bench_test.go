package agent_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/testutil"
)

// BenchmarkWrites measures a write to a loaded root (one round trip to an
// embedded server in the same process, whose own allocations count too):
//
//	go test ./agent/ -run '^$' -bench Writes -benchtime 3000x
func BenchmarkWrites(b *testing.B) {
	ctx := context.Background()
	rt, err := agent.Open(ctx, agent.WithNATSURL(testutil.RunServer(b).ClientURL()),
		agent.WithCatalog(agent.SymbolicCatalog()), agent.WithSnapshotEvery(0))
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	root, err := rt.RegisterRoot(ctx, architectDef())
	if err != nil {
		b.Fatal(err)
	}
	solver, _, err := rt.Create(ctx, root, agent.Spec{Name: "s", Capabilities: []events.Capability{mathCap("sin", "cos")}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("Grant", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rt.Grant(ctx, solver, events.Capability{Kind: events.KindType, Name: "Agent"}); err != nil {
				b.Fatal(err)
			}
		}
	})
	i := 0
	b.Run("Create", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			i++
			spec := agent.Spec{Name: fmt.Sprintf("c%d", i), Capabilities: []events.Capability{mathCap("sin")}, Tasks: []events.TaskDef{solveTask()}}
			if _, _, err := rt.Create(ctx, solver, spec); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkResolve measures a warm resolve (the answer cached until the
// root's next event; each call returns a copy the caller owns):
//
//	go test ./agent/ -run '^$' -bench Resolve -benchtime 2s
func BenchmarkResolve(b *testing.B) {
	ctx := context.Background()
	rt, err := agent.Open(ctx, agent.WithNATSURL(testutil.RunServer(b).ClientURL()),
		agent.WithCatalog(newCatalog(b, true)), agent.WithSnapshotEvery(0))
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close()
	root, err := rt.RegisterRoot(ctx, architectDef())
	if err != nil {
		b.Fatal(err)
	}
	solver, _, err := rt.Create(ctx, root, agent.Spec{Name: "s", Capabilities: []events.Capability{mathCap("sin", "cos", "pi", "sqrt")},
		Tasks: []events.TaskDef{solveTask()}})
	if err != nil {
		b.Fatal(err)
	}
	ref := agent.TaskRef{Root: solver.Root, Path: solver.Path, Task: "solve_math_problem"}
	if _, err := rt.Resolve(ctx, ref); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rt.Resolve(ctx, ref); err != nil {
			b.Fatal(err)
		}
	}
}
