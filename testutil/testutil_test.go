package testutil_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

// TestClusterR3: the library works on a 3-node loopback cluster with an R3
// stream, and a second runtime connected to another node resolves what the
// first wrote.
func TestClusterR3(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster start-up takes a few seconds")
	}
	ctx := context.Background()
	servers := testutil.RunCluster(t, 3)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cat := agent.NewCatalog()
	require.NoError(t, cat.AddModule("math", map[string]any{"sqrt": 1}))
	exec := agent.ExecutorFunc(func(ctx context.Context, c *agent.Call) (any, error) { return c.Task.Ref.Path, nil })
	def := events.RootDef{Name: "architect", Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}}}
	task := events.TaskDef{Name: "solve", Input: events.Schema{Type: "object"}, Output: events.Schema{Type: "string"}}

	w, err := agent.Open(ctx, agent.WithNATSURL(servers[0].ClientURL()), agent.WithReplicas(3), agent.WithCatalog(cat), agent.WithLogger(quiet))
	require.NoError(t, err)
	defer w.Close()
	root, err := w.RegisterRoot(ctx, def)
	require.NoError(t, err)
	child, err := w.Create(ctx, root, agent.Spec{Name: "solver", Capabilities: def.Capabilities, Tasks: []events.TaskDef{task}})
	require.NoError(t, err)

	r, err := agent.Open(ctx, agent.WithNATSURL(servers[2].ClientURL()), agent.WithReplicas(3), agent.WithCatalog(cat), agent.WithExecutor(exec), agent.WithLogger(quiet))
	require.NoError(t, err)
	defer r.Close()
	_, err = r.RegisterRoot(ctx, def)
	require.NoError(t, err)
	tk, err := r.Resolve(ctx, agent.TaskRef{Root: child.Root, Path: child.Path, Task: "solve"})
	require.NoError(t, err)
	out, err := tk.Call(ctx, nil)
	require.NoError(t, err)
	require.Equal(t, "solver", out)
	hw, _, err := w.StateHash(ctx, root.Root)
	require.NoError(t, err)
	hr, _, err := r.StateHash(ctx, root.Root)
	require.NoError(t, err)
	require.Equal(t, hw, hr)
}

// TestPublishRaw: raw bytes land on the stream and the fold records them as
// a violation.
func TestPublishRaw(t *testing.T) {
	ctx := context.Background()
	srv := testutil.RunServer(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, err := agent.Open(ctx, agent.WithNATSURL(srv.ClientURL()), agent.WithLogger(quiet))
	require.NoError(t, err)
	defer rt.Close()
	root, err := rt.RegisterRoot(ctx, events.RootDef{Name: "r"})
	require.NoError(t, err)
	nc := testutil.Connect(t, srv.ClientURL())
	seq := testutil.PublishRaw(t, nc, events.Subject("agentreg", root.Root, ""), []byte{0xc1}, nil)
	require.NoError(t, rt.View(ctx, root.Root, func(reg *projector.Registry) error {
		require.Len(t, reg.Violations, 1)
		require.Equal(t, seq, reg.Violations[0].Seq)
		return nil
	}))
}
