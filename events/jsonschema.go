package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// JSONSchema is a JSON Schema document (draft 2020-12 unless its $schema
// names another draft the validator knows without loading it) held as its
// RFC 8785 canonical JSON text: the form a task definition stores on the
// wire (a msgpack str), hashes and compares. Build one with
// ParseJSONSchema or MustJSONSchema, which canonicalize; a value that is
// not canonical fails Validate. In JSON (the agentd API) it is the schema
// itself, an object, not a string.
//
// Schemas come from the log, that is from anyone who can publish to the
// stream, so they are self-contained: every $ref points into the document
// itself ("#/$defs/...", "#anchor"), and the validator loads nothing from
// the network or the disk. Sizes are bounded by MaxJSONSchemaBytes and
// MaxJSONSchemaDepth.
//
// Validation is github.com/santhosh-tekuri/jsonschema/v6: it implements
// drafts 4 to 2020-12 completely (it passes the official test suite,
// $dynamicRef and unevaluated* included), lets us refuse every URL it would
// load, matches patterns with Go's linear-time regexp engine (a stranger's
// "pattern" cannot make a validation run for ever), and its errors name the
// instance location and the keyword that failed.
type JSONSchema string

// Errors of JSON Schema documents.
var (
	// ErrSchemaRef: a $ref (or $dynamicRef) that leaves the document.
	ErrSchemaRef = errors.New("schema refers outside its document")
)

// schemaURL is the base URL of a schema without an $id. It is never loaded:
// the document is added to the compiler as this resource.
const schemaURL = "urn:agentreg:schema"

// ParseJSONSchema reads a JSON Schema document, checks it (Validate) and
// returns its canonical form.
func ParseJSONSchema(doc []byte) (JSONSchema, error) {
	if len(doc) > MaxJSONSchemaBytes*4 {
		// Canonical text is never much shorter: refuse before parsing.
		return "", tooLarge("the JSON Schema", len(doc), MaxJSONSchemaBytes, "bytes")
	}
	if err := checkJSONDepth(doc, MaxJSONSchemaDepth); err != nil {
		return "", err
	}
	c, err := CanonicalJSON(doc)
	if err != nil {
		return "", fmt.Errorf("JSON Schema: %w", err)
	}
	s := JSONSchema(c)
	if err := s.Validate(); err != nil {
		return "", err
	}
	return s, nil
}

// MustJSONSchema is ParseJSONSchema for schemas written in the program's
// source; it panics on an invalid one.
func MustJSONSchema(doc string) JSONSchema {
	s, err := ParseJSONSchema([]byte(doc))
	if err != nil {
		panic(fmt.Sprintf("events.MustJSONSchema: %v", err))
	}
	return s
}

// Raw returns the schema's JSON text.
func (s JSONSchema) Raw() json.RawMessage { return json.RawMessage(s) }

// Validate checks the document: its size and nesting, that it is JSON in
// canonical form, that every $ref stays inside it, and that it compiles as
// a JSON Schema (which checks it against its draft's meta-schema).
func (s JSONSchema) Validate() error {
	_, err := s.compiled()
	return err
}

// check is Validate without the cache: it compiles the document.
func (s JSONSchema) check() (*jsonschema.Schema, error) {
	if err := checkJSONDepth([]byte(s), MaxJSONSchemaDepth); err != nil {
		return nil, err
	}
	c, err := CanonicalJSON([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("JSON Schema: %w", err)
	}
	if string(c) != string(s) {
		return nil, fmt.Errorf("JSON Schema is not in RFC 8785 canonical form (build it with events.ParseJSONSchema): %w", ErrMalformed)
	}
	return compileSchema(s)
}

// ValidateJSON validates a JSON document (instance) against the schema.
// A mismatch is the validator's *jsonschema.ValidationError, whose text
// names each failing location and keyword.
func (s JSONSchema) ValidateJSON(instance []byte) error {
	sch, err := s.compiled()
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(instance))
	if err != nil {
		return fmt.Errorf("value is not JSON: %w", err)
	}
	return sch.Validate(v)
}

// topType returns the value of the document's top-level "type" keyword
// when it is a string.
func (s JSONSchema) topType() string {
	var doc struct {
		Type any `json:"type"`
	}
	if json.Unmarshal([]byte(s), &doc) != nil {
		return ""
	}
	t, _ := doc.Type.(string)
	return t
}

