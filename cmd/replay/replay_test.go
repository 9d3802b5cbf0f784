package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/snapshot"
	"github.com/agentreg/agentreg/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// ---- histories made by the library ----

// tWriter sends log lines of the code under test to t.Log, so they show
// only when a test fails.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func quietLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// fixedClock stamps the n-th write at 18:40:00 + n seconds, so that the
// times replay prints are the same on every run.
func fixedClock() func() time.Time {
	start := time.Date(2026, 11, 24, 18, 40, 0, 0, time.UTC)
	var n atomic.Int64
	return func() time.Time { return start.Add(time.Duration(n.Add(1)-1) * time.Second) }
}

func catalog(t testing.TB) *agent.Catalog {
	t.Helper()
	cat := agent.NewCatalog()
	require.NoError(t, cat.AddModule("math", map[string]any{"sin": math.Sin, "cos": math.Cos, "pi": math.Pi, "tan": math.Tan}))
	require.NoError(t, cat.AddType("Agent", agent.Spec{}))
	return cat
}

func runtimeOptions(t testing.TB) []agent.Option {
	return []agent.Option{agent.WithCatalog(catalog(t)), agent.WithLogger(quietLogger(t)), agent.WithClock(fixedClock())}
}

func architect() events.RootDef {
	return events.RootDef{
		Name:   "architect",
		Primer: "You design specialist agents and hand back their tasks.",
		Capabilities: []events.Capability{
			{Kind: events.KindModule, Name: "math", Visibility: events.VisibilityLow},
			{Kind: events.KindType, Name: "Agent", Visibility: events.VisibilityMedium},
		},
		Tasks: []events.TaskDef{task("create_specialist", "prompt", events.Schema{Type: "any"})},
	}
}

func task(name, field string, out events.Schema) events.TaskDef {
	return events.TaskDef{
		Name:   name,
		Doc:    "Task " + name + ".",
		Input:  events.Schema{Type: "object", Fields: []events.Field{{Name: field, Schema: events.Schema{Type: "string"}, Required: true}}},
		Output: out,
	}
}

func mathCap(include ...string) events.Capability {
	return events.Capability{Kind: events.KindModule, Name: "math", Include: include}
}

var agentCap = events.Capability{Kind: events.KindType, Name: "Agent"}

// history is a root's history written by the library against a JetStream
// server started in the test:
//
//	seq 1  RootRegistered architect (module math, type Agent)
//	seq 2  AgentCreated math_solver, carrying math include [sin cos pi], type Agent, task solve_math_problem
//	seq 3  AgentCreated math_solver/equation_parser, carrying math include ["sin"], task parse_equation
//
// Every write is made by user:alice.
type history struct {
	t      *testing.T
	ctx    context.Context
	url    string
	nc     *nats.Conn
	rt     *agent.Runtime
	root   agent.AgentRef
	solver agent.AgentRef
	parser agent.AgentRef
}

func newHistory(t *testing.T) *history {
	t.Helper()
	srv := testutil.RunServer(t)
	h := &history{t: t, ctx: agent.WithActor(t.Context(), "user:alice"), url: srv.ClientURL()}
	h.nc = testutil.Connect(t, h.url)
	// Deletes allowed: tests tamper with the stream as an operator who
	// allowed them could (OpenLog creates it with deletes denied).
	rt, err := agent.Open(h.ctx, append(runtimeOptions(t), agent.WithNATSURL(h.url),
		agent.WithStream(natsstore.Config{AllowDeletes: true}))...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt.Close() })
	h.rt = rt
	h.root, err = rt.RegisterRoot(h.ctx, architect())
	require.NoError(t, err)
	h.solver = h.create(h.ctx, h.root, agent.Spec{
		Name: "math_solver", Primer: "You solve math problems.",
		Capabilities: []events.Capability{mathCap("sin", "cos", "pi"), agentCap},
		Tasks:        []events.TaskDef{task("solve_math_problem", "equation", events.Schema{Type: "string"})},
	})
	h.parser = h.create(h.ctx, h.solver, agent.Spec{
		Name: "equation_parser", Primer: "You parse equations.",
		Capabilities: []events.Capability{mathCap("sin")},
		Tasks:        []events.TaskDef{task("parse_equation", "text", events.Schema{Type: "array", Items: &events.Schema{Type: "string"}})},
	})
	require.Equal(t, uint64(3), h.seq())
	return h
}

func (h *history) create(ctx context.Context, parent agent.AgentRef, spec agent.Spec) agent.AgentRef {
	h.t.Helper()
	ref, _, err := h.rt.Create(ctx, parent, spec)
	require.NoError(h.t, err)
	return ref
}

// seq is the stream sequence of the root's newest event.
func (h *history) seq() uint64 {
	h.t.Helper()
	_, seq, err := h.rt.StateHash(h.ctx, h.root.Root)
	require.NoError(h.t, err)
	return seq
}

// view calls fn with the runtime's registry of the root.
func (h *history) view(fn func(reg *projector.Registry)) {
	h.t.Helper()
	require.NoError(h.t, inspect.View(h.ctx, h.rt, string(h.root.Root), func(reg *projector.Registry) error {
		fn(reg)
		return nil
	}))
}

func (h *history) stream() jetstream.Stream {
	h.t.Helper()
	js, err := jetstream.New(h.nc)
	require.NoError(h.t, err)
	s, err := js.Stream(h.ctx, "AGENTREG")
	require.NoError(h.t, err)
	return s
}

func (h *history) subject(path string) string {
	return events.Subject("agentreg", string(h.root.Root), path)
}

func ref(a agent.AgentRef, taskName string) string {
	return agent.TaskRef{Root: a.Root, Path: a.Path, Task: taskName}.String()
}

// ---- running replay ----

// replay runs the command in-process and returns its stdout and stderr.
func replay(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err = Run(ctx, args, &out, &errb)
	return out.String(), errb.String(), err
}

func replayOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errb, err := replay(t, args...)
	require.NoError(t, err, "replay %s\nstderr: %s", strings.Join(args, " "), errb)
	return out
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(s), &v), "output: %s", s)
	return v
}

func decodeLines[T any](t *testing.T, s string) []T {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	out := []T{}
	for dec.More() {
		var v T
		require.NoError(t, dec.Decode(&v), "output: %s", s)
		out = append(out, v)
	}
	return out
}

func registryJSON(t *testing.T, args ...string) *registryView {
	t.Helper()
	return decode[*registryView](t, replayOK(t, append([]string{"registry", "--json"}, args...)...))
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.MkdirAll("testdata", 0o755))
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run 'go test ./cmd/replay -update' to write it")
	require.Equal(t, string(want), got, "golden %s differs; if the change is intended, rerun with -update", path)
}

func paths(v *registryView) []string {
	var out []string
	for _, a := range v.Agents {
		out = append(out, a.Path)
	}
	return out
}

// ---- tests ----

