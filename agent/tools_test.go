package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

// paintInput has what the legacy schema could not say: an enum (through
// $ref to $defs), a nullable string, bounds, an array of strings.
var paintInput = events.MustJSONSchema(`{
	"type": "object",
	"properties": {
		"color": {"$ref": "#/$defs/color"},
		"note": {"type": ["string", "null"], "maxLength": 5},
		"coats": {"type": "integer", "minimum": 1, "maximum": 3},
		"tags": {"type": "array", "items": {"type": "string"}, "minItems": 1}
	},
	"required": ["color"],
	"additionalProperties": false,
	"$defs": {"color": {"enum": ["red", "green"]}}
}`)

func paintTask() events.TaskDef {
	return events.TaskDef{Name: "paint", Doc: "Paint the wall.", InputSchema: paintInput,
		OutputSchema: events.MustJSONSchema(`{"type":"string"}`)}
}

// paintArgs is a caller's own argument type.
type paintArgs struct {
	Color string   `json:"color"`
	Coats int      `json:"coats,omitempty"`
	Tags  []string `json:"tags,omitempty"`
}

// recorder is an executor that keeps the calls it ran.
type recorder struct {
	mu    sync.Mutex
	calls []*agent.Call
}

func (r *recorder) Execute(_ context.Context, c *agent.Call) (any, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
	return "done", nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

func (r *recorder) last() *agent.Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[len(r.calls)-1]
}

// A task defined from a JSON Schema, resolved in another process, validates
// call arguments as the specification says, with the validator's own text;
// any Go value that encodes to a JSON object is an argument.
func TestJSONSchemaTaskCall(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt1, root := w.openRegistered()
	painter, _, err := rt1.Create(ctx, root, agent.Spec{Name: "painter", Primer: "You paint.", Tasks: []events.TaskDef{paintTask()}})
	require.NoError(t, err)
	rec := &recorder{}
	rt2, _ := w.openRegistered(agent.WithExecutor(rec))
	task, err := rt2.Resolve(ctx, agent.TaskRef{Root: root.Root, Path: painter.Path, Task: "paint"})
	require.NoError(t, err)
	require.Equal(t, paintTask(), task.Def)

	for name, args := range map[string]any{
		"map":          map[string]any{"color": "red", "note": nil, "coats": 3, "tags": []any{"a"}},
		"[]string":     map[string]any{"color": "green", "tags": []string{"kitchen", "north"}},
		"struct":       paintArgs{Color: "red", Coats: 1, Tags: []string{"x"}},
		"struct ptr":   &paintArgs{Color: "green"},
		"whole float":  map[string]any{"color": "red", "coats": 2.0},
		"json message": json.RawMessage(`{"color":"red","note":"hi"}`),
	} {
		t.Run("accepted/"+name, func(t *testing.T) {
			out, err := task.Call(ctx, args)
			require.NoError(t, err)
			require.Equal(t, "done", out)
			c := rec.last()
			want, err := json.Marshal(args)
			require.NoError(t, err)
			require.JSONEq(t, string(want), string(c.ArgsJSON))
			require.Contains(t, []any{"red", "green"}, c.Args["color"])
		})
	}
	t.Run("executor view", func(t *testing.T) {
		_, err := task.Call(ctx, paintArgs{Color: "red", Coats: 2, Tags: []string{"a", "b"}})
		require.NoError(t, err)
		c := rec.last()
		require.Equal(t, map[string]any{"color": "red", "coats": float64(2), "tags": []any{"a", "b"}}, c.Args)
		var got paintArgs
		require.NoError(t, json.Unmarshal(c.ArgsJSON, &got))
		require.Equal(t, paintArgs{Color: "red", Coats: 2, Tags: []string{"a", "b"}}, got)
	})

	for _, tc := range []struct {
		name string
		args any
		want string // the validator's own text
	}{
		{"enum", map[string]any{"color": "blue"}, `at '/color': value must be one of 'red', 'green'`},
		{"nullable type", map[string]any{"color": "red", "note": 5}, `at '/note': got number, want null or string`},
		{"maxLength", map[string]any{"color": "red", "note": "too long"}, `at '/note': maxLength: got 8, want 5`},
		{"minimum", paintArgs{Color: "red", Coats: -1}, `at '/coats': minimum: got -1, want 1`},
		{"maximum", map[string]any{"color": "red", "coats": 4}, `at '/coats': maximum: got 4, want 3`},
		{"integer", map[string]any{"color": "red", "coats": 1.5}, `at '/coats': got number, want integer`},
		{"minItems", map[string]any{"color": "red", "tags": []string{}}, `at '/tags': minItems: got 0, want 1`},
		{"items", map[string]any{"color": "red", "tags": []int{1}}, `at '/tags/0': got number, want string`},
		{"required", nil, `missing property 'color'`},
		{"additional", map[string]any{"color": "red", "size": 1}, `additional properties 'size' not allowed`},
		{"not an object", []string{"red"}, `got array, want object`},
	} {
		t.Run("ErrInvalidArgs/"+tc.name, func(t *testing.T) {
			before := rec.count()
			_, err := task.Call(ctx, tc.args)
			require.ErrorIs(t, err, agent.ErrInvalidArgs)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, task.Ref.String(), "the error names the task")
			require.Equal(t, before, rec.count(), "the executor must not run on invalid arguments")
		})
	}
	t.Run("ErrInvalidArgs/not JSON", func(t *testing.T) {
		_, err := task.Call(ctx, map[string]any{"color": make(chan int)})
		require.ErrorIs(t, err, agent.ErrInvalidArgs)
	})
}

