package agent_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
)

// hookLog runs before once, just before the next append: it lets another
// process change the registry after the runtime checked a write and
// before the write reaches the log.
type hookLog struct {
	*natsstore.Log
	before func()
}

// openHooked opens a runtime on a hookLog of the world's log (with opts)
// and registers the world's root in it.
func openHooked(t *testing.T, w *world, opts ...agent.Option) (*agent.Runtime, *hookLog) {
	t.Helper()
	hl := &hookLog{Log: w.log()}
	all := append([]agent.Option{agent.WithLog(hl, nil), agent.WithCatalog(newCatalog(t, true)), agent.WithLogger(testLogger(t))}, opts...)
	rt, err := agent.Open(context.Background(), all...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt.Close() })
	_, err = rt.RegisterRoot(context.Background(), w.def)
	require.NoError(t, err)
	return rt, hl
}

func (h *hookLog) AppendEvent(ctx context.Context, m events.Message) (natsstore.Appended, error) {
	if f := h.before; f != nil {
		h.before = nil
		f()
	}
	return h.Log.AppendEvent(ctx, m)
}

// Optimistic concurrency guards the written agent's own subject only. When
// another process revokes from or retires the parent between the check and
// the append, the fold refuses the stored event; the write must report
// that, not success.
func TestConcurrentChangeBetweenCheckAndAppend(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	other, root := w.openRegistered()
	tr := buildTree(t, other, root)

	hl := &hookLog{Log: w.log()}
	rt, err := agent.Open(ctx, agent.WithLog(hl, nil), agent.WithCatalog(newCatalog(t, true)), agent.WithLogger(testLogger(t)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt.Close() })
	_, err = rt.RegisterRoot(ctx, w.def)
	require.NoError(t, err)

	t.Run("GrantWhileParentLosesIt", func(t *testing.T) {
		hl.before = func() { require.NoError(t, errOf(other.Revoke(ctx, tr.solver, events.KindModule, "math"))) }
		_, err := rt.Grant(ctx, tr.parser, mathCap("sin"), agent.Replace())
		require.ErrorIs(t, err, agent.ErrEscalation)
		require.ErrorContains(t, err, "not applied")
		var esc *agent.EscalationError
		require.ErrorAs(t, err, &esc, "a write refused by the fold still carries the facts")
		require.Equal(t, tr.solver.Path, esc.Parent)
		require.Empty(t, esc.Members, "the parent lost the whole capability")
		require.NoError(t, inspect.View(ctx, rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
			require.Empty(t, reg.Agents[tr.parser.Path].Capabilities)
			return nil
		}))
		// Asked again, the refusal comes before anything is written.
		seq := lastRootSeq(t, hl.Log, w.fp)
		require.ErrorIs(t, errOf(rt.Grant(ctx, tr.parser, mathCap("sin"))), agent.ErrEscalation)
		require.Equal(t, seq, lastRootSeq(t, hl.Log, w.fp))
	})

	t.Run("CreateWhileParentRetired", func(t *testing.T) {
		hl.before = func() { require.NoError(t, errOf(other.Retire(ctx, tr.solver, "replaced"))) }
		_, _, err := rt.Create(ctx, tr.solver, agent.Spec{Name: "kid", Tasks: []events.TaskDef{solveTask()}})
		require.ErrorIs(t, err, agent.ErrRetired)
		require.ErrorContains(t, err, "math_solver/kid")
		var ret *agent.RetiredError
		require.ErrorAs(t, err, &ret)
		require.Equal(t, tr.solver.Path, ret.Path)
		require.NotZero(t, ret.Seq)
		require.NoError(t, inspect.View(ctx, rt, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
			require.NotContains(t, reg.Agents, "math_solver/kid")
			return nil
		}))
	})
}