// The registry at the sequence of a revocation and at the one before differ
// by the revoked capability only: gone from the agent's grants and
// effective set and from those of its descendants, nowhere else.
func TestRegistryAtSeqAroundRevocation(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	// A sibling holding the same capability: the revocation must not touch it.
	h.create(h.ctx, h.root, agent.Spec{Name: "writer", Primer: "You write.", Capabilities: []events.Capability{mathCap("pi")}})
	before := h.seq()
	require.NoError(t, errOf(h.rt.Revoke(h.ctx, h.solver, events.KindModule, "math")))
	after := h.seq()
	require.Equal(t, before+1, after)

	url := h.url
	vBefore := registryJSON(t, "--nats-url", url, "--seq", fmt.Sprint(before))
	vAfter := registryJSON(t, "--nats-url", url, "--seq", fmt.Sprint(after))
	require.Equal(t, vAfter, registryJSON(t, "--nats-url", url), "the registry now is the one at the last sequence")
	require.Equal(t, before, vBefore.Seq)
	require.Equal(t, after, vAfter.Seq)
	require.NotEqual(t, vBefore.StateHash, vAfter.StateHash)
	require.Equal(t, "architect", vAfter.Name)
	require.Equal(t, string(h.root.Root), vAfter.Root)
	require.Equal(t, []string{"math_solver", "math_solver/equation_parser", "writer"}, paths(vAfter))

	const key = "module:math"
	removed := 0
	for _, a := range vBefore.Agents {
		if a.Path != "math_solver" && !events.IsDescendant(a.Path, "math_solver") {
			continue
		}
		n := len(a.Granted) + len(a.Effective)
		a.Granted = slices.DeleteFunc(a.Granted, func(c wireCap) bool { return c.capability().Key() == key })
		a.Effective = slices.DeleteFunc(a.Effective, func(e effectiveView) bool { return e.Capability.capability().Key() == key })
		removed += n - len(a.Granted) - len(a.Effective)
	}
	require.Equal(t, 4, removed, "before the revocation math is granted and effective on math_solver and on equation_parser")
	vBefore.Seq, vBefore.StateHash = vAfter.Seq, vAfter.StateHash
	require.Equal(t, vAfter, vBefore, "apart from the revoked capability, the registries are the same")

	// What is left: math_solver keeps type Agent; writer keeps math.
	require.Equal(t, capsOf([]events.Capability{agentCap.Normalized()}), vAfter.Agents[0].Granted)
	require.Empty(t, vAfter.Agents[1].Granted)
	require.Equal(t, capsOf([]events.Capability{mathCap("pi").Normalized()}), vAfter.Agents[2].Granted)

	text := replayOK(t, "registry", "--nats-url", url, "--seq", fmt.Sprint(before))
	t.Logf("replay registry --seq %d:\n%s", before, text)
	require.Contains(t, text, fmt.Sprintf("root architect (%s) as of seq %d: folded up to seq %d", h.root.Root, before, before))
	// Created: when the server stored it, and what the writer's (fixed)
	// clock said, which is days off.
	require.Regexp(t, `\n  math_solver\n    created at seq 2, \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, by user:alice; primer "You solve math problems."  \(writer's clock said 2026-11-24T18:40:01Z\)\n`, text)
	stored, err := time.Parse(time.RFC3339Nano, vBefore.Agents[0].CreatedStored)
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), stored, time.Minute)
	require.Equal(t, "2026-11-24T18:40:01Z", vBefore.Agents[0].CreatedAt)
	require.Contains(t, text, "\n    cap  module math include=[cos pi sin] exclude=[_*] vis=high (members: cos pi sin)\n")
	require.Contains(t, text, "\n    task solve_math_problem(equation: string) -> string\n")
	require.Contains(t, text, "\n      cap  module math include=[sin] exclude=[_*] vis=high (members: sin)\n")
	text = replayOK(t, "registry", "--nats-url", url)
	require.NotContains(t, text, "cos pi sin", "after the revocation no agent's math goes through math_solver's grant")
	require.Contains(t, text, "\n    cap  type Agent include=[*] exclude=[_*] vis=high\n")
}

// lineage shows the chain from the root down to the agent and the agent's
// subtree, each step with its sequence and actor, and nothing else of the
// root (siblings are left out).
func TestLineage(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	h.create(h.ctx, h.root, agent.Spec{Name: "writer", Primer: "You write.", Capabilities: []events.Capability{mathCap("pi")}}) // seq 4
	bob := agent.WithActor(t.Context(), "user:bob")
	require.NoError(t, errOf(h.rt.Grant(bob, h.parser, agentCap))) // seq 5
	// A retired child, created by a principal whose name needs quoting in
	// a diagram.
	checker := h.create(agent.WithActor(t.Context(), `ci:"nightly"`), h.solver, agent.Spec{Name: "checker", Primer: "You check."}) // seq 6
	require.NoError(t, errOf(h.rt.Retire(h.ctx, checker, "flaky")))                                                                // seq 7
	// A sibling whose name mangles like math_solver's would.
	h.create(h.ctx, h.root, agent.Spec{Name: "math-solver", Primer: "Another."}) // seq 8
	require.Equal(t, uint64(8), h.seq())
	url := h.url

	top := decode[*node](t, replayOK(t, "lineage", "--nats-url", url, "--json", "math_solver"))
	type st struct {
		Seq   uint64
		Type  events.Type
		Actor string
	}
	steps := func(n *node) []st {
		var out []st
		for _, s := range n.Steps {
			out = append(out, st{s.Seq, s.Type, s.Actor})
		}
		return out
	}
	const alice = "user:alice"
	require.Equal(t, "architect", top.Name)
	require.Equal(t, "", top.Path)
	require.False(t, top.Selected)
	require.Equal(t, []st{{1, events.RootRegistered, alice}}, steps(top))
	require.Len(t, top.Children, 1, "the siblings writer and math-solver are not in math_solver's lineage")
	solver := top.Children[0]
	require.Equal(t, "math_solver", solver.Path)
	require.True(t, solver.Selected)
	require.False(t, solver.Retired)
	require.Equal(t, []st{{2, events.AgentCreated, alice}}, steps(solver))
	// The creation's step carries the grants and the task the creation
	// made, and the grants are the ones the fold recorded for it: at the
	// creation's sequence, time and actor.
	require.Equal(t, `primer "You solve math problems."`, solver.Steps[0].Detail)
	require.Equal(t, capsOf([]events.Capability{mathCap("sin", "cos", "pi").Normalized(), agentCap.Normalized()}), solver.Steps[0].Grants)
	require.Equal(t, []events.TaskDef{task("solve_math_problem", "equation", events.Schema{Type: "string"})}, solver.Steps[0].Tasks)
	h.view(func(reg *projector.Registry) {
		for _, p := range []string{"math_solver", "math_solver/equation_parser"} {
			a := reg.Agents[p]
			var held []events.Capability
			for _, g := range a.Capabilities {
				if g.Seq == a.CreatedSeq {
					require.Equal(t, fmtTime(a.CreatedAt), fmtTime(g.Time), p)
					require.Equal(t, alice, g.Actor, p)
					held = append(held, g.Capability)
				}
			}
			n := lineageNode(t, top, p)
			require.Equal(t, a.CreatedSeq, n.Steps[0].Seq, p)
			require.Equal(t, time.Unix(0, a.CreatedAt).UTC().Format(time.RFC3339Nano), n.Steps[0].Claimed, p)
			require.ElementsMatch(t, capsOf(held), n.Steps[0].Grants, "%s: the grants lineage shows for the creation are the ones the fold recorded for it", p)
		}
	})
	require.Len(t, solver.Children, 2)
	require.Equal(t, "math_solver/checker", solver.Children[0].Path)
	require.True(t, solver.Children[0].Retired)
	require.Equal(t, []st{{6, events.AgentCreated, `ci:"nightly"`}, {7, events.AgentRetired, alice}}, steps(solver.Children[0]))
	require.Empty(t, solver.Children[0].Steps[0].Grants, "a creation with no capabilities shows none")
	require.Empty(t, solver.Children[0].Steps[0].Tasks)
	parser := solver.Children[1]
	require.Equal(t, "math_solver/equation_parser", parser.Path)
	require.Equal(t, "equation_parser", parser.Name)
	require.False(t, parser.Selected)
	require.Equal(t, []st{{3, events.AgentCreated, alice}, {5, events.CapabilityGranted, "user:bob"}}, steps(parser))
	require.Equal(t, capsOf([]events.Capability{mathCap("sin").Normalized()}), parser.Steps[0].Grants)
	require.Equal(t, []string{"parse_equation"}, []string{parser.Steps[0].Tasks[0].Name})
	require.Len(t, parser.Steps[0].Tasks, 1)
	require.Empty(t, parser.Children)
	require.Equal(t, "type Agent include=[*] exclude=[_*] vis=high", parser.Steps[1].Detail)
	require.Empty(t, parser.Steps[1].Grants, "a grant's capability is its detail, not a creation's grants")

	// The agent may be named <fingerprint>/<path>, and a point cuts the steps.
	early := decode[*node](t, replayOK(t, "lineage", "--nats-url", url, "--json", "--seq", "4", string(h.root.Root)+"/math_solver/equation_parser"))
	require.Len(t, early.Children[0].Children, 1, "checker is created after the point")
	require.True(t, early.Children[0].Children[0].Selected)
	require.Len(t, early.Children[0].Children[0].Steps, 1, "bob's grant at seq 5 is after the point")

	// The whole root in a diagram: one node per agent, however the names
	// look alike.
	dot := replayOK(t, "lineage", "--nats-url", url, "--format", "dot", string(h.root.Root)+"/")
	nodes := regexp.MustCompile(`(?m)^  (\w+) \[label="([^\\]*)\\n`).FindAllStringSubmatch(dot, -1)
	ids, names := map[string]bool{}, []string{}
	for _, m := range nodes {
		ids[m[1]] = true
		names = append(names, m[2])
	}
	require.Equal(t, []string{"architect", "math-solver", "math_solver", "checker", "equation_parser", "writer"}, names)
	require.Len(t, ids, 6, "node ids are distinct:\n%s", dot)

	text := replayOK(t, "lineage", "--nats-url", url, "math_solver")
	t.Logf("replay lineage math_solver:\n%s", text)
	// Each step shows the time the server stored it (today, not the fixed
	// clock's), then the writer's claimed time, which differs from it.
	storedAt := regexp.MustCompile(`(seq \d+ +)(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)`)
	stamps := storedAt.FindAllStringSubmatch(text, -1)
	require.Len(t, stamps, 6)
	for _, m := range stamps {
		at, err := time.Parse(time.RFC3339, m[2])
		require.NoError(t, err)
		require.WithinDuration(t, time.Now(), at, time.Minute, "stored time %s is the server's", m[2])
	}
	golden(t, "lineage_math_solver.txt", storedAt.ReplaceAllString(text, "${1}YYYY-MM-DDThh:mm:ssZ"))
	golden(t, "lineage_math_solver.dot", replayOK(t, "lineage", "--nats-url", url, "--format", "dot", "math_solver"))
	golden(t, "lineage_math_solver.mmd", replayOK(t, "lineage", "--nats-url", url, "--format", "mermaid", "math_solver"))

	_, _, err := replay(t, "lineage", "--nats-url", url, "nobody")
	require.ErrorContains(t, err, `agent "nobody" does not exist`)
	require.NotErrorIs(t, err, errUsage)
}