// A schema that reaches outside its document, or is too large, is refused
// before anything is written.
func TestDefineTaskRefusesUnsafeSchemas(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt, root := w.openRegistered()
	painter, _, err := rt.Create(ctx, root, agent.Spec{Name: "painter", Primer: "You paint."})
	require.NoError(t, err)
	l := w.log()
	before := lastRootSeq(t, l, w.fp)

	remote := paintTask()
	// Canonical text, built by hand: ParseJSONSchema would refuse it.
	remote.InputSchema = events.JSONSchema(`{"properties":{"color":{"$ref":"https://evil.example/color.json"}},"type":"object"}`)
	_, _, err = rt.DefineTask(ctx, painter, remote)
	require.ErrorIs(t, err, events.ErrMalformed)
	require.ErrorContains(t, err, `$ref "https://evil.example/color.json"`)
	require.ErrorContains(t, err, "only references within the document")

	file := paintTask()
	file.OutputSchema = events.JSONSchema(`{"$ref":"file:///etc/passwd"}`)
	_, _, err = rt.DefineTask(ctx, painter, file)
	require.ErrorIs(t, err, events.ErrMalformed)
	require.ErrorContains(t, err, `"file:///etc/passwd"`)

	big := paintTask()
	big.InputSchema = events.JSONSchema(`{"description":"` + strings.Repeat("x", events.MaxJSONSchemaBytes) + `","type":"object"}`)
	_, _, err = rt.DefineTask(ctx, painter, big)
	require.ErrorIs(t, err, events.ErrTooLarge)
	_, _, err = rt.Create(ctx, root, agent.Spec{Name: "big", Tasks: []events.TaskDef{big}})
	require.ErrorIs(t, err, events.ErrTooLarge)

	require.Equal(t, before, lastRootSeq(t, l, w.fp), "a refused definition wrote nothing")
}

