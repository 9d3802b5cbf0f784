package agent_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/projector"
)

// A task ref made in one process resolves in another (fresh state, same
// server, same catalog and root): the agent is rebuilt from its recipe with
// capabilities intersected down the chain, and Call validates arguments
// before the executor runs.
func TestResolveAndCallInSecondRuntime(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt1, root := w.openRegistered()
	tr := buildTree(t, rt1, root)

	var calls atomic.Int32
	exec := agent.ExecutorFunc(func(ctx context.Context, call *agent.Call) (any, error) {
		calls.Add(1)
		if got, want := agent.ActorFrom(ctx, ""), call.Task.Ref.String(); got != want {
			return nil, fmt.Errorf("actor %q, want the task ref %q", got, want)
		}
		c, ok := call.Task.Capability(events.KindModule, "math")
		if !ok {
			return nil, fmt.Errorf("task has no math")
		}
		sqrt, ok := c.Members["sqrt"].(func(float64) float64)
		if !ok {
			return nil, fmt.Errorf("math.sqrt is %T", c.Members["sqrt"])
		}
		return []any{call.Args["text"], fmt.Sprint(sqrt(16))}, nil
	})
	rt2, _ := w.openRegistered(agent.WithExecutor(exec))

	_, wantSeq, err := rt1.StateHash(ctx, agent.RootID(w.fp))
	require.NoError(t, err)

	// The ref travels as text, as it would between processes.
	text, err := tr.parseRef.MarshalText()
	require.NoError(t, err)
	ref, err := agent.ParseTaskRef(string(text))
	require.NoError(t, err)

	task, err := rt2.Resolve(ctx, ref)
	require.NoError(t, err)
	require.Equal(t, ref, task.Ref)
	require.Equal(t, "architect", task.RootName)
	require.Equal(t, "You parse equations.", task.Primer)
	require.Equal(t, parseTask(), task.Def)
	require.Equal(t, wantSeq, task.Seq)
	require.False(t, task.Migrated)
	// Parent allows sin cos pi sqrt, the child asks for s*: the child gets
	// the intersection; tan and the private _helper never pass.
	require.Equal(t, []string{"sin", "sqrt"}, memberNames(t, task, events.KindModule, "math"))
	require.Len(t, task.Capabilities, 1, "equation_parser was granted math only")
	_, hasAgent := task.Capability(events.KindType, "Agent")
	require.False(t, hasAgent)

	t.Run("Parent", func(t *testing.T) {
		solve, err := rt2.Resolve(ctx, tr.solveRef)
		require.NoError(t, err)
		require.Equal(t, "You solve equations.", solve.Primer)
		require.Equal(t, solveTask(), solve.Def)
		require.Equal(t, []string{"cos", "pi", "sin", "sqrt"}, memberNames(t, solve, events.KindModule, "math"))
		c, _ := solve.Capability(events.KindModule, "math")
		require.Equal(t, math.Pi, c.Members["pi"])
	})

	t.Run("PatternOnlyNarrows", func(t *testing.T) {
		// A child granted math "*" under math_solver (which holds a list of
		// members) is refused at write time: it names its members instead.
		_, _, err := rt1.Create(ctx, tr.solver, agent.Spec{Name: "wide", Primer: "w",
			Capabilities: []events.Capability{mathCap("*")}, Tasks: []events.TaskDef{solveTask()}})
		require.ErrorIs(t, err, events.ErrEscalation)
		wide, _, err := rt1.Create(ctx, tr.solver, agent.Spec{Name: "wide", Primer: "w",
			Capabilities: []events.Capability{mathCap("cos", "pi", "sin", "sqrt")}, Tasks: []events.TaskDef{solveTask()}})
		require.NoError(t, err)
		task, err := rt2.Resolve(ctx, agent.TaskRef{Root: agent.RootID(w.fp), Path: wide.Path, Task: "solve_math_problem"})
		require.NoError(t, err)
		require.Equal(t, []string{"cos", "pi", "sin", "sqrt"}, memberNames(t, task, events.KindModule, "math"))
	})

	t.Run("RootTask", func(t *testing.T) {
		rootTask, err := rt2.Resolve(ctx, tr.rootTask)
		require.NoError(t, err)
		require.Equal(t, w.def.Primer, rootTask.Primer)
		require.Equal(t, "create_specialist", rootTask.Def.Name)
		require.Equal(t, []string{"cos", "pi", "sin", "sqrt", "tan"}, memberNames(t, rootTask, events.KindModule, "math"))
		require.Equal(t, []string{"Agent"}, memberNames(t, rootTask, events.KindType, "Agent"))
	})

	t.Run("UnknownTask", func(t *testing.T) {
		_, err := rt2.Resolve(ctx, agent.TaskRef{Root: agent.RootID(w.fp), Path: "math_solver", Task: "no_such_task"})
		require.ErrorIs(t, err, agent.ErrNotFound)
		require.ErrorContains(t, err, "no_such_task")
		require.ErrorContains(t, err, "solve_math_problem", "the error lists the tasks the agent has")
	})

	t.Run("CallOK", func(t *testing.T) {
		before := calls.Load()
		out, err := task.Call(ctx, map[string]any{"text": "4x + 5 = 13", "max_terms": 3})
		require.NoError(t, err)
		require.Equal(t, []any{"4x + 5 = 13", "4"}, out)
		require.Equal(t, before+1, calls.Load())
		// A whole float is an integer (as JSON numbers decode).
		_, err = task.Call(ctx, map[string]any{"text": "x = 1", "max_terms": 3.0})
		require.NoError(t, err)
	})

	for _, tc := range []struct {
		name  string
		args  map[string]any
		field string
	}{
		// The errors are the JSON Schema validator's, naming the location.
		{"MissingRequired", map[string]any{"max_terms": 3}, `missing property 'text'`},
		{"NilRequired", map[string]any{"text": nil}, `at '/text': got null, want string`},
		{"WrongType", map[string]any{"text": 42}, `at '/text': got number, want string`},
		{"WrongTypeOptional", map[string]any{"text": "x", "max_terms": 2.5}, `at '/max_terms'`},
		{"UnknownField", map[string]any{"text": "x", "bogus": 1}, `'bogus' not allowed`},
	} {
		t.Run("ErrInvalidArgs/"+tc.name, func(t *testing.T) {
			before := calls.Load()
			_, err := task.Call(ctx, tc.args)
			require.ErrorIs(t, err, agent.ErrInvalidArgs)
			require.ErrorContains(t, err, tc.field)
			require.Equal(t, before, calls.Load(), "the executor must not run on invalid arguments")
		})
	}

	t.Run("ErrNoExecutor", func(t *testing.T) {
		task1, err := rt1.Resolve(ctx, ref)
		require.NoError(t, err)
		_, err = task1.Call(ctx, map[string]any{"text": "x"})
		require.ErrorIs(t, err, agent.ErrNoExecutor)
	})
}