// lineageNode finds the node of path in a lineage tree.
func lineageNode(t *testing.T, top *node, path string) *node {
	t.Helper()
	var found *node
	var walk func(n *node)
	walk = func(n *node) {
		if n.Path == path {
			found = n
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(top)
	require.NotNil(t, found, "no node %q in the lineage", path)
	return found
}

// diff from a point to now lists exactly the changes made after it.
func TestDiff(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	scratch := h.create(h.ctx, h.root, agent.Spec{Name: "scratch", Primer: "Temporary.", Tasks: []events.TaskDef{task("note", "text", events.Schema{Type: "string"})}})
	from := h.seq()

	require.NoError(t, errOf(h.rt.Grant(h.ctx, h.parser, agentCap)))
	grantSeq := h.seq()
	_, _, err := h.rt.DefineTask(h.ctx, h.solver, task("simplify", "expr", events.Schema{Type: "string"}))
	require.NoError(t, err)
	require.NoError(t, errOf(h.rt.Retire(h.ctx, scratch, "done")))
	retireSeq := h.seq()
	h.create(h.ctx, h.root, agent.Spec{Name: "writer", Primer: "You write.", Capabilities: []events.Capability{mathCap("pi")},
		Tasks: []events.TaskDef{task("write", "topic", events.Schema{Type: "string"})}})
	writerSeq := retireSeq + 1

	changes := decodeLines[change](t, replayOK(t, "diff", "--nats-url", h.url, "--from-seq", fmt.Sprint(from), "--json"))
	type c struct{ Op, Path, What, Key string }
	var got []c
	for _, ch := range changes {
		first := ch.After
		if first == "" {
			first = ch.Before
		}
		key, _, _ := strings.Cut(first, " ")
		got = append(got, c{ch.Op, ch.Path, ch.What, key})
	}
	require.Equal(t, []c{
		{"+", "math_solver", "task", "simplify(expr:"},
		{"+", "math_solver/equation_parser", "grant", "type:Agent"},
		{"+", "math_solver/equation_parser", "effective", "type:Agent"},
		{"~", "scratch", "retired", "true"},
		{"+", "writer", "agent", "created"},
		{"+", "writer", "grant", "module:math"},
		{"+", "writer", "effective", "module:math"},
		{"+", "writer", "task", "write(topic:"},
	}, got)
	require.Equal(t, fmt.Sprintf("true (seq %d)", retireSeq), changes[3].After)
	require.Equal(t, fmt.Sprintf("created at seq %d by user:alice", writerSeq), changes[4].After)
	require.Equal(t, "module:math include=[pi] exclude=[_*] vis=high (members: pi)", changes[6].After)

	// Up to a point: only the grant.
	changes = decodeLines[change](t, replayOK(t, "diff", "--nats-url", h.url, "--from-seq", fmt.Sprint(from), "--seq", fmt.Sprint(grantSeq), "--json"))
	require.Len(t, changes, 2)
	require.Equal(t, []string{"grant", "effective"}, []string{changes[0].What, changes[1].What})

	// Nothing changed between a point and itself.
	require.Empty(t, decodeLines[change](t, replayOK(t, "diff", "--nats-url", h.url, "--from-seq", fmt.Sprint(from), "--seq", fmt.Sprint(from), "--json")))

	text := replayOK(t, "diff", "--nats-url", h.url, "--from-seq", fmt.Sprint(from))
	t.Logf("replay diff --from-seq %d:\n%s", from, text)
	require.Contains(t, text, fmt.Sprintf("root architect (%.12s): seq %d (seq %d) -> now (seq %d): 8 change(s)\n", h.root.Root, from, from, h.seq()))
	require.Contains(t, text, "~ retired    scratch  false  ->  true (seq ")
}

// resolve reports what the library's Resolve gives, from the log alone; a
// retired agent's ref fails and says so, and resolves at a point before.
func TestResolve(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	solverRef, parserRef := ref(h.solver, "solve_math_problem"), ref(h.parser, "parse_equation")

	text := replayOK(t, "resolve", "--nats-url", h.url, solverRef)
	t.Logf("replay resolve:\n%s", text)
	require.Contains(t, text, solverRef+" resolves as of now (registry at seq 3):\n")
	require.Contains(t, text, "  agent   math_solver\n")
	require.Contains(t, text, "  cap     module math include=[cos pi sin] exclude=[_*] vis=high (members: cos pi sin)\n")
	require.Contains(t, text, "  cap     type Agent include=[*] exclude=[_*] vis=high\n")
	require.NotContains(t, text, "∩")
	require.Contains(t, text, "  task    solve_math_problem(equation: string) -> string\n")

	for _, r := range []string{solverRef, parserRef, ref(h.root, "create_specialist")} {
		out := decode[resolveOutput](t, replayOK(t, "resolve", "--nats-url", h.url, "--json", r))
		require.Empty(t, out.Error)
		tr, err := agent.ParseTaskRef(r)
		require.NoError(t, err)
		lib, err := h.rt.Resolve(h.ctx, tr)
		require.NoError(t, err)
		require.Equal(t, lib.Def, out.Resolved.Task)
		require.Equal(t, lib.Primer, out.Resolved.Primer)
		require.Equal(t, lib.Seq, out.Resolved.Seq)
		require.Len(t, out.Resolved.Capabilities, len(lib.Capabilities))
		for i, c := range lib.Capabilities {
			one, exact := projector.Effective{Capability: c.Ref, Chain: c.Chain}.Intersected()
			require.True(t, exact)
			require.Equal(t, capOf(one), out.Resolved.Capabilities[i].Capability, r)
			require.Equal(t, capsOf(c.Chain), out.Resolved.Capabilities[i].Chain, r)
		}
	}

	require.NoError(t, errOf(h.rt.Retire(h.ctx, h.parser, "replaced")))
	retired := h.seq()
	out, _, err := replay(t, "resolve", "--nats-url", h.url, parserRef)
	require.ErrorIs(t, err, errUnresolvable)
	require.ErrorContains(t, err, fmt.Sprintf(`agent "math_solver/equation_parser" was retired at seq %d by user:alice`, retired))
	require.Contains(t, out, parserRef+" does not resolve as of now:\n")
	require.Equal(t, exitProblems, exitCode(err, io.Discard))
	_, err = h.rt.Resolve(h.ctx, agent.TaskRef{Root: h.parser.Root, Path: h.parser.Path, Task: "parse_equation"})
	require.ErrorIs(t, err, agent.ErrRetired, "the library agrees")

	js := decode[resolveOutput](t, func() string {
		out, _, err := replay(t, "resolve", "--nats-url", h.url, "--json", parserRef)
		require.ErrorIs(t, err, errUnresolvable)
		return out
	}())
	require.Nil(t, js.Resolved)
	require.Contains(t, js.Error, "retired")

	// Before the retirement it resolved.
	out = replayOK(t, "resolve", "--nats-url", h.url, "--seq", fmt.Sprint(retired-1), parserRef)
	require.Contains(t, out, "  task    parse_equation(text: string) -> []string\n")
	require.Contains(t, out, "  cap     module math include=[sin] exclude=[_*] vis=high (members: sin)\n")

	_, _, err = replay(t, "resolve", "--nats-url", h.url, ref(h.solver, "nope"))
	require.ErrorIs(t, err, errUnresolvable)
	require.ErrorContains(t, err, `has no task "nope" as of now (it has: solve_math_problem)`)
}

// audit is clean on an honest history with a snapshot, and names a snapshot
// whose body does not match a fresh replay.
func TestAuditHonest(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	writer := h.create(h.ctx, h.root, agent.Spec{Name: "writer", Primer: "You write.", Capabilities: []events.Capability{mathCap("pi")}})
	require.NoError(t, errOf(h.rt.Revoke(h.ctx, h.solver, events.KindType, "Agent")))
	require.NoError(t, errOf(h.rt.Retire(h.ctx, writer, "done")))
	_, err := h.rt.Snapshot(h.ctx, h.root.Root)
	require.NoError(t, err)
	last := h.seq()

	text := replayOK(t, "audit", "--nats-url", h.url)
	require.Equal(t, fmt.Sprintf("audit of stream AGENTREG as of now: 1 root(s), %d event(s), 1 snapshot(s)\n", last)+
		fmt.Sprintf("signatures: the history is unsigned (%d events)\n", last)+
		"clean: every hash chain intact, no violations, every snapshot agrees with a fresh replay\n", text)
	rep := decode[auditReport](t, replayOK(t, "audit", "--nats-url", h.url, "--json"))
	require.True(t, rep.Clean)
	require.Empty(t, rep.Problems)
	require.Equal(t, int(last), rep.Events)
	require.Equal(t, 1, rep.Snapshots)
	require.Contains(t, replayOK(t, "snapshots", "--nats-url", h.url), "1 snapshot(s), 0 bad\n")

	// A snapshot that lies: a registry with a primer the log never had,
	// stored under the next sequence with a correct checksum.
	_, _, err = h.rt.DefineTask(h.ctx, h.solver, task("simplify", "expr", events.Schema{Type: "string"}))
	require.NoError(t, err)
	var hdr snapshot.Header
	var body []byte
	h.view(func(reg *projector.Registry) {
		hh, b, err := snapshot.Capture(reg, time.Now())
		require.NoError(t, err)
		lie, err := snapshot.Open(hh, b)
		require.NoError(t, err)
		lie.Agents["math_solver"].Primer = "You obey whoever asks."
		hdr, body, err = snapshot.Capture(lie, time.Now())
		require.NoError(t, err)
	})
	l, err := natsstore.OpenLog(h.ctx, h.nc, natsstore.Config{})
	require.NoError(t, err)
	store, err := natsstore.OpenSnapshots(h.ctx, l)
	require.NoError(t, err)
	require.NoError(t, store.Put(h.ctx, hdr, body))

	out, _, err := replay(t, "audit", "--nats-url", h.url, "--json")
	require.ErrorIs(t, err, errProblems)
	rep = decode[auditReport](t, out)
	require.False(t, rep.Clean)
	require.Equal(t, 2, rep.Snapshots)
	require.Len(t, rep.Problems, 1)
	require.Equal(t, "snapshot", rep.Problems[0].Kind)
	require.Equal(t, last+1, rep.Problems[0].Seq)
	require.Contains(t, rep.Problems[0].Detail, "differs from a fresh replay")

	out, _, err = replay(t, "snapshots", "--nats-url", h.url)
	require.ErrorIs(t, err, errProblems)
	require.Contains(t, out, fmt.Sprintf("seq %-6d", last+1))
	require.Contains(t, out, "BAD: state hash")
	require.Contains(t, out, "2 snapshot(s), 1 bad\n")
}

// tampered is what tamper did, by stream sequence.
type tampered struct {
	edited       uint64 // a copy of math_solver's creation (which carries its math grant) with the grant's include ["*"]
	deleted      uint64 // scratch's first event after its creation (a task definition), deleted
	afterDeleted uint64 // scratch's next event, whose Prev names the deleted one
	garbage      uint64 // bytes that are no event, on equation_parser's subject
	escalation   uint64 // a well-chained grant of math tan to equation_parser
}

// tamper writes a history with the library and then changes the stream
// behind the library's back in four ways.
func tamper(t *testing.T) (*history, tampered) {
	t.Helper()
	h := newHistory(t)
	scratch := h.create(h.ctx, h.root, agent.Spec{Name: "scratch", Primer: "Temporary.", Tasks: []events.TaskDef{task("draft", "text", events.Schema{Type: "string"})}})
	for _, name := range []string{"final", "publish"} {
		_, _, err := h.rt.DefineTask(h.ctx, scratch, task(name, "text", events.Schema{Type: "string"}))
		require.NoError(t, err)
	}
	var grantSeq uint64
	var tp tampered
	h.view(func(reg *projector.Registry) {
		grantSeq = reg.Agents["math_solver"].Capabilities["module:math"].Seq
		tp.deleted = reg.Agents["scratch"].CreatedSeq + 1
		tp.afterDeleted = reg.Agents["scratch"].LastSeq
	})
	require.Equal(t, tp.deleted+1, tp.afterDeleted)
	stream := h.stream()

	// (a) An edit: the bytes of the event that granted math_solver its math
	// (the creation itself) with include ["*"], republished.
	raw, err := stream.GetMsg(h.ctx, grantSeq)
	require.NoError(t, err)
	e, err := events.Decode(raw.Data)
	require.NoError(t, err)
	require.Equal(t, events.AgentCreated, e.Type)
	require.Equal(t, events.SchemaVersion, e.Version)
	require.Equal(t, "module:math", e.Created.Capabilities[0].Key())
	require.Equal(t, []string{"cos", "pi", "sin"}, e.Created.Capabilities[0].Normalized().Include)
	e.Created.Capabilities[0].Include = []string{"*"}
	data, err := events.Encode(e)
	require.NoError(t, err)
	tp.edited = testutil.PublishRaw(t, h.nc, raw.Subject, data, nil)

	// (b) A deletion in the middle of an agent's chain.
	require.NoError(t, stream.DeleteMsg(h.ctx, tp.deleted))

	// (c) Garbage.
	tp.garbage = testutil.PublishRaw(t, h.nc, h.subject(h.parser.Path), []byte("\xc1 this is not an event"), nil)

	// (d) An escalation the runtime refuses, published raw with the right
	// previous hash so that only the invariant check can catch it.
	tan := mathCap("tan")
	require.ErrorIs(t, errOf(h.rt.Grant(h.ctx, h.parser, tan)), agent.ErrEscalation)
	var prev string
	h.view(func(reg *projector.Registry) { prev = reg.LastHash(h.parser.Path) })
	require.NotEmpty(t, prev)
	esc := &events.Event{ID: ulid.Make().String(), Type: events.CapabilityGranted, Version: events.SchemaVersion,
		Root: string(h.root.Root), Path: h.parser.Path, Time: time.Now().UnixNano(), Actor: "user:mallory", Correlation: ulid.Make().String(),
		Prev: prev, Granted: &events.GrantedData{Capability: tan.Normalized()}}
	data, err = events.Encode(esc)
	require.NoError(t, err)
	tp.escalation = testutil.PublishRaw(t, h.nc, h.subject(h.parser.Path), data, nil)
	require.Equal(t, []uint64{tp.garbage + 1, tp.garbage}, []uint64{tp.escalation, tp.edited + 1})
	return h, tp
}

// audit names the sequence and kind of every change made behind the
// library's back, and nothing else.
func TestAuditTampered(t *testing.T) {
	t.Parallel()
	h, tp := tamper(t)

	out, _, err := replay(t, "audit", "--nats-url", h.url, "--json")
	require.ErrorIs(t, err, errProblems)
	rep := decode[auditReport](t, out)
	require.False(t, rep.Clean)
	raw, err := h.stream().GetMsg(h.ctx, tp.edited)
	require.NoError(t, err)
	edited, err := events.Decode(raw.Data)
	require.NoError(t, err)
	editedID := edited.ID
	type p struct {
		Seq  uint64
		Kind string
		Path string
	}
	var got []p
	for _, pr := range rep.Problems {
		got = append(got, p{pr.Seq, pr.Kind, pr.Path})
	}
	require.ElementsMatch(t, []p{
		{tp.edited, "chain", "math_solver"},
		{tp.edited, "duplicate_id", "math_solver"},
		{tp.deleted, "deleted", ""},
		{tp.afterDeleted, "chain", "scratch"},
		{tp.garbage, "malformed", "math_solver/equation_parser"},
		{tp.escalation, "escalation", "math_solver/equation_parser"},
	}, got)
	require.True(t, slices.IsSortedFunc(rep.Problems, func(a, b problem) int { return int(a.Seq) - int(b.Seq) }), "problems in stream order")
	require.Equal(t, map[string]int{"chain": 2, "duplicate_id": 1, "deleted": 1, "malformed": 1, "escalation": 1}, rep.Counts)
	for _, pr := range rep.Problems {
		switch {
		case pr.Seq == tp.edited && pr.Kind == "chain":
			require.Contains(t, pr.Detail, "AgentCreated "+editedID+" claims to be the agent's first event, but seq 2 came before it")
		case pr.Seq == tp.edited:
			require.Contains(t, pr.Detail, "event id "+editedID+" was already stored at seq 2: republished")
		case pr.Seq == tp.afterDeleted:
			require.Contains(t, pr.Detail, "that is not in the log: an event was deleted or its bytes edited")
		case pr.Seq == tp.escalation:
			require.Contains(t, pr.Detail, `parent "math_solver" does not hold member(s) tan`)
		}
	}

	text, _, err := replay(t, "audit", "--nats-url", h.url)
	t.Logf("replay audit (tampered):\n%s", text)
	require.EqualError(t, err, "audit: 6 problem(s): 2 chain, 1 deleted, 1 duplicate_id, 1 escalation, 1 malformed: problems found")
	require.Equal(t, exitProblems, exitCode(err, io.Discard))
	require.Contains(t, text, fmt.Sprintf("  seq %-6d %-14s %.12s/math_solver/equation_parser ", tp.garbage, "malformed", h.root.Root))
	require.NotContains(t, text, "clean:")

	// None of it reached the registry: the fold refused every change.
	v := registryJSON(t, "--nats-url", h.url)
	require.Equal(t, capsOf([]events.Capability{mathCap("cos", "pi", "sin").Normalized(), agentCap.Normalized()}), v.Agents[0].Granted)
	require.Equal(t, capsOf([]events.Capability{mathCap("sin").Normalized()}), v.Agents[1].Granted)
	var violated []uint64
	for _, x := range v.Violations {
		violated = append(violated, x.Seq)
	}
	require.Equal(t, []uint64{tp.afterDeleted, tp.edited, tp.garbage, tp.escalation}, violated)
	regText := replayOK(t, "registry", "--nats-url", h.url)
	t.Logf("replay registry (tampered):\n%s", regText)
	require.Contains(t, regText, "4 violation(s) (events not applied):\n")

	// Lineage shows applied events only.
	linText := replayOK(t, "lineage", "--nats-url", h.url, "math_solver")
	t.Logf("replay lineage math_solver (tampered):\n%s", linText)
	top := decode[*node](t, replayOK(t, "lineage", "--nats-url", h.url, "--json", "math_solver"))
	stepSeqs := func(n *node) []uint64 {
		var out []uint64
		for _, s := range n.Steps {
			out = append(out, s.Seq)
		}
		return out
	}
	require.Equal(t, []uint64{2}, stepSeqs(top.Children[0]))
	require.Equal(t, []uint64{3}, stepSeqs(top.Children[0].Children[0]))
	require.Equal(t, capsOf([]events.Capability{mathCap("cos", "pi", "sin").Normalized(), agentCap.Normalized()}), top.Children[0].Steps[0].Grants,
		"the creation as stored first, not the edited copy")
	require.NotContains(t, linText, "+ grant module math include=[*]")
	require.Contains(t, linText, "+ grant module math include=[cos pi sin] exclude=[_*] vis=high\n")

	// The history before the tampering audits clean.
	rep = decode[auditReport](t, replayOK(t, "audit", "--nats-url", h.url, "--json", "--seq", fmt.Sprint(tp.deleted-1)))
	require.True(t, rep.Clean)
	require.Equal(t, fmt.Sprintf("seq %d", tp.deleted-1), rep.Point)

	// The events command shows the garbage for what it is.
	evText := replayOK(t, "events", "--nats-url", h.url, "--from-seq", fmt.Sprint(tp.garbage), "--seq", fmt.Sprint(tp.garbage))
	require.Contains(t, evText, "UNDECODABLE")
	require.Equal(t, 1, strings.Count(evText, "\n"))
}

// An unchanged copy of an event that is not its agent's last, stored again
// later (a replayed publish without its Nats-Msg-Id), is named for what it
// is: it links to a predecessor that is not the agent's last event any more.
// (tamper's edited creation links to no predecessor at all.)
func TestAuditReplayedCopy(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	_, _, err := h.rt.DefineTask(h.ctx, h.solver, task("simplify", "expr", events.Schema{Type: "string"})) // seq 4
	require.NoError(t, err)
	_, _, err = h.rt.DefineTask(h.ctx, h.solver, task("expand", "expr", events.Schema{Type: "string"})) // seq 5
	require.NoError(t, err)
	raw, err := h.stream().GetMsg(h.ctx, 4)
	require.NoError(t, err)
	e, err := events.Decode(raw.Data)
	require.NoError(t, err)
	copySeq := testutil.PublishRaw(t, h.nc, raw.Subject, raw.Data, nil)
	require.Equal(t, uint64(6), copySeq)

	out, _, err := replay(t, "audit", "--nats-url", h.url, "--json")
	require.ErrorIs(t, err, errProblems)
	rep := decode[auditReport](t, out)
	require.Equal(t, 6, rep.Events)
	require.Equal(t, map[string]int{"chain": 1, "duplicate_id": 1}, rep.Counts)
	require.Equal(t, []problem{
		{Seq: 6, Kind: "duplicate_id", Root: string(h.root.Root), Path: "math_solver", Subject: raw.Subject,
			Detail: "event id " + e.ID + " was already stored at seq 4: republished"},
		{Seq: 6, Kind: "chain", Root: string(h.root.Root), Path: "math_solver", Subject: raw.Subject,
			Detail: "TaskDefined " + e.ID + " names seq 2 as previous, but seq 5 came after that: reordered, replayed or edited copy"},
	}, rep.Problems)
}

// Messages removed at the edges of the stream are named too: the first
// one (JetStream then only moves the stream's first sequence: what lies
// below it is reported as purged) and the last.
// Events that link to one the fold refused say so.
func TestAuditDeletedAtStreamEdges(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	_, _, err := h.rt.DefineTask(h.ctx, h.solver, task("simplify", "expr", events.Schema{Type: "string"})) // seq 4
	require.NoError(t, err)
	_, _, err = h.rt.DefineTask(h.ctx, h.parser, task("tokenize", "text", events.Schema{Type: "string"})) // seq 5
	require.NoError(t, err)
	require.NoError(t, errOf(h.rt.Grant(h.ctx, h.parser, agentCap))) // seq 6
	require.Equal(t, uint64(6), h.seq())
	stream := h.stream()
	require.NoError(t, stream.DeleteMsg(h.ctx, 1)) // RootRegistered
	require.NoError(t, stream.DeleteMsg(h.ctx, 6)) // equation_parser's grant, the last message

	out, _, err := replay(t, "audit", "--nats-url", h.url, "--json")
	require.ErrorIs(t, err, errProblems)
	rep := decode[auditReport](t, out)
	type p struct {
		Seq  uint64
		Kind string
	}
	var got []p
	for _, pr := range rep.Problems {
		got = append(got, p{pr.Seq, pr.Kind})
		require.NotContains(t, pr.Detail, "seq 0")
	}
	// Without its registration the root's agents are refused, and each
	// later event links to one that was not applied.
	require.Equal(t, []p{{1, "purged"}, {2, "unknown_agent"}, {3, "unknown_agent"}, {4, "chain"}, {5, "chain"},
		{6, "deleted"}}, got)
	require.Contains(t, rep.Problems[3].Detail, "names seq 2 as previous, an event that was not applied")
	require.Contains(t, rep.Problems[4].Detail, "names seq 3 as previous, an event that was not applied")
	require.Equal(t, 4, rep.Events)

	// As of seq 1 the removed registration is already missing.
	out, _, err = replay(t, "audit", "--nats-url", h.url, "--json", "--seq", "1")
	require.ErrorIs(t, err, errProblems)
	rep = decode[auditReport](t, out)
	require.Equal(t, []problem{{Seq: 1, Kind: "purged", Detail: "seq 1 purged or never stored: the stream starts at 2; an event log never deletes"}}, rep.Problems)
}

// events lists the decoded log with its filters.
func TestEvents(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	require.NoError(t, errOf(h.rt.Grant(agent.WithActor(t.Context(), "user:bob"), h.parser, agentCap))) // seq 4
	simplify := task("simplify", "expr", events.Schema{Type: "string"})
	_, _, err := h.rt.DefineTask(h.ctx, h.solver, simplify) // seq 5
	require.NoError(t, err)
	seqs := func(args ...string) []uint64 {
		var out []uint64
		for _, l := range decodeLines[eventLine](t, replayOK(t, append([]string{"events", "--nats-url", h.url, "--json"}, args...)...)) {
			require.Empty(t, l.Error)
			require.Equal(t, h.subject(l.Event.Path), l.Subject)
			out = append(out, l.Seq)
		}
		return out
	}
	require.Equal(t, []uint64{1, 2, 3, 4, 5}, seqs())
	require.Equal(t, []uint64{3, 4}, seqs("--agent", "math_solver/equation_parser"))
	require.Equal(t, []uint64{2, 3, 4}, seqs("--agent", "math_solver", "--seq", "4"))
	require.Equal(t, []uint64{5}, seqs("--type", "TaskDefined"))
	require.Equal(t, []uint64{4}, seqs("--actor", "user:bob"))
	require.Equal(t, []uint64{4}, seqs("--type", "CapabilityGranted", "--root", "architect"))
	require.Equal(t, []uint64{2, 3, 4}, seqs("--type", "AgentCreated,CapabilityGranted", "--root", "architect"))
	text := replayOK(t, "events", "--nats-url", h.url, "--seq", "1")
	require.Contains(t, text, fmt.Sprintf("RootRegistered     %.12s (root)", h.root.Root))
	require.Contains(t, text, `by user:alice`)

	// A creation shows the grants and tasks it carries: in JSON the whole
	// body, in text each of them.
	lines := decodeLines[eventLine](t, replayOK(t, "events", "--nats-url", h.url, "--json", "--type", "AgentCreated"))
	require.Len(t, lines, 2)
	created := lines[0].Event
	require.Equal(t, uint64(2), lines[0].Seq)
	require.Equal(t, events.SchemaVersion, created.Version)
	require.Equal(t, "You solve math problems.", created.Created.Primer)
	require.Equal(t, capsOf([]events.Capability{mathCap("sin", "cos", "pi").Normalized(), agentCap.Normalized()}), created.Created.Capabilities)
	require.Equal(t, []events.TaskDef{task("solve_math_problem", "equation", events.Schema{Type: "string"})}, created.Created.Tasks)
	require.Equal(t, capsOf([]events.Capability{mathCap("sin").Normalized()}), lines[1].Event.Created.Capabilities)
	text = replayOK(t, "events", "--nats-url", h.url, "--agent", "math_solver", "--seq", "3")
	t.Logf("replay events --agent math_solver --seq 3:\n%s", text)
	require.Equal(t, 2, strings.Count(text, "\n"))
	first, second, _ := strings.Cut(text, "\n")
	require.True(t, strings.HasPrefix(first, "     2  "), first)
	require.Contains(t, first, fmt.Sprintf("Z  AgentCreated       %.12s math_solver                  by user:alice         primer", h.root.Root))
	require.True(t, strings.HasSuffix(first, `primer "You solve math problems."`+
		` caps [module math include=[cos pi sin] exclude=[_*] vis=high; type Agent include=[*] exclude=[_*] vis=high]`+
		` tasks [solve_math_problem(equation: string) -> string]`), first)
	require.True(t, strings.HasSuffix(second, `primer "You parse equations."`+
		` caps [module math include=[sin] exclude=[_*] vis=high] tasks [parse_equation(text: string) -> []string]`+"\n"), second)
	text = replayOK(t, "events", "--nats-url", h.url, "--from-seq", "4")
	require.Contains(t, text, "CapabilityGranted  ")
	require.True(t, strings.HasSuffix(text, " simplify(expr: string) -> string\n"), text)
}

// Usage errors are errUsage (exit status 2) with a hint; help is not an
// error.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	url := h.url
	for _, tc := range []struct {
		name string
		args []string
		msg  string
	}{
		{"SeqAndTime", []string{"registry", "--nats-url", url, "--seq", "3", "--time", "2026-11-24T18:40:00Z"}, "give --seq or --time, not both"},
		{"UnknownFlag", []string{"registry", "--nats-url", url, "--bogus"}, "flag provided but not defined: -bogus"},
		{"RootMatchesNothing", []string{"registry", "--nats-url", url, "--root", "nope"}, `no root matches --root "nope"; roots: architect (` + string(h.root.Root[:12]) + ")"},
		{"BadTime", []string{"registry", "--nats-url", url, "--time", "yesterday"}, `--time "yesterday" is not an RFC3339 time`},
		{"URLAndData", []string{"registry", "--nats-url", url, "--data", t.TempDir()}, "give --nats-url or --data, not both"},
		{"NoLog", []string{"registry", "--nats-url", ""}, "no log to read"},
		{"ExtraArgument", []string{"audit", "--nats-url", url, "extra"}, `unexpected argument "extra"`},
		{"LineageNoAgent", []string{"lineage", "--nats-url", url}, "want one AGENT, got 0 arguments"},
		{"LineageFormat", []string{"lineage", "--nats-url", url, "--format", "png", "math_solver"}, `--format "png"`},
		{"DiffNoFrom", []string{"diff", "--nats-url", url}, "give the earlier point with --from-seq or --from-time"},
		{"ResolveBadRef", []string{"resolve", "--nats-url", url, "nope"}, "want <fingerprint>/<path>#<task>"},
		{"EventsType", []string{"events", "--nats-url", url, "--type", "Bogus"}, `--type "Bogus" is not an event type`},
		{"UnknownCommand", []string{"bogus"}, `unknown command "bogus"`},
		{"NoCommand", nil, "no command given"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := replay(t, tc.args...)
			require.ErrorIs(t, err, errUsage)
			require.ErrorContains(t, err, tc.msg)
			if tc.name != "NoCommand" {
				require.ErrorContains(t, err, "hint: run 'replay ")
			}
			require.Equal(t, exitUsage, exitCode(err, io.Discard))
		})
	}
	t.Run("Help", func(t *testing.T) {
		out, _, err := replay(t, "--help")
		require.NoError(t, err)
		require.Contains(t, out, "Commands:\n")
		for _, cmd := range []string{"events", "registry", "lineage", "diff", "resolve", "audit", "snapshots"} {
			// --help of a command prints its usage and does not run it, even
			// with a server to run it against.
			out, errb, err := replay(t, cmd, "--nats-url", url, "--help")
			require.NoError(t, err, cmd)
			require.Empty(t, out, cmd)
			require.Contains(t, errb, "Usage: replay "+cmd+" [flags]")
		}
	})
}