// A ref pinned to a task's contract stops resolving when the task is
// redefined with another schema, naming both digests; an unpinned ref
// follows the task and reports the new digest; a ref pinned to the new
// digest resolves. In the writing process (warm) and a fresh one (cold).
func TestPinnedContract(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt1, root := w.openRegistered()
	painter, _, err := rt1.Create(ctx, root, agent.Spec{Name: "painter", Primer: "You paint.", Tasks: []events.TaskDef{paintTask()}})
	require.NoError(t, err)
	ref := agent.TaskRef{Root: root.Root, Path: painter.Path, Task: "paint"}

	task, err := rt1.Resolve(ctx, ref)
	require.NoError(t, err)
	first := task.Contract()
	require.Equal(t, paintTask().Contract(), first)
	require.Equal(t, task.Tool().Digest(), first)
	pinned := ref.Pinned(first)
	require.Equal(t, ref.String()+"@"+first, pinned.String())
	parsed, err := agent.ParseTaskRef(pinned.String())
	require.NoError(t, err)
	require.Equal(t, pinned, parsed)
	got, err := rt1.Resolve(ctx, pinned)
	require.NoError(t, err)
	require.Equal(t, pinned, got.Ref)

	redefined := paintTask()
	redefined.InputSchema = events.MustJSONSchema(`{"type":"object","properties":{"color":{"enum":["red","green","blue"]}},"required":["color"]}`)
	_, _, err = rt1.DefineTask(ctx, painter, redefined)
	require.NoError(t, err)
	second := redefined.Contract()
	require.NotEqual(t, first, second)

	rt2, _ := w.openRegistered()
	for name, rt := range map[string]*agent.Runtime{"warm": rt1, "cold": rt2} {
		t.Run(name, func(t *testing.T) {
			_, err := rt.Resolve(ctx, pinned)
			require.ErrorIs(t, err, agent.ErrContractChanged)
			var cc *agent.ContractChangedError
			require.True(t, errors.As(err, &cc))
			require.Equal(t, first, cc.Pinned)
			require.Equal(t, second, cc.Current)
			require.Equal(t, pinned, cc.Ref)
			require.ErrorContains(t, err, first)
			require.ErrorContains(t, err, second)

			now, err := rt.Resolve(ctx, ref)
			require.NoError(t, err)
			require.Equal(t, second, now.Contract())
			require.Equal(t, redefined, now.Def)

			again, err := rt.Resolve(ctx, ref.Pinned(second))
			require.NoError(t, err)
			require.Equal(t, second, again.Contract())
		})
	}
	t.Run("ErrInvalidName", func(t *testing.T) {
		for _, bad := range []string{ref.String() + "@", ref.String() + "@abc", ref.String() + "@" + strings.ToUpper(first), pinned.String() + "@" + first} {
			_, err := agent.ParseTaskRef(bad)
			require.ErrorIs(t, err, agent.ErrInvalidName, bad)
		}
	})
}

// Every task of an agent exports as an MCP-shaped tool definition, legacy
// ones converted; the digest of each is the task's contract.
func TestTools(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt1, root := w.openRegistered()
	tr := buildTree(t, rt1, root)
	_, _, err := rt1.DefineTask(ctx, tr.solver, paintTask())
	require.NoError(t, err)

	rt2, _ := w.openRegistered()
	for name, rt := range map[string]*agent.Runtime{"warm": rt1, "cold": rt2} {
		t.Run(name, func(t *testing.T) {
			tools, err := rt.Tools(ctx, tr.solver)
			require.NoError(t, err)
			require.Len(t, tools, 2)
			require.Equal(t, "paint", tools[0].Name)
			require.Equal(t, "solve_math_problem", tools[1].Name)
			require.Equal(t, "Paint the wall.", tools[0].Description)
			require.JSONEq(t, string(paintInput), string(tools[0].InputSchema))
			require.JSONEq(t, `{"type":"object","properties":{"equation":{"type":"string"}},"required":["equation"],"additionalProperties":false}`,
				string(tools[1].InputSchema))
			require.JSONEq(t, `{"type":"string"}`, string(tools[1].OutputSchema))
			for _, tool := range tools {
				task, err := rt.Resolve(ctx, agent.TaskRef{Root: tr.solver.Root, Path: tr.solver.Path, Task: tool.Name})
				require.NoError(t, err)
				require.Equal(t, task.Tool(), tool)
				require.Equal(t, task.Contract(), tool.Digest())
			}

			b, err := json.Marshal(tools[1])
			require.NoError(t, err)
			var keys map[string]any
			require.NoError(t, json.Unmarshal(b, &keys))
			require.ElementsMatch(t, []string{"name", "description", "inputSchema", "outputSchema"}, mapKeys(keys))

			rootTools, err := rt.Tools(ctx, root)
			require.NoError(t, err)
			require.Len(t, rootTools, 1)
			require.Equal(t, "create_specialist", rootTools[0].Name)
			require.JSONEq(t, `{}`, string(rootTools[0].OutputSchema), "legacy any")
		})
	}

	_, err = rt1.Retire(ctx, tr.parser, "done")
	require.NoError(t, err)
	_, err = rt1.Tools(ctx, tr.parser)
	require.ErrorIs(t, err, agent.ErrRetired)
	_, err = rt1.Tools(ctx, agent.AgentRef{Root: root.Root, Path: "nobody"})
	require.ErrorIs(t, err, agent.ErrNotFound)
	_, err = rt1.Tools(ctx, agent.AgentRef{Root: "nope"})
	require.ErrorIs(t, err, agent.ErrInvalidName)
}

func mapKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A task defined by a version 2 event (legacy schema, written by earlier
// code) still resolves; it reads as the converted JSON Schema and calls
// are validated against it as the legacy validator did.
func TestLegacyTaskEventResolves(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt1, root := w.openRegistered()
	tr := buildTree(t, rt1, root)

	legacy := events.TaskDef{Name: "count", Doc: "Count terms.", Input: events.Schema{Type: "object", Fields: []events.Field{
		str(true, "text"), {Name: "limit", Schema: events.Schema{Type: "integer"}, Doc: "at most"},
	}}, Output: events.Schema{Type: "integer"}}
	var e *events.Event
	require.NoError(t, inspect.View(ctx, rt1, string(agent.RootID(w.fp)), func(reg *projector.Registry) error {
		e = &events.Event{ID: "01JLEGACY0000000000000000V", Type: events.TaskDefined, Version: 2,
			Root: w.fp, Path: tr.parser.Path, Time: 1, Actor: "v2-writer", Correlation: "x",
			Prev: reg.LastHash(tr.parser.Path), Task: &events.TaskData{Task: legacy}}
		return nil
	}))
	data, err := events.Encode(e)
	require.NoError(t, err)
	testutil.PublishRaw(t, testutil.Connect(t, w.url), events.Subject("agentreg", w.fp, tr.parser.Path), data, nil)

	rec := &recorder{}
	rt2, _ := w.openRegistered(agent.WithExecutor(rec))
	ref := agent.TaskRef{Root: root.Root, Path: tr.parser.Path, Task: "count"}
	task, err := rt2.Resolve(agent.WithMinSeq(ctx, agent.LatestSeq), ref)
	require.NoError(t, err)
	require.Equal(t, legacy, task.Def)
	require.JSONEq(t, `{"type":"object","additionalProperties":false,"required":["text"],"properties":{`+
		`"text":{"type":"string"},"limit":{"type":["integer","null"],"description":"at most"}}}`, string(task.Tool().InputSchema))
	require.JSONEq(t, `{"type":"integer"}`, string(task.Tool().OutputSchema))
	// Its contract is that of the same task written in JSON Schema.
	conv := events.TaskDef{Name: legacy.Name, Doc: legacy.Doc,
		InputSchema: events.JSONSchema(legacy.InputJSONSchema()), OutputSchema: events.JSONSchema(legacy.OutputJSONSchema())}
	require.Equal(t, conv.Contract(), task.Contract())
	_, err = rt2.Resolve(ctx, ref.Pinned(task.Contract()))
	require.NoError(t, err)

	_, err = task.Call(ctx, map[string]any{"text": "x", "limit": nil}) // nil optional: absent, as before
	require.NoError(t, err)
	_, err = task.Call(ctx, map[string]any{"text": "x", "other": 1})
	require.ErrorIs(t, err, agent.ErrInvalidArgs)
	require.ErrorContains(t, err, `additional properties 'other' not allowed`)
	require.Equal(t, 1, rec.count())
}

// SchemaFor derives an input schema from a Go type that a task can carry
// and Call validates against.
func TestSchemaFor(t *testing.T) {
	s, err := agent.SchemaFor[paintArgs]()
	require.NoError(t, err)
	require.NoError(t, s.Validate())
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(s), &doc))
	require.Equal(t, "object", doc["type"])
	require.Equal(t, []any{"color"}, doc["required"])
	require.Equal(t, false, doc["additionalProperties"])
	td := events.TaskDef{Name: "paint", InputSchema: s, OutputSchema: events.MustJSONSchema(`{}`)}
	require.NoError(t, td.Validate())
	require.NoError(t, s.ValidateJSON([]byte(`{"color":"red","tags":["a"]}`)))
	require.NoError(t, s.ValidateJSON([]byte(`{"color":"red","tags":null}`)), "a nil slice encodes as null")
	require.Error(t, s.ValidateJSON([]byte(`{"tags":["a"]}`)))
	require.Error(t, s.ValidateJSON([]byte(`{"color":"red","coats":"x"}`)))

	_, err = agent.SchemaFor[map[int]string]()
	require.Error(t, err)
}

