package agent_test

import (
	"context"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
)

// grantOf returns the agent's own grant of module math from Describe.
func grantOf(t *testing.T, rt *agent.Runtime, ctx context.Context, a agent.AgentRef) agent.GrantInfo {
	t.Helper()
	info, err := rt.Describe(ctx, a)
	require.NoError(t, err)
	for _, g := range info.Granted {
		if g.Capability.Key() == "module:math" {
			return g
		}
	}
	t.Fatalf("%s holds no module math", a)
	return agent.GrantInfo{}
}

// reader opens another process with the root registered.
func reader(w *world) *agent.Runtime {
	rt, _ := w.openRegistered()
	return rt
}

// resolvedMath returns the math members a task ref resolves to.
func resolvedMath(t *testing.T, rt *agent.Runtime, seq uint64, ref agent.TaskRef) []string {
	t.Helper()
	task, err := rt.Resolve(agent.WithMinSeq(context.Background(), seq), ref)
	require.NoError(t, err)
	return memberNames(t, task, events.KindModule, "math")
}

// A grant of a capability the agent holds is refused unless it says
// Replace; the replacement is what the registry and resolution then hold.
func TestGrantHeldCapability(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	tr := buildTree(t, rt, root)

	_, err := rt.Grant(ctx, tr.parser, mathCap("sin"))
	require.ErrorIs(t, err, agent.ErrExists)
	require.ErrorContains(t, err, `module "math"`)
	assert.Equal(t, []string{"sin", "sqrt"}, grantOf(t, rt, ctx, tr.parser).Capability.Include, "a refused grant changes nothing")

	rc, err := rt.Grant(ctx, tr.parser, mathCap("sin"), agent.Replace())
	require.NoError(t, err)
	assert.Equal(t, []string{"sin"}, grantOf(t, rt, ctx, tr.parser).Capability.Include)
	assert.Equal(t, rc.Seq, grantOf(t, rt, ctx, tr.parser).Seq)
	assert.Equal(t, []string{"sin"}, resolvedMath(t, reader(w), rc.Seq, tr.parseRef), "another process resolves the replacement")

	// Replace of a capability the agent does not hold is a grant.
	_, err = rt.Grant(ctx, tr.solver, events.Capability{Kind: events.KindType, Name: "Agent"}, agent.Replace())
	require.NoError(t, err)
}

// A member-level revocation cascades to the subtree, and a later widening
// (re-grant) of an ancestor restores nothing that was revoked below it.
func TestRevokeMembersCascades(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	tr := buildTree(t, rt, root)

	rc, err := rt.RevokeMembers(ctx, tr.solver, events.KindModule, "math", "sqrt")
	require.NoError(t, err)
	for _, a := range []agent.AgentRef{tr.solver, tr.parser} {
		g := grantOf(t, rt, ctx, a)
		assert.Equal(t, []string{"_*", "sqrt"}, g.Capability.Exclude, a.Path)
		assert.Equal(t, []string{"sqrt"}, g.Revoked, a.Path)
	}
	other := reader(w)
	assert.Equal(t, []string{"cos", "pi", "sin"}, resolvedMath(t, other, rc.Seq, tr.solveRef))
	assert.Equal(t, []string{"sin"}, resolvedMath(t, other, rc.Seq, tr.parseRef))

	// Widen the ancestor: the solver's grant is replaced by all of math.
	rc, err = rt.Grant(ctx, tr.solver, mathCap(), agent.Replace())
	require.NoError(t, err)
	assert.Equal(t, []string{"cos", "pi", "sin", "sqrt", "tan"}, resolvedMath(t, other, rc.Seq, tr.solveRef))
	assert.Equal(t, []string{"sin"}, resolvedMath(t, other, rc.Seq, tr.parseRef), "the widening restored what was revoked below it")
	assert.Equal(t, []string{"sqrt"}, grantOf(t, rt, ctx, tr.parser).Revoked)

	// Only replacing the child's own grant gives it back, there.
	rc, err = rt.Grant(ctx, tr.parser, mathCap("sin", "sqrt"), agent.Replace())
	require.NoError(t, err)
	assert.Equal(t, []string{"sin", "sqrt"}, resolvedMath(t, other, rc.Seq, tr.parseRef))

	t.Run("refused", func(t *testing.T) {
		_, err := rt.RevokeMembers(ctx, tr.solver, events.KindModule, "math")
		require.ErrorIs(t, err, events.ErrMalformed)
		_, err = rt.RevokeMembers(ctx, tr.solver, events.KindModule, "math", "s*")
		require.ErrorIs(t, err, events.ErrMalformed)
		require.ErrorContains(t, err, `"s*"`)
		_, err = rt.RevokeMembers(ctx, tr.solver, events.KindType, "Agent", "x")
		require.ErrorIs(t, err, agent.ErrNotFound)
	})
}

