package events_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
)

// The RFC 8785 examples (sections 3.2.2 and 3.2.3) and the rules they stand
// for: members sorted by UTF-16 code units, shortest numbers, minimal
// escapes, no whitespace; a duplicate name is an error.
func TestCanonicalJSON(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"RFC 3.2.2",
			`{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		{"RFC 3.2.3 sorting",
			`{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\"," +
				"\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{"nested", `{ "b" : [ {"z":1,"a":2} ], "a" : {} }`, `{"a":{},"b":[{"a":2,"z":1}]}`},
		{"scalar", ` true `, `true`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := events.CanonicalJSON([]byte(tc.in))
			require.NoError(t, err)
			assert.Equal(t, tc.want, string(got))
		})
	}
	for _, bad := range []string{`{"a":1,"a":2}`, `{"a":`, "\"\xff\"", ``} {
		_, err := events.CanonicalJSON([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

// colorSchema has each feature the JSON Schema specification defines and
// the legacy schema lacked: enum, a nullable type, bounds, and $ref to $defs.
const colorSchema = `{
	"type": "object",
	"properties": {
		"color": {"$ref": "#/$defs/color"},
		"note": {"type": ["string", "null"], "maxLength": 5},
		"count": {"type": "integer", "minimum": 1, "maximum": 10},
		"tags": {"type": "array", "items": {"type": "string"}, "minItems": 1}
	},
	"required": ["color"],
	"additionalProperties": false,
	"$defs": {"color": {"enum": ["red", "green"]}}
}`

// The validator applies the specification; its own error text (location
// and keyword) comes through.
func TestJSONSchemaValidates(t *testing.T) {
	s, err := events.ParseJSONSchema([]byte(colorSchema))
	require.NoError(t, err)
	for _, ok := range []string{
		`{"color":"red"}`,
		`{"color":"green","note":null,"count":10,"tags":["a"]}`,
		`{"color":"red","note":"hello","count":1.0}`, // 1.0 is an integer
	} {
		assert.NoError(t, s.ValidateJSON([]byte(ok)), ok)
	}
	for _, tc := range []struct{ in, want string }{
		{`{"color":"blue"}`, `at '/color': value must be one of 'red', 'green'`},
		{`{"color":"red","note":"too long"}`, `at '/note': maxLength: got 8, want 5`},
		{`{"color":"red","note":3}`, `at '/note': got number, want null or string`},
		{`{"color":"red","count":0}`, `at '/count': minimum: got 0, want 1`},
		{`{"color":"red","count":11}`, `at '/count': maximum: got 11, want 10`},
		{`{"color":"red","count":2.5}`, `at '/count': got number, want integer`},
		{`{"color":"red","tags":[]}`, `at '/tags': minItems: got 0, want 1`},
		{`{"color":"red","tags":[1]}`, `at '/tags/0': got number, want string`},
		{`{}`, `missing property 'color'`},
		{`{"color":"red","size":1}`, `additional properties 'size' not allowed`},
	} {
		err := s.ValidateJSON([]byte(tc.in))
		require.Error(t, err, tc.in)
		assert.Contains(t, err.Error(), tc.want, tc.in)
	}
}

// Schemas come from the log: they are self-contained and bounded, refused
// before they are used.
func TestJSONSchemaRefused(t *testing.T) {
	for name, doc := range map[string]string{
		"remote $ref":    `{"type":"object","properties":{"a":{"$ref":"https://example.com/a.json"}}}`,
		"file $ref":      `{"type":"object","$ref":"file:///etc/passwd"}`,
		"relative $ref":  `{"type":"object","$ref":"other.json#/x"}`,
		"$dynamicRef":    `{"type":"object","$dynamicRef":"https://example.com/a.json#meta"}`,
		"remote $schema": `{"$schema":"https://example.com/my-meta.json","type":"object"}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := events.ParseJSONSchema([]byte(doc))
			require.ErrorIs(t, err, events.ErrSchemaRef)
		})
	}
	t.Run("ErrTooLarge/bytes", func(t *testing.T) {
		doc := `{"type":"object","description":"` + strings.Repeat("x", events.MaxJSONSchemaBytes) + `"}`
		_, err := events.ParseJSONSchema([]byte(doc))
		require.ErrorIs(t, err, events.ErrTooLarge)
		td := events.TaskDef{Name: "t", InputSchema: events.JSONSchema(doc), OutputSchema: "{}"}
		require.ErrorIs(t, td.Validate(), events.ErrTooLarge)
	})
	t.Run("ErrTooLarge/depth", func(t *testing.T) {
		doc := strings.Repeat(`{"items":`, events.MaxJSONSchemaDepth) + `{}` + strings.Repeat(`}`, events.MaxJSONSchemaDepth)
		_, err := events.ParseJSONSchema([]byte(doc))
		require.ErrorIs(t, err, events.ErrTooLarge)
	})
	t.Run("not a schema", func(t *testing.T) {
		_, err := events.ParseJSONSchema([]byte(`{"type":"objekt"}`))
		require.ErrorContains(t, err, "is not valid against metaschema")
		_, err = events.ParseJSONSchema([]byte(`{"type":"string","pattern":"(?=x)"}`))
		require.ErrorContains(t, err, "not valid regex")
	})
}

func TestTaskDefJSONSchemaValidate(t *testing.T) {
	in := events.MustJSONSchema(colorSchema)
	out := events.MustJSONSchema(`{"type":"string"}`)
	ok := events.TaskDef{Name: "paint", Doc: "Paint.", InputSchema: in, OutputSchema: out}
	require.NoError(t, ok.Validate())
	for name, tc := range map[string]struct {
		def  events.TaskDef
		want string
	}{
		"not canonical": {events.TaskDef{Name: "paint", InputSchema: events.JSONSchema(`{ "type": "object" }`), OutputSchema: out},
			"not in RFC 8785 canonical form"},
		"input not an object": {events.TaskDef{Name: "paint", InputSchema: out, OutputSchema: out},
			`top-level "type" must be "object"`},
		"no output": {events.TaskDef{Name: "paint", InputSchema: in}, "output_schema is missing"},
		"no input":  {events.TaskDef{Name: "paint", OutputSchema: out}, "input_schema is missing"},
		"both forms": {events.TaskDef{Name: "paint", InputSchema: in, OutputSchema: out, Input: events.Schema{Type: "object"}},
			"both JSON Schema"},
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorContains(t, tc.def.Validate(), tc.want)
		})
	}

	t.Run("RootDef", func(t *testing.T) {
		def := architectDef()
		def.Tasks = append(def.Tasks, ok)
		require.NoError(t, def.Validate())
		def.Tasks[1].InputSchema = events.JSONSchema(`{"$ref":"https://example.com/x","type":"object"}`)
		require.ErrorIs(t, def.Validate(), events.ErrSchemaRef)
	})
}

// A legacy schema reads as the JSON Schema that accepts what the legacy
// validator accepted: unknown arguments refused at every level, a nil
// optional argument taken for an absent one, docs as descriptions.
func TestLegacySchemaConversion(t *testing.T) {
	td := architectDef().Tasks[0]
	require.False(t, td.HasJSONSchema())
	assert.Equal(t,
		`{"additionalProperties":false,"properties":{"modules":{"items":{"type":"string"},"type":["array","null"]},`+
			`"name":{"description":"path segment of the new agent","type":"string"}},"required":["name"],"type":"object"}`,
		string(td.InputJSONSchema()))
	assert.Equal(t, `{"type":"string"}`, string(td.OutputJSONSchema()))
	assert.Equal(t, `{}`, string(events.Schema{Type: "any"}.JSONSchema()))
	assert.Equal(t, `{"additionalProperties":false,"type":"object"}`, string(events.Schema{Type: "object"}.JSONSchema()))

	in := events.JSONSchema(td.InputJSONSchema())
	require.NoError(t, in.Validate(), "the conversion is a valid, canonical schema")
	for _, ok := range []string{`{"name":"a"}`, `{"name":"a","modules":["x"]}`, `{"name":"a","modules":null}`} {
		assert.NoError(t, in.ValidateJSON([]byte(ok)), ok)
	}
	for _, bad := range []string{`{}`, `{"name":null}`, `{"name":"a","extra":1}`, `{"name":"a","modules":[1]}`, `{"name":"a","modules":[null]}`} {
		assert.Error(t, in.ValidateJSON([]byte(bad)), bad)
	}

	// Written as the same JSON Schema, the task has the same contract.
	conv := events.TaskDef{Name: td.Name, Doc: td.Doc, InputSchema: in, OutputSchema: events.JSONSchema(td.OutputJSONSchema())}
	require.NoError(t, conv.Validate())
	assert.Equal(t, td.Contract(), conv.Contract())
}

// contractDigest pins TaskDef.Contract of the golden version 3 task: the
// digest is computed from the tool definition alone (name, description,
// inputSchema, outputSchema), so another implementation can recompute it
// (checked with Python: sha256 of json.dumps(tool, sort_keys=True,
// separators=(",", ":")), which is RFC 8785 for this ASCII, integer-free
// object).
const contractDigest = "e449fe38c87a88380107fcff8a0a566af1558c511015477d8d3460e23c6c21f4"

func TestContract(t *testing.T) {
	td := goldenEvents()["TaskDefined.v3"].Task.Task
	tool := td.Tool()
	b, err := json.Marshal(tool)
	require.NoError(t, err)
	var keys map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &keys))
	assert.Len(t, keys, 4)
	for _, k := range []string{"name", "description", "inputSchema", "outputSchema"} {
		assert.Contains(t, keys, k)
	}
	canon, err := events.CanonicalJSON(b)
	require.NoError(t, err)
	sum := sha256.Sum256(canon)
	require.Equal(t, hex.EncodeToString(sum[:]), td.Contract(), "the digest is SHA-256 of the tool's canonical JSON")
	require.Equal(t, tool.Digest(), td.Contract())
	if contractDigest != td.Contract() {
		t.Fatalf("the contract digest of the golden task changed: %s, pinned %s: every pinned ref would break", td.Contract(), contractDigest)
	}

	for name, change := range map[string]func(*events.TaskDef){
		"name":   func(d *events.TaskDef) { d.Name = "parse2" },
		"doc":    func(d *events.TaskDef) { d.Doc += " " },
		"input":  func(d *events.TaskDef) { d.InputSchema = events.MustJSONSchema(`{"type":"object"}`) },
		"output": func(d *events.TaskDef) { d.OutputSchema = events.MustJSONSchema(`{}`) },
	} {
		d := td
		change(&d)
		assert.NotEqual(t, td.Contract(), d.Contract(), name)
	}
}

// JSON carries the schemas as objects; reading one keeps its canonical
// form. Legacy definitions keep their JSON keys and gain none.
func TestTaskDefJSON(t *testing.T) {
	td := goldenEvents()["TaskDefined.v3"].Task.Task
	b, err := json.Marshal(td)
	require.NoError(t, err)
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(b, &raw))
	assert.Equal(t, string(td.InputSchema), string(raw["input_schema"]))
	assert.Equal(t, `{"items":{"type":"number"},"type":"array"}`, string(raw["output_schema"]))
	assert.NotContains(t, raw, "input")
	var back events.TaskDef
	require.NoError(t, json.Unmarshal(b, &back))
	assert.Equal(t, td, back)

	// A client's schema, with whitespace and its own key order.
	var in events.TaskDef
	require.NoError(t, json.Unmarshal([]byte(`{"name":"t","input_schema":{ "type" : "object", "properties": {"b":{}, "a":{}} },"output_schema":{}}`), &in))
	assert.Equal(t, events.JSONSchema(`{"properties":{"a":{},"b":{}},"type":"object"}`), in.InputSchema)
	require.NoError(t, in.Validate())

	legacy, err := json.Marshal(architectDef().Tasks[0])
	require.NoError(t, err)
	assert.Contains(t, string(legacy), `"input":{"type":"object"`)
	assert.NotContains(t, string(legacy), "input_schema")
}

// Legacy task definitions in the golden vectors (versions 1 and 2) decode,
// read as JSON Schema, and encode to the same bytes: their hashes, and the
// fingerprint of the root that carries one, are unchanged.
func TestLegacyGoldenTasks(t *testing.T) {
	require.Equal(t, architectFingerprint, architectDef().Fingerprint())
	for _, name := range []string{"RootRegistered", "TaskDefined", "AgentCreated.v2"} {
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "golden", name+".msgpack"))
			require.NoError(t, err)
			e, err := events.Decode(b)
			require.NoError(t, err)
			var tasks []events.TaskDef
			switch {
			case e.Registered != nil:
				tasks = e.Registered.Def.Tasks
				assert.Equal(t, e.Root, e.Registered.Def.Fingerprint())
			case e.Task != nil:
				tasks = []events.TaskDef{e.Task.Task}
			default:
				tasks = e.Created.Tasks
			}
			require.NotEmpty(t, tasks)
			for _, td := range tasks {
				assert.False(t, td.HasJSONSchema())
				require.NoError(t, events.JSONSchema(td.InputJSONSchema()).Validate())
				require.NoError(t, events.JSONSchema(td.OutputJSONSchema()).Validate())
			}
			again, err := events.Encode(e)
			require.NoError(t, err)
			assert.Equal(t, events.Hash(b), events.Hash(again))
		})
	}
}

// JSON Schema in a task definition exists from schema version 3: an
// earlier event carrying it is malformed, whichever body holds the task.
func TestJSONSchemaNeedsVersion3(t *testing.T) {
	v3 := goldenEvents()["TaskDefined.v3"]
	td := v3.Task.Task
	def := architectDef()
	def.Tasks = append(def.Tasks, td)
	for name, e := range map[string]events.Event{
		"task":    *v3,
		"created": {ID: v3.ID, Type: events.AgentCreated, Root: v3.Root, Path: "a", Created: &events.CreatedData{Tasks: []events.TaskDef{td}}},
		"registered": {ID: v3.ID, Type: events.RootRegistered, Root: def.Fingerprint(),
			Registered: &events.RootData{Def: def}},
	} {
		t.Run(name, func(t *testing.T) {
			e.Version = 3
			_, err := events.Encode(&e)
			require.NoError(t, err)
			e.Version = 2
			_, err = events.Decode(rawEncode(t, &e))
			require.ErrorIs(t, err, events.ErrMalformed)
			require.ErrorContains(t, err, "since version 3")
			_, err = events.Encode(&e)
			require.ErrorIs(t, err, events.ErrMalformed)
		})
	}
}