// The built binary maps errors to exit statuses and prints the audit's
// summary on stderr.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "replay")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	h, tp := tamper(t)
	run := func(args ...string) (stdout, stderr string, code int) {
		var o, e bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return o.String(), e.String(), exit.ExitCode()
		}
		require.NoError(t, err)
		return o.String(), e.String(), 0
	}

	stdout, stderr, code := run("audit", "--nats-url", h.url)
	require.Equal(t, exitProblems, code, "stderr: %s", stderr)
	require.Equal(t, "replay: audit: 6 problem(s): 2 chain, 1 deleted, 1 duplicate_id, 1 escalation, 1 malformed: problems found\n", stderr)
	for _, seq := range []uint64{tp.edited, tp.deleted, tp.afterDeleted, tp.garbage, tp.escalation} {
		require.Contains(t, stdout, fmt.Sprintf("  seq %-6d ", seq))
	}

	stdout, _, code = run("--help")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "Usage: replay COMMAND [flags] [ARGS]")
	_, stderr, code = run("audit", "--help")
	require.Equal(t, exitOK, code)
	require.Contains(t, stderr, "Usage: replay audit")
	_, stderr, code = run("bogus")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, `replay: unknown command "bogus"`)
	_, _, code = run("registry", "--nats-url", h.url)
	require.Equal(t, exitOK, code)
}