// Revoking a capability takes it from the agent's descendants too, and
// retiring an agent retires its subtree; a second runtime agrees.
func TestRevokeAndRetireCascade(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt1, root := w.openRegistered()
	tr := buildTree(t, rt1, root)

	// Resolve once so the cache holds the pre-revocation task.
	before, err := rt1.Resolve(ctx, tr.parseRef)
	require.NoError(t, err)
	require.Equal(t, []string{"sin", "sqrt"}, memberNames(t, before, events.KindModule, "math"))

	require.NoError(t, errOf(rt1.Revoke(ctx, tr.solver, events.KindModule, "math")))

	rt2, _ := w.openRegistered()
	for name, rt := range map[string]*agent.Runtime{"writer": rt1, "fresh": rt2} {
		t.Run("Revoked/"+name, func(t *testing.T) {
			task, err := rt.Resolve(ctx, tr.parseRef)
			require.NoError(t, err)
			_, ok := task.Capability(events.KindModule, "math")
			require.False(t, ok, "equation_parser still has math after it was revoked from its parent")
			require.Empty(t, task.Capabilities)
			solve, err := rt.Resolve(ctx, tr.solveRef)
			require.NoError(t, err)
			require.Empty(t, solve.Capabilities)
		})
	}
	err = inspect.View(ctx, rt2, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
		require.Empty(t, reg.Agents["math_solver/equation_parser"].Capabilities)
		require.Empty(t, reg.Violations)
		return nil
	})
	require.NoError(t, err)

	// The parent no longer holds math: granting it to the child again is an
	// escalation.
	_, err = rt2.Grant(ctx, tr.parser, mathCap("sin"))
	require.ErrorIs(t, err, agent.ErrEscalation)

	require.NoError(t, errOf(rt2.Retire(ctx, tr.solver, "replaced")))
	rt3, _ := w.openRegistered()
	for name, rt := range map[string]*agent.Runtime{"writer": rt1, "retirer": rt2, "fresh": rt3} {
		t.Run("Retired/"+name, func(t *testing.T) {
			_, err := rt.Resolve(ctx, tr.parseRef)
			require.ErrorIs(t, err, agent.ErrRetired)
			require.ErrorContains(t, err, "math_solver/equation_parser")
			_, err = rt.Resolve(ctx, tr.solveRef)
			require.ErrorIs(t, err, agent.ErrRetired)
		})
	}
	// A retired agent takes no writes, and nothing is created under it.
	_, _, err = rt1.DefineTask(ctx, tr.parser, solveTask())
	require.ErrorIs(t, err, agent.ErrRetired)
	_, _, err = rt1.Create(ctx, tr.solver, agent.Spec{Name: "late_child"})
	require.ErrorIs(t, err, agent.ErrRetired)
	// The root's own task is unaffected.
	_, err = rt1.Resolve(ctx, tr.rootTask)
	require.NoError(t, err)
}

