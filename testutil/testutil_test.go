package testutil_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
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
	child, _, err := w.Create(ctx, root, agent.Spec{Name: "solver", Capabilities: def.Capabilities, Tasks: []events.TaskDef{task}})
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
	seq := testutil.PublishRaw(t, nc, events.Subject("agentreg", string(root.Root), ""), []byte{0xc1}, nil)
	require.NoError(t, inspect.View(ctx, rt, string(root.Root), func(reg *projector.Registry) error {
		require.Len(t, reg.Violations, 1)
		require.Equal(t, seq, reg.Violations[0].Seq)
		return nil
	}))
}

// TestRestart: a restarted server comes back on the same port with the
// same store, and a client that reconnects forever finds its data.
func TestRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	nc := testutil.Connect(t, url)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	require.Equal(t, uint64(1), testutil.PublishRaw(t, nc, "s.x", []byte("before"), nil))

	srv = testutil.Restart(t, srv)
	require.Equal(t, url, srv.ClientURL())
	srv = testutil.Restart(t, srv) // a restarted server restarts too
	require.Equal(t, url, srv.ClientURL())
	var msg *jetstream.RawStreamMsg
	require.Eventually(t, func() bool {
		s, err := js.Stream(ctx, "S")
		if err != nil {
			return false
		}
		msg, err = s.GetMsg(ctx, 1)
		return err == nil
	}, 10*time.Second, 10*time.Millisecond, "the stream and its message survive restarts")
	require.Equal(t, "before", string(msg.Data))
}
