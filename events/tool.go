package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Tool is a task as a model is told about it: the shape of an MCP tool
// definition (and of function calling), with MCP's names. A framework
// hands it to its model as it is.
type Tool struct {
	Name         string          `json:"name"`
	Description  string          `json:"description"`
	InputSchema  json.RawMessage `json:"inputSchema"`
	OutputSchema json.RawMessage `json:"outputSchema"`
}

// Tool returns the task as a tool definition: name, doc as description,
// and its input and output JSON Schemas (converted if legacy).
func (t TaskDef) Tool() Tool {
	return Tool{Name: t.Name, Description: t.Doc, InputSchema: t.InputJSONSchema(), OutputSchema: t.OutputJSONSchema()}
}

// Contract returns the task's contract digest: the hex SHA-256 of the RFC
// 8785 canonical JSON of its Tool (all four members, always present), so
// that any framework can recompute it from the tool definition it was
// given. A task redefined with another name, doc or schema has another
// contract; a legacy definition has the digest of its converted schemas.
func (t TaskDef) Contract() string { return t.Tool().Digest() }

// Digest is the contract digest of a tool definition (see TaskDef.Contract).
func (tl Tool) Digest() string {
	b, err := json.Marshal(tl)
	if err == nil {
		b, err = CanonicalJSON(b)
	}
	if err != nil {
		// Only a schema that is not JSON gets here (the raw messages are
		// made valid by rawJSON); hash the error so the digest stays a digest.
		b = []byte(err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// InputJSONSchema returns the task's input schema as JSON Schema: the
// stored one, or the legacy Input converted (Schema.JSONSchema).
func (t TaskDef) InputJSONSchema() json.RawMessage {
	if t.HasJSONSchema() {
		return rawJSON(t.InputSchema)
	}
	return rawJSON(t.Input.JSONSchema())
}

// OutputJSONSchema returns the task's output schema as JSON Schema, like
// InputJSONSchema.
func (t TaskDef) OutputJSONSchema() json.RawMessage {
	if t.HasJSONSchema() {
		return rawJSON(t.OutputSchema)
	}
	return rawJSON(t.Output.JSONSchema())
}

// rawJSON returns s as a JSON value ({} when empty); a text that is not
// JSON (never in a validated definition) becomes a JSON string.
func rawJSON(s JSONSchema) json.RawMessage {
	if s == "" {
		return json.RawMessage("{}")
	}
	if !json.Valid([]byte(s)) {
		b, _ := json.Marshal(string(s))
		return b
	}
	return json.RawMessage(s)
}

// JSONSchema converts a legacy schema to the equivalent JSON Schema, in
// canonical form. The legacy validator defined what equivalent means:
//
//   - string, integer, number, boolean: {"type": T}; any: {};
//   - array: {"type":"array","items": <items>};
//   - object: {"type":"object","properties":{...},"required":[...],
//     "additionalProperties":false}: the legacy validator refused
//     arguments it did not know, at every level;
//   - a field's doc becomes its schema's "description";
//   - an optional field also accepts null ("type": [T, "null"]), since the
//     legacy validator took a nil argument for an absent one.
func (s Schema) JSONSchema() JSONSchema {
	b, err := json.Marshal(s.jsonValue())
	if err == nil {
		b, err = CanonicalJSON(b)
	}
	if err != nil {
		// Maps of strings, bools and slices always encode (json.Marshal
		// replaces invalid UTF-8); were it to fail, the schema that accepts
		// nothing is the safe answer, never a panic in the fold.
		return "false"
	}
	return JSONSchema(b)
}

func (s Schema) jsonValue() map[string]any {
	switch s.Type {
	case "any", "":
		return map[string]any{}
	case "array":
		items := map[string]any{}
		if s.Items != nil {
			items = s.Items.jsonValue()
		}
		return map[string]any{"type": "array", "items": items}
	case "object":
		out := map[string]any{"type": "object", "additionalProperties": false}
		props := map[string]any{}
		var required []string
		for _, f := range s.Fields {
			fs := f.Schema.jsonValue()
			if typ, ok := fs["type"]; ok && !f.Required {
				fs["type"] = []any{typ, "null"}
			}
			if f.Doc != "" {
				fs["description"] = f.Doc
			}
			props[f.Name] = fs
			if f.Required {
				required = append(required, f.Name)
			}
		}
		if len(props) > 0 {
			out["properties"] = props
		}
		if len(required) > 0 {
			out["required"] = required
		}
		return out
	default:
		return map[string]any{"type": s.Type}
	}
}