// A capability the catalog lacks is refused when written, and a process
// whose catalog lacks a capability of the root cannot take the root.
func TestUnknownCapability(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	tr := buildTree(t, rt, root)
	l := w.log()
	seq := lastRootSeq(t, l, w.fp)

	_, _, err := rt.Create(ctx, root, agent.Spec{Name: "netter", Capabilities: []events.Capability{{Kind: events.KindModule, Name: "net"}}})
	require.ErrorIs(t, err, agent.ErrUnknownCapability)
	require.ErrorContains(t, err, `"net"`)

	_, err = rt.Grant(ctx, tr.solver, events.Capability{Kind: events.KindFunc, Name: "exec"})
	require.ErrorIs(t, err, agent.ErrUnknownCapability)
	require.ErrorContains(t, err, `"exec"`)

	// "math" is a module, not a type.
	_, err = rt.Grant(ctx, tr.solver, events.Capability{Kind: events.KindType, Name: "math"})
	require.ErrorIs(t, err, agent.ErrUnknownCapability)
	require.ErrorContains(t, err, `"math"`)

	require.Equal(t, seq, lastRootSeq(t, l, w.fp), "a refused write appended something")

	t.Run("ProcessWithoutMath", func(t *testing.T) {
		// A process whose catalog lacks math cannot rebuild agents that
		// use it. RegisterRoot requires every root capability in the
		// catalog, so the refusal names math at registration; resolution
		// then has no root to resolve under.
		other := w.open(agent.WithCatalog(newCatalog(t, false)))
		_, err := other.RegisterRoot(ctx, w.def)
		require.ErrorIs(t, err, agent.ErrUnknownCapability)
		require.ErrorContains(t, err, `"math"`)
		_, err = other.Resolve(ctx, tr.parseRef)
		require.ErrorIs(t, err, agent.ErrRootNotRegistered)
		require.ErrorContains(t, err, "architect")
		require.Equal(t, seq, lastRootSeq(t, l, w.fp))
	})
}

// taskShape is what a resolved task holds, its members by name (functions
// are never equal to reflect.DeepEqual).
func taskShape(t *agent.Task) any {
	type capShape struct {
		Ref     events.Capability
		Chain   []events.Capability
		Members []string
	}
	var caps []capShape
	for _, c := range t.Capabilities {
		caps = append(caps, capShape{c.Ref, c.Chain, c.MemberNames()})
	}
	return struct {
		Ref          agent.TaskRef
		Def          events.TaskDef
		Primer, Root string
		Seq          uint64
		Caps         []capShape
	}{t.Ref, t.Def, t.Primer, t.RootName, t.Seq, caps}
}

// Resolve hands each caller a task of its own: changing one (its
// capabilities' members, chains and refs, its definition's schemas)
// changes no later answer, nor the root definition, and callers changing
// theirs at once do not race (run with -race).
func TestResolveReturnsCallersCopy(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	tr := buildTree(t, rt, root)
	other, _ := w.openRegistered() // folds from the log

	for _, r := range []struct {
		name string
		rt   *agent.Runtime
	}{{"writer", rt}, {"other", other}} {
		for _, ref := range []agent.TaskRef{tr.parseRef, tr.rootTask} {
			t.Run(r.name+"/"+ref.Path, func(t *testing.T) {
				t1, err := r.rt.Resolve(ctx, ref)
				require.NoError(t, err)
				want, err := r.rt.Resolve(ctx, ref)
				require.NoError(t, err)
				require.NotSame(t, t1, want)
				require.Equal(t, taskShape(want), taskShape(t1))
				require.NotEmpty(t, memberNames(t, want, events.KindModule, "math"))

				c := &t1.Capabilities[0]
				clear(c.Members)
				c.Members["injected"] = helper
				c.Chain[0].Include = append(c.Chain[0].Include[:0], "injected")
				if len(c.Ref.Include) > 0 {
					c.Ref.Include[0] = "injected"
				}
				t1.Capabilities = append(t1.Capabilities[:1], agent.Capability{})
				t1.Def.Input.Fields[0].Name = "injected"
				t1.Def.Doc = "injected"
				t1.Primer = "injected"

				again, err := r.rt.Resolve(ctx, ref)
				require.NoError(t, err)
				require.NotSame(t, t1, again)
				require.Equal(t, taskShape(want), taskShape(again))
				def, ok := r.rt.RootDef(root.Root)
				require.True(t, ok)
				require.Equal(t, w.def.Tasks, def.Tasks, "the root definition is untouched")
			})
		}
	}

	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				for range 50 {
					task, err := rt.Resolve(ctx, tr.parseRef)
					if !assert.NoError(t, err) {
						return
					}
					if !assert.Equal(t, []string{"sin", "sqrt"}, memberNames(t, task, events.KindModule, "math")) {
						return
					}
					task.Capabilities[0].Members[fmt.Sprint("m", i)] = helper
					task.Capabilities[0].Chain[0].Include[0] = "injected"
					task.Def.Input.Fields[0].Name = "injected"
				}
			})
		}
		wg.Wait()
	})
}