// Escalations and retirements carry their facts through the write path
// and resolution.
func TestTypedErrors(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	tr := buildTree(t, rt, root)

	_, err := rt.Grant(ctx, tr.parser, mathCap("sin", "tan"), agent.Replace())
	require.ErrorIs(t, err, agent.ErrEscalation)
	var esc *agent.EscalationError
	require.ErrorAs(t, err, &esc)
	assert.Equal(t, "math", esc.Capability.Name)
	assert.Equal(t, "math_solver", esc.Parent)
	assert.Equal(t, []string{"tan"}, esc.Members)

	_, _, err = rt.Create(ctx, tr.solver, agent.Spec{Name: "x", Capabilities: []events.Capability{{Kind: events.KindType, Name: "Agent"}}})
	require.ErrorAs(t, err, &esc)
	assert.Equal(t, events.KindType, esc.Capability.Kind)
	assert.Empty(t, esc.Members, "the parent lacks the whole capability")

	rc, err := rt.Retire(agent.WithActor(ctx, "user:carol"), tr.solver, "done")
	require.NoError(t, err)
	_, err = rt.Grant(ctx, tr.parser, mathCap("sin"), agent.Replace())
	require.ErrorIs(t, err, agent.ErrRetired)
	var ret *agent.RetiredError
	require.ErrorAs(t, err, &ret)
	assert.Equal(t, agent.RetiredError{Path: tr.parser.Path, Seq: rc.Seq, By: "user:carol"}, *ret)

	_, err = reader(w).Resolve(agent.WithMinSeq(ctx, rc.Seq), tr.solveRef)
	require.ErrorAs(t, err, &ret)
	assert.Equal(t, agent.RetiredError{Path: tr.solver.Path, Seq: rc.Seq, By: "user:carol"}, *ret)
}

