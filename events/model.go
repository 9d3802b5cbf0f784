package events

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// Kind is the kind of a capability.
type Kind string

// Capability kinds.
const (
	KindModule Kind = "module" // a named set of functions
	KindFunc   Kind = "fn"     // one function
	KindType   Kind = "type"   // a type (a class in dynamic languages)
)

// Visibility says what the model is told about a capability. It changes
// what the model sees, never what it may use.
type Visibility string

// Visibilities.
const (
	VisibilityHigh   Visibility = "high"   // signature and documentation shown
	VisibilityMedium Visibility = "medium" // signature only
	VisibilityLow    Visibility = "low"    // usable, not shown
)

// Capability is a symbolic reference to something the host process offers.
// It never carries code: the host resolves Kind and Name against its own
// catalog. Include and Exclude are glob patterns (path.Match syntax) over the
// members of a module.
//
// Its JSON keys are its wire keys (docs/wire.md, "One naming"). A nil
// Include or Exclude (the defaults "*" and "_*") is left out of the JSON;
// an empty one is written as [] and read back as empty (for Exclude: it
// excludes nothing), so a capability read from agentd and sent again means
// the same, and encodes to the same bytes.
type Capability struct {
	Kind       Kind       `msgpack:"kind" json:"kind"`
	Name       string     `msgpack:"name" json:"name"`
	Include    []string   `msgpack:"include" json:"include,omitzero"`
	Exclude    []string   `msgpack:"exclude" json:"exclude,omitzero"`
	Visibility Visibility `msgpack:"vis" json:"vis,omitempty"`
}

// Key identifies a capability within an agent: kind and name.
func (c Capability) Key() string { return string(c.Kind) + ":" + c.Name }

// Normalized fills defaults: include ["*"], exclude ["_*"], visibility high.
// Patterns are sorted and deduplicated so that equal capabilities encode
// equally.
func (c Capability) Normalized() Capability {
	if len(c.Include) == 0 {
		c.Include = []string{"*"}
	}
	if c.Exclude == nil {
		c.Exclude = []string{"_*"}
	}
	if c.Visibility == "" {
		c.Visibility = VisibilityHigh
	}
	if !sortedUnique(c.Include) {
		c.Include = slices.Compact(slices.Sorted(slices.Values(c.Include)))
	}
	if !sortedUnique(c.Exclude) {
		c.Exclude = slices.Compact(slices.Sorted(slices.Values(c.Exclude)))
	}
	return c
}

// sortedUnique reports whether ss is strictly increasing (already in the
// normalized form, so nothing needs copying).
func sortedUnique(ss []string) bool {
	for i := 1; i < len(ss); i++ {
		if ss[i-1] >= ss[i] {
			return false
		}
	}
	return true
}

// Validate checks the kind, the name, the patterns and the visibility.
func (c Capability) Validate() error {
	switch c.Kind {
	case KindModule, KindFunc, KindType:
	default:
		return fmt.Errorf("capability %q: kind %q is not one of module, fn, type", c.Name, c.Kind)
	}
	if err := validateSymbol(c.Name); err != nil {
		return fmt.Errorf("capability %s %q: %w", c.Kind, c.Name, err)
	}
	if err := c.checkPatterns(); err != nil {
		return err
	}
	for _, p := range append(slices.Clone(c.Include), c.Exclude...) {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			return fmt.Errorf("capability %s %q: pattern %q is not a valid glob", c.Kind, c.Name, p)
		}
	}
	switch c.Visibility {
	case "", VisibilityHigh, VisibilityMedium, VisibilityLow:
	default:
		return fmt.Errorf("capability %s %q: visibility %q is not one of high, medium, low", c.Kind, c.Name, c.Visibility)
	}
	return nil
}

// Allows reports whether a member name passes the capability's patterns:
// it matches some include pattern and no exclude pattern.
// Unset patterns take the defaults of Normalized (include "*", exclude
// "_*"); it allocates nothing.
func (c Capability) Allows(member string) bool {
	in := len(c.Include) == 0 // default include "*"
	for _, p := range c.Include {
		if p == "*" || p == member {
			in = true
			break
		}
		if ok, _ := path.Match(p, member); ok {
			in = true
			break
		}
	}
	if !in {
		return false
	}
	if c.Exclude == nil {
		return !strings.HasPrefix(member, "_") // default exclude "_*"
	}
	for _, p := range c.Exclude {
		if ok, _ := path.Match(p, member); ok {
			return false
		}
	}
	return true
}

