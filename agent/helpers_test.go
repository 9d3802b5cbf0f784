package agent_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

// noFollow runs the tests' runtimes without following the log (every
// write through the ancestor chain); CI runs the package both ways.
var noFollow = flag.Bool("agent.nofollow", false, "open the tests' runtimes with WithFollow(false)")

// tWriter sends log lines of the code under test to t.Log, so they show
// only when a test fails.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// syncBuffer collects log output a test inspects.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// capturingLogger logs to t.Log and to the returned buffer.
func capturingLogger(t testing.TB) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	w := io.MultiWriter(tWriter{t}, buf)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// AgentType is the "Agent" type the host offers (the class an architect
// uses to create agents).
type AgentType struct{ Name string }

func helper() {}

// newCatalog is the host's catalog: module math (with a private member)
// and type Agent. withMath false leaves math out.
func newCatalog(t testing.TB, withMath bool) *agent.Catalog {
	t.Helper()
	cat := agent.NewCatalog()
	if withMath {
		require.NoError(t, cat.AddModule("math", map[string]any{
			"sin": math.Sin, "cos": math.Cos, "pi": math.Pi, "tan": math.Tan, "sqrt": math.Sqrt,
			"_helper": helper,
		}))
	}
	require.NoError(t, cat.AddType("Agent", (*AgentType)(nil)))
	require.NoError(t, cat.AddFunc("eval", func(string) (float64, error) { return 0, nil }))
	return cat
}

func str(required bool, name string) events.Field {
	return events.Field{Name: name, Schema: events.Schema{Type: "string"}, Required: required}
}

func architectDef() events.RootDef {
	return events.RootDef{
		Name:   "architect",
		Primer: "You create specialist agents and hand back their tasks.",
		Capabilities: []events.Capability{
			{Kind: events.KindModule, Name: "math", Visibility: events.VisibilityLow},
			{Kind: events.KindType, Name: "Agent", Visibility: events.VisibilityMedium},
		},
		Tasks: []events.TaskDef{{
			Name:   "create_specialist",
			Doc:    "Create an agent for the prompt and return its task.",
			Input:  events.Schema{Type: "object", Fields: []events.Field{str(true, "prompt")}},
			Output: events.Schema{Type: "any"},
		}},
	}
}

func solveTask() events.TaskDef {
	return events.TaskDef{
		Name:   "solve_math_problem",
		Doc:    "Solve the equation and return the solution.",
		Input:  events.Schema{Type: "object", Fields: []events.Field{str(true, "equation")}},
		Output: events.Schema{Type: "string"},
	}
}

func parseTask() events.TaskDef {
	return events.TaskDef{
		Name: "parse_equation",
		Doc:  "Parse an equation into terms.",
		Input: events.Schema{Type: "object", Fields: []events.Field{
			str(true, "text"),
			{Name: "max_terms", Schema: events.Schema{Type: "integer"}},
		}},
		Output: events.Schema{Type: "array", Items: &events.Schema{Type: "string"}},
	}
}

func mathCap(include ...string) events.Capability {
	return events.Capability{Kind: events.KindModule, Name: "math", Include: include}
}

// world is one JetStream server shared by the runtimes of a test.
type world struct {
	t   *testing.T
	url string
	def events.RootDef
	fp  string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	srv := testutil.RunServer(t)
	def := architectDef()
	return &world{t: t, url: srv.ClientURL(), def: def, fp: def.Fingerprint()}
}

// open opens a runtime on the world's server with the full catalog (unless
// an option replaces it), closed in t.Cleanup.
func (w *world) open(opts ...agent.Option) *agent.Runtime {
	w.t.Helper()
	all := append([]agent.Option{
		agent.WithFollow(!*noFollow),
		agent.WithNATSURL(w.url),
		agent.WithCatalog(newCatalog(w.t, true)),
		agent.WithLogger(testLogger(w.t)),
	}, opts...)
	rt, err := agent.Open(context.Background(), all...)
	require.NoError(w.t, err)
	w.t.Cleanup(func() { _ = rt.Close() })
	return rt
}

// openRegistered opens a runtime and registers the architect root in it.
func (w *world) openRegistered(opts ...agent.Option) (*agent.Runtime, agent.AgentRef) {
	w.t.Helper()
	rt := w.open(opts...)
	root, err := rt.RegisterRoot(context.Background(), w.def)
	require.NoError(w.t, err)
	require.Equal(w.t, w.fp, string(root.Root))
	require.Empty(w.t, root.Path)
	return rt, root
}

// log opens the event log on a connection of its own.
func (w *world) log() *natsstore.Log {
	w.t.Helper()
	nc := testutil.Connect(w.t, w.url)
	l, err := natsstore.OpenLog(context.Background(), nc, natsstore.Config{})
	require.NoError(w.t, err)
	return l
}

func lastRootSeq(t *testing.T, l *natsstore.Log, root string) uint64 {
	t.Helper()
	seq, err := l.LastRootSeq(context.Background(), root)
	require.NoError(t, err)
	return seq
}

// tree is the dogfood tree: architect/math_solver/equation_parser.
type tree struct {
	solver, parser     agent.AgentRef
	solveRef, parseRef agent.TaskRef
	rootTask           agent.TaskRef
}

func buildTree(t *testing.T, rt *agent.Runtime, root agent.AgentRef) tree {
	t.Helper()
	ctx := context.Background()
	solver, _, err := rt.Create(ctx, root, agent.Spec{
		Name:         "math_solver",
		Primer:       "You solve equations.",
		Capabilities: []events.Capability{mathCap("sin", "cos", "pi", "sqrt")},
		Tasks:        []events.TaskDef{solveTask()},
	})
	require.NoError(t, err)
	require.Equal(t, agent.AgentRef{Root: root.Root, Path: "math_solver"}, solver)
	parser, _, err := rt.Create(ctx, solver, agent.Spec{
		Name:         "equation_parser",
		Primer:       "You parse equations.",
		Capabilities: []events.Capability{mathCap("sin", "sqrt")},
	})
	require.NoError(t, err)
	require.Equal(t, "math_solver/equation_parser", parser.Path)
	parseRef, _, err := rt.DefineTask(ctx, parser, parseTask())
	require.NoError(t, err)
	require.Equal(t, agent.TaskRef{Root: root.Root, Path: "math_solver/equation_parser", Task: "parse_equation"}, parseRef)
	return tree{
		solver: solver, parser: parser, parseRef: parseRef,
		solveRef: agent.TaskRef{Root: root.Root, Path: "math_solver", Task: "solve_math_problem"},
		rootTask: agent.TaskRef{Root: root.Root, Task: "create_specialist"},
	}
}

// memberNames returns the member names of the task's capability, nil if
// the task does not hold it.
func memberNames(t *testing.T, task *agent.Task, kind events.Kind, name string) []string {
	t.Helper()
	c, ok := task.Capability(kind, name)
	if !ok {
		return nil
	}
	return c.MemberNames()
}

// errOf drops a write's receipt: for assertions on the error alone.
func errOf[T any](_ T, err error) error { return err }