// Describe, List and Lineage return values the caller owns, with the
// registry's facts and each capability's effective form.
func TestDescribeListLineage(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	tr := buildTree(t, rt, root)
	other := reader(w) // another process: folds from the log

	info, err := other.Describe(ctx, root)
	require.NoError(t, err)
	assert.Equal(t, root, info.Ref)
	assert.Equal(t, w.def.Primer, info.Primer)
	require.Len(t, info.Tasks, 1)
	assert.Equal(t, "create_specialist", info.Tasks[0].Name)
	assert.Len(t, info.Granted, 2)

	info, err = other.Describe(ctx, tr.parser)
	require.NoError(t, err)
	assert.Equal(t, "You parse equations.", info.Primer)
	assert.False(t, info.Retired)
	require.Len(t, info.Tasks, 1)
	assert.Equal(t, "parse_equation", info.Tasks[0].Name)
	require.Len(t, info.Effective, 1)
	eff := info.Effective[0]
	assert.Len(t, eff.Chain, 3, "root, solver, parser")
	assert.Equal(t, []string{"sin", "sqrt"}, eff.Intersected.Include)
	assert.True(t, eff.Exact)
	assert.Equal(t, []string{"sin", "sqrt"}, eff.Members)

	// The values are the caller's: changing them changes nothing held.
	info.Granted[0].Capability.Include[0] = "changed"
	info.Effective[0].Chain[0].Include[0] = "changed"
	info.Effective[0].Members[0] = "changed"
	info.Tasks[0].Name = "changed"
	again, err := other.Describe(ctx, tr.parser)
	require.NoError(t, err)
	assert.Equal(t, []string{"sin", "sqrt"}, again.Granted[0].Capability.Include)
	assert.Equal(t, []string{"*"}, again.Effective[0].Chain[0].Include)
	assert.Equal(t, []string{"sin", "sqrt"}, again.Effective[0].Members)
	assert.Equal(t, "parse_equation", again.Tasks[0].Name)

	t.Run("List", func(t *testing.T) {
		_, _, err := rt.Create(ctx, root, agent.Spec{Name: "writer"})
		require.NoError(t, err)
		var paths []string
		var page agent.AgentPage
		for pages := 1; ; pages++ {
			page, err = rt.List(ctx, root.Root, agent.ListOptions{After: page.Next, Limit: 2})
			require.NoError(t, err)
			assert.Equal(t, "architect", page.Name)
			assert.LessOrEqual(t, len(page.Agents), 2)
			for _, a := range page.Agents {
				paths = append(paths, a.Ref.Path)
			}
			if page.Next == "" {
				assert.Equal(t, 2, pages)
				break
			}
		}
		assert.Equal(t, []string{"math_solver", "math_solver/equation_parser", "writer"}, paths)

		sub, err := rt.List(ctx, root.Root, agent.ListOptions{Path: "math_solver"})
		require.NoError(t, err)
		require.Len(t, sub.Agents, 2)
		assert.Equal(t, tr.solver, sub.Agents[0].Ref, "a subtree starts with its own agent")
		assert.Empty(t, sub.Next)

		_, err = rt.List(ctx, agent.RootID(events.RootDef{Name: "nobody"}.Fingerprint()), agent.ListOptions{})
		require.ErrorIs(t, err, agent.ErrNotFound)
	})

	t.Run("Lineage", func(t *testing.T) {
		rc, err := rt.Retire(agent.WithActor(ctx, "user:dave"), tr.parser, "done")
		require.NoError(t, err)
		got, err := other.Lineage(agent.WithMinSeq(ctx, rc.Seq), tr.solver)
		require.NoError(t, err)
		type fact struct {
			Rel        agent.Relation
			Path, What string
		}
		var facts []fact
		for _, e := range got {
			facts = append(facts, fact{e.Relation, e.Path, e.What})
			assert.NotZero(t, e.Seq)
			assert.False(t, e.Time.IsZero())
		}
		assert.Equal(t, []fact{
			{agent.Ancestor, "", "root architect registered"},
			{agent.Self, "math_solver", "created"},
			{agent.Self, "math_solver", "granted module math"},
			{agent.Descendant, "math_solver/equation_parser", "created"},
			{agent.Descendant, "math_solver/equation_parser", "granted module math"},
			{agent.Descendant, "math_solver/equation_parser", "retired"},
		}, facts)
		assert.Equal(t, "user:dave", got[len(got)-1].Actor)
		assert.Equal(t, rc.Seq, got[len(got)-1].Seq)
	})

	// A page holds at most Limit agents, the subtree's own agent counted;
	// a cursor outside the subtree is an error, not an empty last page.
	t.Run("ListLimit", func(t *testing.T) {
		_, _, err := rt.Create(ctx, tr.solver, agent.Spec{Name: "checker"})
		require.NoError(t, err)
		var paths, nexts []string
		page := agent.AgentPage{}
		for pages := 1; ; pages++ {
			page, err = rt.List(ctx, root.Root, agent.ListOptions{Path: "math_solver", After: page.Next, Limit: 1})
			require.NoError(t, err)
			require.Len(t, page.Agents, 1, "page %d", pages)
			paths = append(paths, page.Agents[0].Ref.Path)
			if page.Next == "" {
				break
			}
			nexts = append(nexts, page.Next)
			require.Less(t, pages, 10)
		}
		assert.Equal(t, []string{"math_solver", "math_solver/checker", "math_solver/equation_parser"}, paths)
		assert.Equal(t, []string{"math_solver", "math_solver/checker"}, nexts, "each page's Next is its last agent")

		two, err := rt.List(ctx, root.Root, agent.ListOptions{Path: "math_solver", Limit: 2})
		require.NoError(t, err)
		require.Len(t, two.Agents, 2)
		assert.Equal(t, "math_solver/checker", two.Next)
		all, err := rt.List(ctx, root.Root, agent.ListOptions{Path: "math_solver", Limit: 3})
		require.NoError(t, err)
		assert.Len(t, all.Agents, 3)
		assert.Empty(t, all.Next, "exactly Limit agents and no more: the last page")

		// After may be unknown (a retired or never-created agent) below Path:
		// the page resumes where it would stand.
		gap, err := rt.List(ctx, root.Root, agent.ListOptions{Path: "math_solver", After: "math_solver/d"})
		require.NoError(t, err)
		require.Len(t, gap.Agents, 1)
		assert.Equal(t, "math_solver/equation_parser", gap.Agents[0].Ref.Path)

		for _, after := range []string{"writer", "math", "math_solver-x", "other/math_solver"} {
			_, err := rt.List(ctx, root.Root, agent.ListOptions{Path: "math_solver", After: after})
			require.ErrorIs(t, err, agent.ErrInvalidCursor, after)
			assert.Contains(t, err.Error(), `"`+after+`"`)
			assert.Contains(t, err.Error(), `"math_solver"`)
		}
	})
}