// validateSymbol accepts names of host symbols: 1..MaxSymbolLen of
// [A-Za-z0-9_.-].
func validateSymbol(s string) error {
	if s == "" {
		return fmt.Errorf("name must be 1..%d characters, got 0", MaxSymbolLen)
	}
	if len(s) > MaxSymbolLen {
		return fmt.Errorf("%w: name %q... is %d characters, the limit is %d", ErrTooLarge, s[:32], len(s), MaxSymbolLen)
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			return fmt.Errorf("name %q: character %q is not allowed (letters, digits, '_', '.', '-')", s, r)
		}
	}
	return nil
}

// Schema is the legacy schema of a task's input or output, as events of
// schema versions 1 and 2 carry it. It is still read, and converted to the
// equivalent JSON Schema (Schema.JSONSchema, TaskDef.InputJSONSchema).
//
// Deprecated: define tasks with TaskDef.InputSchema and OutputSchema
// (JSON Schema). Root definitions that use Schema keep their fingerprint.
type Schema struct {
	// Type is one of string, integer, number, boolean, object, array, any.
	// It is omitted from the encoding only when empty (never in a
	// valid schema), so that an unset Schema encodes to nothing as a
	// task's input or output, and to {} as an array's items, and decodes
	// back to what it was.
	Type   string  `msgpack:"type,omitempty" json:"type"`
	Fields []Field `msgpack:"fields,omitempty" json:"fields,omitempty"` // for object
	Items  *Schema `msgpack:"items,omitempty" json:"items,omitempty"`   // for array
}

// Field is one named field of an object schema.
type Field struct {
	Name     string `msgpack:"name" json:"name"`
	Schema   Schema `msgpack:"schema" json:"schema"`
	Required bool   `msgpack:"required" json:"required,omitempty"`
	Doc      string `msgpack:"doc,omitempty" json:"doc,omitempty"`
}

// Unset reports whether the schema is unset (no type, fields or items):
// such a schema is left out of a task's encoding. (Not IsZero: the encoder
// would then also leave out an array's items pointing to an unset schema,
// and a decoded event would not survive a round trip.)
func (s Schema) Unset() bool { return s.Type == "" && s.Fields == nil && s.Items == nil }

// Validate checks that the schema's types are known, field names unique,
// and the limits: MaxSchemaDepth, MaxSchemaNodes, MaxFieldDocBytes.
func (s Schema) Validate() error {
	nodes := 0
	return s.validate(1, &nodes)
}

// validate is Validate for a schema at nesting level depth; nodes counts
// the schemas seen so far (of the whole task).
func (s Schema) validate(depth int, nodes *int) error {
	if depth > MaxSchemaDepth {
		return fmt.Errorf("%w: schema nests %d levels deep, the limit is %d", ErrTooLarge, depth, MaxSchemaDepth)
	}
	if *nodes++; *nodes > MaxSchemaNodes {
		return fmt.Errorf("%w: schemas hold more than %d types (every field and items counts one), the limit is %d", ErrTooLarge, MaxSchemaNodes, MaxSchemaNodes)
	}
	switch s.Type {
	case "string", "integer", "number", "boolean", "any":
		if len(s.Fields) > 0 || s.Items != nil {
			return fmt.Errorf("schema of type %s cannot have fields or items", s.Type)
		}
	case "object":
		seen := map[string]bool{}
		for _, f := range s.Fields {
			if err := validateSymbol(f.Name); err != nil {
				return fmt.Errorf("field: %w", err)
			}
			if seen[f.Name] {
				return fmt.Errorf("field %q appears twice", f.Name)
			}
			seen[f.Name] = true
			if len(f.Doc) > MaxFieldDocBytes {
				return tooLarge(fmt.Sprintf("the doc of field %q", f.Name), len(f.Doc), MaxFieldDocBytes, "bytes")
			}
			if err := f.Schema.validate(depth+1, nodes); err != nil {
				return fmt.Errorf("field %q: %w", f.Name, err)
			}
		}
	case "array":
		if s.Items == nil {
			return fmt.Errorf("schema of type array needs items")
		}
		if err := s.Items.validate(depth+1, nodes); err != nil {
			return fmt.Errorf("items: %w", err)
		}
	default:
		return fmt.Errorf("schema type %q is not one of string, integer, number, boolean, object, array, any", s.Type)
	}
	return nil
}