// fileState is what a listing records of each file and directory.
type fileState struct {
	Mode    fs.FileMode
	Size    int64
	ModTime time.Time
	SHA256  string
}

func listing(t *testing.T, dir string) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st := fileState{Mode: info.Mode(), ModTime: info.ModTime()}
		if !d.IsDir() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			st.Size, st.SHA256 = info.Size(), fmt.Sprintf("%x", sha256.Sum256(b))
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = st
		return nil
	}))
	return out
}

// --data reads a copy of a stopped runtime's data directory without
// changing it, and refuses a directory a running runtime holds. Not
// parallel: it sets TMPDIR and NATS_URL.
func TestOfflineDataDir(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)                    // where replay makes its working copy
	t.Setenv("NATS_URL", "nats://127.0.0.1:1") // an operator's environment must not beat an explicit --data
	data := filepath.Join(t.TempDir(), "data")
	ctx := agent.WithActor(t.Context(), "user:alice")
	rt, err := agent.Open(ctx, append(runtimeOptions(t), agent.WithDataDir(data))...)
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = rt.Close()
		}
	})
	root, err := rt.RegisterRoot(ctx, architect())
	require.NoError(t, err)
	solver, _, err := rt.Create(ctx, root, agent.Spec{Name: "math_solver", Primer: "You solve math problems.", Capabilities: []events.Capability{mathCap("sin", "cos", "pi")}})
	require.NoError(t, err)
	_, _, err = rt.Create(ctx, solver, agent.Spec{Name: "equation_parser", Primer: "You parse equations.", Capabilities: []events.Capability{mathCap("sin")}})
	require.NoError(t, err)

	_, _, err = replay(t, "registry", "--data", data)
	require.ErrorIs(t, err, natsstore.ErrStoreLocked)
	require.ErrorContains(t, err, "in use")

	require.NoError(t, rt.Close())
	closed = true
	cp := filepath.Join(t.TempDir(), "copy")
	require.NoError(t, os.CopyFS(cp, os.DirFS(data)))
	before := listing(t, cp)
	require.Contains(t, before, "jetstream")

	v := registryJSON(t, "--data", cp)
	require.Equal(t, "architect", v.Name)
	require.Equal(t, string(root.Root), v.Root)
	require.Equal(t, []string{"math_solver", "math_solver/equation_parser"}, paths(v))
	require.Equal(t, uint64(3), v.Seq, "RootRegistered and one AgentCreated per agent")
	require.Equal(t, capsOf([]events.Capability{mathCap("cos", "pi", "sin").Normalized()}), v.Agents[0].Granted)
	require.Equal(t, capsOf([]events.Capability{mathCap("sin").Normalized()}), v.Agents[1].Granted)
	auditText := replayOK(t, "audit", "--data", cp)
	require.Contains(t, auditText, "audit of stream AGENTREG as of now: 1 root(s), 3 event(s), ")
	require.Contains(t, auditText, "clean: every hash chain intact")
	top := decode[*node](t, replayOK(t, "lineage", "--data", cp, "--json", "math_solver/equation_parser"))
	require.True(t, top.Children[0].Children[0].Selected)

	require.Equal(t, before, listing(t, cp), "--data leaves the directory as it was")
	left, err := filepath.Glob(filepath.Join(tmp, "agentreg-copy-*"))
	require.NoError(t, err)
	require.Empty(t, left, "the working copy is removed")

	_, _, err = replay(t, "registry", "--data", t.TempDir())
	require.ErrorContains(t, err, "holds no JetStream store")
}