// A JSON Schema task survives a snapshot: a fresh runtime restored from it
// has the writer's state hash and the same definition and contract.
func TestJSONSchemaTaskSnapshot(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	rt1, root := w.openRegistered()
	painter, _, err := rt1.Create(ctx, root, agent.Spec{Name: "painter", Primer: "You paint.", Tasks: []events.TaskDef{paintTask()}})
	require.NoError(t, err)
	_, err = rt1.Snapshot(ctx, agent.RootID(w.fp))
	require.NoError(t, err)
	wantHash, _, err := rt1.StateHash(ctx, agent.RootID(w.fp))
	require.NoError(t, err)

	rt2, _ := w.openRegistered()
	gotHash, _, err := rt2.StateHash(ctx, agent.RootID(w.fp))
	require.NoError(t, err)
	require.Equal(t, wantHash, gotHash)
	_, restored := rt2.RestoredFrom(agent.RootID(w.fp))
	require.True(t, restored, "the fresh runtime loads from the snapshot")
	task, err := rt2.Resolve(ctx, agent.TaskRef{Root: root.Root, Path: painter.Path, Task: "paint"})
	require.NoError(t, err)
	require.Equal(t, paintTask(), task.Def)
	require.Equal(t, paintTask().Contract(), task.Contract())
}

// A root defined with a JSON Schema task: the fingerprint covers the
// schema, another process resolves the root's task and lists it as a tool.
func TestRootWithJSONSchemaTask(t *testing.T) {
	ctx := context.Background()
	srv := testutil.RunServer(t)
	def := architectDef()
	def.Tasks = append(def.Tasks, paintTask())
	fp := def.Fingerprint()
	other := architectDef()
	other.Tasks = append(other.Tasks, paintTask())
	other.Tasks[1].OutputSchema = events.MustJSONSchema(`{"type":"integer"}`)
	require.NotEqual(t, fp, other.Fingerprint(), "the fingerprint covers the schemas")

	w := &world{t: t, url: srv.ClientURL(), def: def, fp: fp}
	w.openRegistered()
	rt2, root := w.openRegistered()
	task, err := rt2.Resolve(ctx, agent.TaskRef{Root: root.Root, Task: "paint"})
	require.NoError(t, err)
	require.Equal(t, paintTask(), task.Def)
	tools, err := rt2.Tools(ctx, root)
	require.NoError(t, err)
	require.Len(t, tools, 2)
	require.Equal(t, paintTask().Tool(), tools[1])
}