// TaskDef is a task: a signature with documentation whose implementation the
// executor (a model loop) supplies at call time.
//
// Its input and output are JSON Schema documents (InputSchema,
// OutputSchema; wire keys input_schema and output_schema, events of schema
// version 3 on). Definitions written before carry the legacy Input and
// Output (keys input and output) instead, left out of the encoding when
// unset so that those definitions encode, hash and fingerprint exactly as
// they did. A definition carries one form or the other, never both; read
// either through InputJSONSchema and OutputJSONSchema.
type TaskDef struct {
	Name string `msgpack:"name" json:"name"`
	Doc  string `msgpack:"doc" json:"doc,omitempty"`
	// Input and Output are the legacy schemas.
	//
	// Deprecated: use InputSchema and OutputSchema.
	Input  Schema `msgpack:"input,omitempty" json:"input,omitzero"`
	Output Schema `msgpack:"output,omitempty" json:"output,omitzero"`
	// InputSchema describes the task's arguments: a JSON Schema whose
	// top-level "type" is "object" (as MCP and function calling require).
	InputSchema JSONSchema `msgpack:"input_schema,omitempty" json:"input_schema,omitempty"`
	// OutputSchema describes the task's result ({} for any value).
	OutputSchema JSONSchema `msgpack:"output_schema,omitempty" json:"output_schema,omitempty"`
}

// HasJSONSchema reports whether the definition carries JSON Schema (the
// version 3 form) rather than the legacy schemas.
func (t TaskDef) HasJSONSchema() bool { return t.InputSchema != "" || t.OutputSchema != "" }

// Validate checks the task's name, doc and schemas.
func (t TaskDef) Validate() error {
	if err := ValidateSegment(t.Name); err != nil {
		return fmt.Errorf("task name: %w", err)
	}
	if len(t.Doc) > MaxTaskDocBytes {
		return tooLarge(fmt.Sprintf("the doc of task %q", t.Name), len(t.Doc), MaxTaskDocBytes, "bytes")
	}
	if t.HasJSONSchema() {
		return t.validateJSONSchemas()
	}
	if t.Input.Type != "object" {
		return fmt.Errorf("task %q: input schema must be of type object, got %q", t.Name, t.Input.Type)
	}
	nodes := 0 // input and output together
	if err := t.Input.validate(1, &nodes); err != nil {
		return fmt.Errorf("task %q input: %w", t.Name, err)
	}
	if err := t.Output.validate(1, &nodes); err != nil {
		return fmt.Errorf("task %q output: %w", t.Name, err)
	}
	return nil
}

// CheckUTF8 refuses (ErrMalformed) a definition whose name, doc, legacy
// field names or docs, or schema texts are not valid UTF-8. The contract
// digest is made of JSON, where such bytes all become U+FFFD: "pay \xff"
// and "pay \xfe" would share a contract. Every definition in the JSON
// Schema form is checked (Validate); events of schema version 3 check
// every definition they carry (Event.Validate), so the library writes none.
// Definitions in events of versions 1 and 2 are not checked: those
// histories fold as they always did.
func (t TaskDef) CheckUTF8() error {
	bad := func(what string) error {
		return fmt.Errorf("task %q: %s is not valid UTF-8: %w", strings.ToValidUTF8(t.Name, "\uFFFD"), what, ErrMalformed)
	}
	switch {
	case !utf8.ValidString(t.Name):
		return bad("the name")
	case !utf8.ValidString(t.Doc):
		return bad("the doc")
	case !utf8.ValidString(string(t.InputSchema)):
		return bad("input_schema")
	case !utf8.ValidString(string(t.OutputSchema)):
		return bad("output_schema")
	}
	if f, ok := t.Input.invalidUTF8(); ok {
		return bad("the input field " + f)
	}
	if f, ok := t.Output.invalidUTF8(); ok {
		return bad("the output field " + f)
	}
	return nil
}