// errOf drops a write's receipt: for assertions on the error alone.
func errOf[T any](_ T, err error) error { return err }

// A log written before schema version 2 (a creation followed by its grants
// and tasks as events of their own) reads as it did, next to a version 2
// creation carrying its own: events, lineage, registry and audit agree on
// what each agent was given and when.
func TestMixedSchemaVersions(t *testing.T) {
	t.Parallel()
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	nc := testutil.Connect(t, url)
	ctx := t.Context()
	_, err := natsstore.OpenLog(ctx, nc, natsstore.Config{}) // creates the stream; replay never does
	require.NoError(t, err)
	def := architect()
	fp := def.Fingerprint()
	start := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	last := map[string]string{}
	n := 0
	publish := func(version uint64, path string, set func(e *events.Event)) uint64 {
		t.Helper()
		e := &events.Event{ID: ulid.Make().String(), Version: version, Root: fp, Path: path,
			Time: start.Add(time.Duration(n) * time.Second).UnixNano(), Actor: "user:carol", Correlation: ulid.Make().String(), Prev: last[path]}
		n++
		set(e)
		data, err := events.Encode(e)
		require.NoError(t, err)
		last[path] = events.Hash(data)
		return testutil.PublishRaw(t, nc, events.Subject("agentreg", fp, path), data, nil)
	}
	solverTask := task("solve_math_problem", "equation", events.Schema{Type: "string"})
	parserTask := task("parse_equation", "text", events.Schema{Type: "string"})
	require.Equal(t, uint64(1), publish(1, "", func(e *events.Event) {
		e.Type, e.Registered = events.RootRegistered, &events.RootData{Def: def}
	}))
	require.Equal(t, uint64(2), publish(1, "math_solver", func(e *events.Event) {
		e.Type, e.Created = events.AgentCreated, &events.CreatedData{Primer: "You solve math problems."}
	}))
	require.Equal(t, uint64(3), publish(1, "math_solver", func(e *events.Event) {
		e.Type, e.Granted = events.CapabilityGranted, &events.GrantedData{Capability: mathCap("sin", "cos", "pi").Normalized()}
	}))
	require.Equal(t, uint64(4), publish(1, "math_solver", func(e *events.Event) {
		e.Type, e.Task = events.TaskDefined, &events.TaskData{Task: solverTask}
	}))
	require.Equal(t, uint64(5), publish(events.SchemaVersion, "math_solver/equation_parser", func(e *events.Event) {
		e.Type = events.AgentCreated
		e.Created = &events.CreatedData{Primer: "You parse equations.", Capabilities: []events.Capability{mathCap("sin").Normalized()}, Tasks: []events.TaskDef{parserTask}}
	}))

	rep := decode[auditReport](t, replayOK(t, "audit", "--nats-url", url, "--json"))
	require.True(t, rep.Clean, "%+v", rep.Problems)
	require.Equal(t, 5, rep.Events)
	require.Equal(t, 5, rep.Unsigned)

	v := registryJSON(t, "--nats-url", url)
	require.Empty(t, v.Violations)
	require.Equal(t, []string{"math_solver", "math_solver/equation_parser"}, paths(v))
	require.Equal(t, capsOf([]events.Capability{mathCap("cos", "pi", "sin").Normalized()}), v.Agents[0].Granted)
	require.Equal(t, []events.TaskDef{solverTask}, v.Agents[0].Tasks)
	require.Equal(t, capsOf([]events.Capability{mathCap("sin").Normalized()}), v.Agents[1].Granted)
	require.Equal(t, []events.TaskDef{parserTask}, v.Agents[1].Tasks)
	eff := v.Agents[1].Effective[0]
	require.Equal(t, capOf(mathCap("sin").Normalized()), eff.Capability, "the chain root ∩ math_solver ∩ equation_parser as one grant")
	require.Equal(t, []string{"sin"}, eff.Members)
	require.True(t, eff.Exact)
	require.Len(t, eff.Chain, 3)

	top := decode[*node](t, replayOK(t, "lineage", "--nats-url", url, "--json", "math_solver"))
	solver := top.Children[0]
	var types []events.Type
	for _, s := range solver.Steps {
		types = append(types, s.Type)
	}
	require.Equal(t, []events.Type{events.AgentCreated, events.CapabilityGranted, events.TaskDefined}, types)
	require.Empty(t, solver.Steps[0].Grants, "a version 1 creation carries no grants")
	require.Empty(t, solver.Steps[0].Tasks)
	require.Equal(t, "module math include=[cos pi sin] exclude=[_*] vis=high", solver.Steps[1].Detail)
	parser := solver.Children[0]
	require.Len(t, parser.Steps, 1)
	require.Equal(t, uint64(5), parser.Steps[0].Seq)
	require.Equal(t, capsOf([]events.Capability{mathCap("sin").Normalized()}), parser.Steps[0].Grants)
	require.Equal(t, []events.TaskDef{parserTask}, parser.Steps[0].Tasks)

	text := replayOK(t, "events", "--nats-url", url, "--type", "AgentCreated")
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	require.Len(t, lines, 2, text)
	require.True(t, strings.HasSuffix(lines[0], `math_solver                  by user:carol         primer "You solve math problems."`), lines[0])
	require.True(t, strings.HasSuffix(lines[1], `primer "You parse equations." caps [module math include=[sin] exclude=[_*] vis=high] tasks [parse_equation(text: string) -> string]`), lines[1])
	js := decodeLines[eventLine](t, replayOK(t, "events", "--nats-url", url, "--json", "--type", "AgentCreated"))
	require.Equal(t, []uint64{1, events.SchemaVersion}, []uint64{js[0].Event.Version, js[1].Event.Version})
}