// MarshalJSON writes the schema itself (an object), or null when empty. A
// text that is not JSON (only in an event that failed validation) is
// written as a JSON string, so that the event can still be shown.
func (s JSONSchema) MarshalJSON() ([]byte, error) {
	if s == "" {
		return []byte("null"), nil
	}
	if !json.Valid([]byte(s)) {
		return json.Marshal(string(s))
	}
	return []byte(s), nil
}

// UnmarshalJSON reads a schema given as a JSON value and keeps its
// canonical form (null: empty). It does not validate it (Validate does).
func (s *JSONSchema) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		*s = ""
		return nil
	}
	if err := checkJSONDepth(b, MaxJSONSchemaDepth); err != nil {
		return err
	}
	c, err := CanonicalJSON(b)
	if err != nil {
		return fmt.Errorf("JSON Schema: %w", err)
	}
	*s = JSONSchema(c)
	return nil
}

// compiled checks the document and returns it compiled, from a
// process-wide cache of both outcomes (they depend on the text alone): the
// fold validates every task definition, and the same schemas recur in
// many agents.
func (s JSONSchema) compiled() (*jsonschema.Schema, error) {
	if len(s) == 0 {
		return nil, errors.New("JSON Schema is empty")
	}
	if len(s) > MaxJSONSchemaBytes {
		return nil, tooLarge("the JSON Schema", len(s), MaxJSONSchemaBytes, "bytes")
	}
	schemaCache.mu.Lock()
	e, ok := schemaCache.m[s]
	schemaCache.mu.Unlock()
	if ok {
		return e.sch, e.err
	}
	sch, err := s.check()
	schemaCache.mu.Lock()
	if schemaCache.m == nil {
		schemaCache.m = map[JSONSchema]compiledSchema{}
	}
	if len(schemaCache.m) >= maxCachedSchemas {
		for k := range schemaCache.m { // drop one, any one
			delete(schemaCache.m, k)
			break
		}
	}
	schemaCache.m[s] = compiledSchema{sch, err}
	schemaCache.mu.Unlock()
	return sch, err
}

// maxCachedSchemas bounds the compiled-schema cache.
const maxCachedSchemas = 256

type compiledSchema struct {
	sch *jsonschema.Schema
	err error
}

var schemaCache struct {
	mu sync.Mutex
	m  map[JSONSchema]compiledSchema
}

func compileSchema(s JSONSchema) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(s)))
	if err != nil {
		return nil, fmt.Errorf("JSON Schema: %w", err)
	}
	if err := checkLocalRefs(doc, ""); err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(refuseLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("JSON Schema: %w", err)
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		var load *jsonschema.LoadURLError
		if errors.Is(err, errRemote) || errors.As(err, &load) {
			return nil, fmt.Errorf("JSON Schema: %w: %w", err, ErrSchemaRef)
		}
		return nil, fmt.Errorf("JSON Schema is invalid: %w", err)
	}
	return sch, nil
}

var errRemote = errors.New("schemas are self-contained: nothing is loaded from the network or the disk")

// refuseLoader is the compiler's only loader: it loads nothing (the
// default one reads files).
type refuseLoader struct{}

func (refuseLoader) Load(url string) (any, error) { return nil, errRemote }

// checkLocalRefs refuses a $ref, $dynamicRef or $recursiveRef whose value
// is not a fragment of the document itself. It also looks inside values
// that are data, not schemas (a "default" holding a "$ref" key): such a
// value is refused too, which costs nothing real and keeps the walk simple.
func checkLocalRefs(v any, at string) error {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			switch k {
			case "$ref", "$dynamicRef", "$recursiveRef":
				if ref, ok := x.(string); ok && !strings.HasPrefix(ref, "#") {
					return fmt.Errorf("JSON Schema: %s %q at %s/%s: only references within the document (\"#/$defs/...\", \"#anchor\") are allowed: %w",
						k, ref, at, k, ErrSchemaRef)
				}
			}
			if err := checkLocalRefs(x, at+"/"+k); err != nil {
				return err
			}
		}
	case []any:
		for i, x := range v {
			if err := checkLocalRefs(x, fmt.Sprintf("%s/%d", at, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkJSONDepth refuses JSON text whose arrays and objects nest deeper
// than max. It only counts brackets outside strings; the parser checks the
// syntax.
func checkJSONDepth(b []byte, max int) error {
	depth, in, esc := 0, false, false
	for _, c := range b {
		switch {
		case in:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				in = false
			}
		case c == '"':
			in = true
		case c == '{' || c == '[':
			if depth++; depth > max {
				return fmt.Errorf("%w: the JSON Schema nests objects and arrays more than %d deep", ErrTooLarge, max)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}