// Executors reach catalog members typed; a member a recipe names and the
// host lacks fails resolution unless the catalog allows it.
func TestCatalogMembers(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	tr := buildTree(t, rt, root)

	task, err := rt.Resolve(ctx, tr.parseRef)
	require.NoError(t, err)
	m, ok := task.Capability(events.KindModule, "math")
	require.True(t, ok)
	sqrt, err := agent.Member[func(float64) float64](m, "sqrt")
	require.NoError(t, err)
	assert.Equal(t, 3.0, sqrt(9))
	_, err = agent.Member[string](m, "sqrt")
	require.ErrorIs(t, err, agent.ErrMemberType)
	require.ErrorContains(t, err, "func(float64) float64")
	_, err = agent.Member[func(float64) float64](m, "cos")
	require.ErrorIs(t, err, agent.ErrUnknownMember, "cos is not the parser's")
	_, err = agent.Func[func(float64) float64](m)
	require.ErrorIs(t, err, agent.ErrMemberType, "a module is no fn")

	rootTask, err := rt.Resolve(ctx, tr.rootTask)
	require.NoError(t, err)
	typ, ok := rootTask.Capability(events.KindType, "Agent")
	require.True(t, ok)
	rtype, err := agent.Member[reflect.Type](typ, "Agent")
	require.NoError(t, err)
	assert.Equal(t, reflect.TypeFor[*AgentType](), rtype)

	// A host whose math lacks "pi", which the solver's recipe names.
	partial := func() *agent.Catalog {
		cat := agent.NewCatalog()
		require.NoError(t, cat.AddModule("math", map[string]any{"sin": math.Sin, "cos": math.Cos, "sqrt": math.Sqrt}))
		require.NoError(t, cat.AddType("Agent", (*AgentType)(nil)))
		return cat
	}
	strict := w.open(agent.WithCatalog(partial()))
	_, err = strict.RegisterRoot(ctx, w.def)
	require.NoError(t, err)
	_, err = strict.Resolve(ctx, tr.solveRef)
	require.ErrorIs(t, err, agent.ErrUnknownMember)
	require.ErrorContains(t, err, `member "pi"`)
	require.ErrorContains(t, err, `module "math"`)

	cat := partial()
	cat.AllowMissingMembers()
	lenient := w.open(agent.WithCatalog(cat))
	_, err = lenient.RegisterRoot(ctx, w.def)
	require.NoError(t, err)
	task, err = lenient.Resolve(ctx, tr.solveRef)
	require.NoError(t, err)
	assert.Equal(t, []string{"cos", "sin", "sqrt"}, memberNames(t, task, events.KindModule, "math"))
	assert.False(t, errors.Is(err, agent.ErrUnknownMember))
}