// invalidUTF8 returns the first field (its position) whose name or doc is
// not valid UTF-8.
func (s Schema) invalidUTF8() (string, bool) {
	for i, f := range s.Fields {
		if !utf8.ValidString(f.Name) || !utf8.ValidString(f.Doc) {
			return fmt.Sprintf("#%d", i), true
		}
		if at, ok := f.Schema.invalidUTF8(); ok {
			return fmt.Sprintf("#%d/%s", i, at), true
		}
	}
	if s.Items != nil {
		return s.Items.invalidUTF8()
	}
	return "", false
}

// validateJSONSchemas checks a definition in the JSON Schema form.
func (t TaskDef) validateJSONSchemas() error {
	if err := t.CheckUTF8(); err != nil {
		return err
	}
	if !t.Input.Unset() || !t.Output.Unset() {
		return fmt.Errorf("task %q carries both JSON Schema (input_schema, output_schema) and legacy schemas (input, output): give one form: %w",
			t.Name, ErrMalformed)
	}
	if t.InputSchema == "" {
		return fmt.Errorf("task %q: input_schema is missing (a JSON Schema of type object; {\"type\":\"object\"} takes no arguments)", t.Name)
	}
	if t.OutputSchema == "" {
		return fmt.Errorf("task %q: output_schema is missing (a JSON Schema; {} allows any value)", t.Name)
	}
	if err := t.InputSchema.Validate(); err != nil {
		return fmt.Errorf("task %q input_schema: %w", t.Name, err)
	}
	if typ := t.InputSchema.topType(); typ != "object" {
		return fmt.Errorf("task %q input_schema: its top-level \"type\" must be \"object\" (MCP and function calling take arguments as an object), got %q",
			t.Name, typ)
	}
	if err := t.OutputSchema.Validate(); err != nil {
		return fmt.Errorf("task %q output_schema: %w", t.Name, err)
	}
	return nil
}

// RootDef is a root agent's definition, made in code by the host.
type RootDef struct {
	Name         string       `msgpack:"name" json:"name"`
	Primer       string       `msgpack:"primer" json:"primer"`
	Capabilities []Capability `msgpack:"caps" json:"caps"`
	Tasks        []TaskDef    `msgpack:"tasks" json:"tasks"`
}

// Canonical returns the definition with capabilities normalized and sorted
// by key and tasks sorted by name: the form that is hashed and stored.
func (d RootDef) Canonical() RootDef {
	caps := make([]Capability, len(d.Capabilities))
	for i, c := range d.Capabilities {
		caps[i] = c.Normalized()
	}
	slices.SortFunc(caps, func(a, b Capability) int { return strings.Compare(a.Key(), b.Key()) })
	tasks := slices.Clone(d.Tasks)
	slices.SortFunc(tasks, func(a, b TaskDef) int { return strings.Compare(a.Name, b.Name) })
	if tasks == nil {
		tasks = []TaskDef{}
	}
	return RootDef{Name: d.Name, Primer: d.Primer, Capabilities: caps, Tasks: tasks}
}

// Validate checks the root's name, capabilities, tasks and sizes (see
// limits.go).
func (d RootDef) Validate() error {
	if err := ValidateSegment(d.Name); err != nil {
		return fmt.Errorf("root name: %w", err)
	}
	if err := d.checkLimits(); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, c := range d.Capabilities {
		if err := c.Validate(); err != nil {
			return fmt.Errorf("root %q: %w", d.Name, err)
		}
		if seen[c.Key()] {
			return fmt.Errorf("root %q: capability %s %q appears twice", d.Name, c.Kind, c.Name)
		}
		seen[c.Key()] = true
	}
	tasks := map[string]bool{}
	for _, t := range d.Tasks {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("root %q: %w", d.Name, err)
		}
		if tasks[t.Name] {
			return fmt.Errorf("root %q: task %q appears twice", d.Name, t.Name)
		}
		tasks[t.Name] = true
	}
	return d.checkEncodedSize()
}

// Fingerprint is the hex SHA-256 of the canonical msgpack encoding of the
// definition (name, primer, capabilities, tasks). It is the same in every
// process and on every machine for the same definition.
func (d RootDef) Fingerprint() string {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(d.Canonical()); err != nil {
		// Encoding a struct of strings and slices cannot fail.
		panic(fmt.Sprintf("events: encode root definition: %v", err))
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:])
}
