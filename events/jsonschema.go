package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

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
// MaxJSONSchemaDepth, and costs too: the subschemas one location can
// evaluate (MaxSchemaEvaluations), the regular expressions' programs
// (MaxRegexpInsts, MaxSchemaRegexpInsts), the evaluations one value's
// validation takes (MaxInstanceEvaluations). Numbers must survive
// canonicalization exactly (ParseJSONSchema, UnmarshalJSON).
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
	if err := checkExactNumbers(doc); err != nil {
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
func (s JSONSchema) check() (*evalWalk, error) {
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
// names each failing location and keyword. A value whose validation would
// evaluate more than MaxInstanceEvaluations subschemas is refused
// (ErrTooLarge) before the validator runs: see instanceEvaluations.
func (s JSONSchema) ValidateJSON(instance []byte) error {
	w, err := s.compiled()
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(instance))
	if err != nil {
		return fmt.Errorf("value is not JSON: %w", err)
	}
	if n := w.instanceEvaluations(v); n > MaxInstanceEvaluations {
		return fmt.Errorf("%w: validating this value would evaluate more than %d subschemas (the schema's branches multiply with the value's depth), the limit is %d",
			ErrTooLarge, MaxInstanceEvaluations, MaxInstanceEvaluations)
	}
	return w.root.Validate(v)
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
	if err := checkExactNumbers(b); err != nil {
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
func (s JSONSchema) compiled() (*evalWalk, error) {
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
		return e.w, e.err
	}
	w, err := s.check()
	cost := len(s)
	if w != nil {
		cost += len(w.all)*schemaNodeBytes + w.insts*regexpInstBytes
	}
	schemaCache.put(s, compiledSchema{w: w, err: err}, cost)
	return w, err
}

// The compiled-schema cache is bounded by count and by cost: an estimate
// of the memory an entry holds, its text plus schemaNodeBytes per compiled
// subschema and regexpInstBytes per regular-expression instruction (measured: a 64 KiB document of 6,000 empty properties holds
// 4.5 MB compiled, 750 bytes a subschema). 64 MB holds the 256 entries of
// ordinary schemas (a few KiB and a few dozen subschemas each) and about
// fifteen of the largest documents the limits allow.
const (
	maxCachedSchemas    = 256
	maxCachedSchemaCost = 64 << 20
	schemaNodeBytes     = 1 << 10
	regexpInstBytes     = 256 // \p{L}{1000}: 1,002 instructions, 200 KB
)

type compiledSchema struct {
	w    *evalWalk
	err  error
	cost int
}

type compiledSchemaCache struct {
	mu   sync.Mutex
	m    map[JSONSchema]compiledSchema
	cost int // the sum of the entries' costs
}

var schemaCache compiledSchemaCache

// put adds an entry of the given cost, first dropping entries (any ones)
// until it fits both bounds.
func (c *compiledSchemaCache) put(s JSONSchema, e compiledSchema, cost int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[JSONSchema]compiledSchema{}
	}
	if _, ok := c.m[s]; ok {
		return
	}
	for k, old := range c.m {
		if len(c.m) < maxCachedSchemas && c.cost+cost <= maxCachedSchemaCost {
			break
		}
		delete(c.m, k)
		c.cost -= old.cost
	}
	e.cost = cost
	c.m[s] = e
	c.cost += cost
}

func compileSchema(s JSONSchema) (*evalWalk, error) {
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(string(s)))
	if err != nil {
		return nil, fmt.Errorf("JSON Schema: %w", err)
	}
	if err := checkLocalRefs(doc, ""); err != nil {
		return nil, err
	}
	insts, err := checkPatterns(doc)
	if err != nil {
		return nil, fmt.Errorf("JSON Schema: %w", err)
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
		switch {
		case errors.Is(err, errRemote) || errors.As(err, &load):
			return nil, fmt.Errorf("JSON Schema: %w: %w", err, ErrSchemaRef)
		}
		return nil, fmt.Errorf("JSON Schema is invalid: %w", err)
	}
	w, err := checkEvaluations(sch)
	if err != nil {
		return nil, err
	}
	w.insts = insts
	return w, nil
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
// than max, or number more than MaxJSONSchemaValues (jsonShape).
func checkJSONDepth(b []byte, max int) error {
	depth, values := jsonShape(b)
	if depth > max {
		return fmt.Errorf("%w: the JSON Schema nests objects and arrays more than %d deep", ErrTooLarge, max)
	}
	if values > MaxJSONSchemaValues {
		return fmt.Errorf("%w: the JSON Schema holds more than %d objects and arrays, the limit is %d", ErrTooLarge, MaxJSONSchemaValues, MaxJSONSchemaValues)
	}
	return nil
}

// jsonShape returns how deeply the arrays and objects of JSON text nest and
// how many there are. It only counts brackets outside strings; the parser
// checks the syntax.
func jsonShape(b []byte) (maxDepth, values int) {
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
			depth++
			values++
			maxDepth = max(maxDepth, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return maxDepth, values
}

// checkPatterns bounds the regular expressions of a document before the
// compiler builds them: each "pattern" string and each "patternProperties"
// name is parsed and compiled to a Go regexp/syntax program (RE2 syntax,
// Perl flags, as regexp.Compile does), refused over MaxRegexpInsts
// instructions, and the distinct ones together over
// MaxSchemaRegexpInsts. Like checkLocalRefs it also looks inside data (a
// "const" holding a "pattern" key), which costs nothing real; it walks
// members in name order, so the pattern an error names is the same in
// every process. A pattern that does not parse is left to the compiler,
// which refuses it. A refused pattern costs one parse, not the matchers
// regexp.Compile would build: "\p{L}{1000}" 2,000 times over cost 410 ms
// and 431 MB to compile.
func checkPatterns(v any) (int, error) {
	seen := map[string]bool{}
	total := 0
	check := func(p string) error {
		if seen[p] {
			return nil
		}
		seen[p] = true
		n, err := regexpInsts(p)
		if err != nil {
			return nil
		}
		if n > MaxRegexpInsts {
			return fmt.Errorf("%w: regular expression %.64q compiles to %d instructions, the limit is %d (bound a length with minLength and maxLength, not a counted repeat)",
				ErrTooLarge, p, n, MaxRegexpInsts)
		}
		if total += n; total > MaxSchemaRegexpInsts {
			return fmt.Errorf("%w: the regular expressions of the JSON Schema compile to more than %d instructions together, the limit is %d",
				ErrTooLarge, MaxSchemaRegexpInsts, MaxSchemaRegexpInsts)
		}
		return nil
	}
	var walk func(v any) error
	walk = func(v any) error {
		switch v := v.(type) {
		case map[string]any:
			for _, k := range slices.Sorted(maps.Keys(v)) {
				switch x := v[k].(type) {
				case string:
					if k == "pattern" {
						if err := check(x); err != nil {
							return err
						}
					}
				case map[string]any:
					if k == "patternProperties" {
						for _, p := range slices.Sorted(maps.Keys(x)) {
							if err := check(p); err != nil {
								return err
							}
						}
					}
				}
				if err := walk(v[k]); err != nil {
					return err
				}
			}
		case []any:
			for _, x := range v {
				if err := walk(x); err != nil {
					return err
				}
			}
		}
		return nil
	}
	err := walk(v)
	return total, err
}

// regexpInsts returns the size of p's compiled program, as regexp.Compile
// would build it (syntax.Perl, simplified).
func regexpInsts(p string) (int, error) {
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return 0, err
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0, err
	}
	return len(prog.Inst), nil
}

// checkEvaluations refuses a compiled schema that can evaluate more than
// MaxSchemaEvaluations subschemas at one instance location, or whose
// in-place references form a cycle; it returns the number of distinct
// subschemas.
//
// Validation evaluates a schema at an instance location, and through its
// in-place applicators (allOf, anyOf, oneOf, not, if, then, else,
// dependentSchemas, dependencies, $ref, $recursiveRef, $dynamicRef) more
// schemas at that same location: the count for a schema is 1 plus its
// targets' counts, every path counted (the validator keeps no memo, so two
// anyOf branches that $ref the same chain evaluate it twice). A
// $dynamicRef or $recursiveRef may resolve at run time to any reachable
// schema that declares the same dynamic anchor (or $recursiveAnchor): the
// largest is counted. The bound is computed on the compiled schema, so
// references resolve exactly as the validator resolves them ("#/..."
// pointers, "#anchor", embedded $id). Schemas applied to child locations
// (properties, items, ...) are counted where they apply, each as a root;
// how counts multiply from one level of an instance to the next is bounded
// when an instance is validated (instanceEvaluations).
//
// A cycle of in-place references ({"$ref":"#"} at the root, or two $defs
// that allOf each other) never ends at run time: the validator stops it
// with a "ref cycle" failure. Such a schema is refused.
func checkEvaluations(root *jsonschema.Schema) (*evalWalk, error) {
	w := newEvalWalk(root)
	one := func(*jsonschema.Schema) int { return 1 }
	for _, s := range w.all {
		n, err := w.paths(s, one)
		if err != nil {
			return nil, err
		}
		if n > MaxSchemaEvaluations {
			return nil, fmt.Errorf("%w: the JSON Schema can evaluate more than %d subschemas at one instance location (from %s through allOf, anyOf, oneOf, not, if/then/else, dependentSchemas and references), the limit is %d",
				ErrTooLarge, MaxSchemaEvaluations, schemaLocation(s), MaxSchemaEvaluations)
		}
	}
	w.count = nil // w is shared, read-only, from here on
	return w, nil
}

// newEvalWalk collects the schemas reachable from root, and the dynamic
// anchors among them.
func newEvalWalk(root *jsonschema.Schema) *evalWalk {
	w := &evalWalk{root: root, dyn: map[string][]*jsonschema.Schema{}}
	seen := map[*jsonschema.Schema]bool{}
	stack := []*jsonschema.Schema{root}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if s == nil || seen[s] {
			continue
		}
		seen[s] = true
		w.all = append(w.all, s)
		if s.DynamicAnchor != "" {
			w.dyn[s.DynamicAnchor] = append(w.dyn[s.DynamicAnchor], s)
		}
		if s.RecursiveAnchor {
			w.rec = append(w.rec, s)
		}
		stack = append(stack, inPlace(s)...)
		stack = append(stack, children(s)...)
		if s.DynamicRef != nil {
			stack = append(stack, s.DynamicRef.Ref)
		}
		if s.RecursiveRef != nil {
			stack = append(stack, s.RecursiveRef)
		}
	}
	return w
}

// evalWalk is a compiled schema with what its bounds need: every
// reachable subschema, the dynamic anchors, the size of its regular
// expressions. It is shared, read-only, once checkEvaluations returns it;
// until then count memoizes one sum of paths (a sum in progress is -1).
type evalWalk struct {
	root  *jsonschema.Schema
	insts int                  // the instructions of its regular expressions (checkPatterns)
	all   []*jsonschema.Schema // every reachable schema
	count map[*jsonschema.Schema]int
	dyn   map[string][]*jsonschema.Schema // $dynamicAnchor name -> schemas declaring it
	rec   []*jsonschema.Schema            // schemas with "$recursiveAnchor": true
}

// paths returns base(s) plus, over every in-place path from s, the base of
// the schema it reaches, saturated just over MaxSchemaEvaluations. With
// base 1 it is the number of schemas evaluated at s's location.
func (w *evalWalk) paths(s *jsonschema.Schema, base func(*jsonschema.Schema) int) (int, error) {
	if s == nil {
		return 0, nil
	}
	if w.count == nil {
		w.count = map[*jsonschema.Schema]int{}
	}
	switch n, ok := w.count[s]; {
	case ok && n < 0:
		return 0, fmt.Errorf("JSON Schema: references applied in place form a cycle through %s (the validator would stop it with a \"ref cycle\" failure): %w",
			schemaLocation(s), ErrMalformed)
	case ok:
		return n, nil
	}
	w.count[s] = -1
	n := min(base(s), MaxSchemaEvaluations+1)
	for _, t := range inPlace(s) {
		m, err := w.paths(t, base)
		if err != nil {
			return 0, err
		}
		n = min(n+m, MaxSchemaEvaluations+1)
	}
	// A dynamic reference evaluates one of its candidates.
	most := 0
	for _, t := range w.candidates(s) {
		m, err := w.paths(t, base)
		if err != nil {
			return 0, err
		}
		most = max(most, m)
	}
	n = min(n+most, MaxSchemaEvaluations+1)
	w.count[s] = n
	return n, nil
}

// candidates returns the schemas a $dynamicRef or $recursiveRef of s may
// evaluate: its static target and every schema declaring its anchor.
func (w *evalWalk) candidates(s *jsonschema.Schema) []*jsonschema.Schema {
	var out []*jsonschema.Schema
	if s.DynamicRef != nil {
		out = append(out, s.DynamicRef.Ref)
		if s.DynamicRef.Anchor != "" {
			out = append(out, w.dyn[s.DynamicRef.Anchor]...)
		}
	}
	if s.RecursiveRef != nil {
		out = append(out, s.RecursiveRef)
		out = append(out, w.rec...)
	}
	return slices.DeleteFunc(out, func(t *jsonschema.Schema) bool { return t == nil })
}

// inPlace returns the schemas that s applies at its own instance location
// (dynamic references aside).
func inPlace(s *jsonschema.Schema) []*jsonschema.Schema {
	out := []*jsonschema.Schema{s.Ref, s.Not, s.If, s.Then, s.Else}
	out = append(out, s.AllOf...)
	out = append(out, s.AnyOf...)
	out = append(out, s.OneOf...)
	for _, k := range slices.Sorted(maps.Keys(s.DependentSchemas)) {
		out = append(out, s.DependentSchemas[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.Dependencies)) {
		if t, ok := s.Dependencies[k].(*jsonschema.Schema); ok {
			out = append(out, t)
		}
	}
	return slices.DeleteFunc(out, func(t *jsonschema.Schema) bool { return t == nil })
}

// children returns the schemas that s applies to other instance locations
// (members, items, property names, decoded content).
func children(s *jsonschema.Schema) []*jsonschema.Schema {
	out := []*jsonschema.Schema{s.PropertyNames, s.UnevaluatedProperties, s.Contains,
		s.Items2020, s.UnevaluatedItems, s.ContentSchema}
	for _, k := range slices.Sorted(maps.Keys(s.Properties)) {
		out = append(out, s.Properties[k])
	}
	pats := slices.SortedFunc(maps.Keys(s.PatternProperties), func(a, b jsonschema.Regexp) int { return strings.Compare(a.String(), b.String()) })
	for _, re := range pats {
		out = append(out, s.PatternProperties[re])
	}
	out = append(out, s.PrefixItems...)
	for _, v := range []any{s.AdditionalProperties, s.Items, s.AdditionalItems} {
		switch v := v.(type) {
		case *jsonschema.Schema:
			out = append(out, v)
		case []*jsonschema.Schema:
			out = append(out, v...)
		}
	}
	return slices.DeleteFunc(out, func(t *jsonschema.Schema) bool { return t == nil })
}

// schemaLocation names a compiled schema by its JSON pointer in the
// document ("#/$defs/a"), or by its URL when it has its own $id.
func schemaLocation(s *jsonschema.Schema) string {
	if loc, ok := strings.CutPrefix(s.Location, schemaURL); ok {
		if loc == "" {
			return "#"
		}
		return loc
	}
	return s.Location
}

// checkExactNumbers refuses a JSON text holding a number that
// canonicalization would change. RFC 8785 reads a number as the nearest
// IEEE 754 double and writes that double's shortest decimal form, so
// 9007199254740993 would be stored as 9007199254740992 and
// 1.00000000000000001 as 1: the stored schema would mean something its
// author did not write. A number passes when the decimal value of its text
// equals that of its canonical text (0.1, 1.50, 1e3 and -0 pass).
func checkExactNumbers(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("JSON Schema: %w", err)
		}
		n, ok := tok.(json.Number)
		if !ok {
			continue
		}
		if err := exactNumber(string(n)); err != nil {
			return fmt.Errorf("JSON Schema: %w", err)
		}
	}
}

// exactNumber checks one JSON number text (see checkExactNumbers).
func exactNumber(n string) error {
	f, err := strconv.ParseFloat(n, 64)
	if err != nil {
		return fmt.Errorf("number %.40s is out of range: %w", n, ErrMalformed)
	}
	canon := strconv.FormatFloat(f, 'g', -1, 64) // the digits RFC 8785 writes
	if canon == n {
		return nil
	}
	// An exponent far outside a double's range (1e-400 reads as 0) is
	// refused before big.Rat would expand it.
	if _, e, ok := strings.Cut(strings.ToLower(n), "e"); ok {
		if x, err := strconv.Atoi(e); err != nil || x < -1100 || x > 1100 {
			return fmt.Errorf("number %.40s is out of range: %w", n, ErrMalformed)
		}
	}
	want, ok1 := new(big.Rat).SetString(n)
	got, ok2 := new(big.Rat).SetString(canon)
	if !ok1 || !ok2 || want.Cmp(got) != 0 {
		if c, err := CanonicalJSON([]byte(n)); err == nil {
			canon = string(c) // as the stored text would have it
		}
		return fmt.Errorf("number %.40s is not exactly a 64-bit double: canonical JSON (RFC 8785) would store %s; write a number a double holds (integers within ±2^53): %w",
			n, canon, ErrMalformed)
	}
	return nil
}

// SchemaErrorText returns the text of a validation error bounded to
// MaxSchemaErrorBytes: the validator names every failing location and
// keyword, which for a schema of many branches runs to megabytes. A cut
// text ends with a marker saying how much was left out.
func SchemaErrorText(err error) string {
	msg := err.Error()
	if len(msg) <= MaxSchemaErrorBytes {
		return msg
	}
	cut := MaxSchemaErrorBytes
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return fmt.Sprintf("%s ... [%d more bytes of validation errors left out]", msg[:cut], len(msg)-cut)
}

// instanceEvaluations returns how many subschema evaluations validating v
// would take, saturated just over MaxInstanceEvaluations, without running
// the validator. It walks the value and the schema together: at each
// location, a schema counts 1 plus the schemas it applies in place (every
// path, as checkEvaluations counts them; the largest candidate of a
// dynamic reference) and the schemas it applies to each child: the
// properties, patternProperties (whose pattern matches the name) or
// additionalProperties, unevaluatedProperties and propertyNames of a
// member; the prefixItems, items or additionalItems, contains and
// unevaluatedItems of an item. It counts as if no applicator stopped
// early (anyOf at its first match, if without then), so it is an upper
// bound. A (schema, location) pair is computed once, and the walk stops
// once it has seen more pairs than the limit (the count is at least the
// number of pairs), so it costs at most that many steps.
func (w *evalWalk) instanceEvaluations(v any) int {
	c := instCost{w: w, memo: map[instKey]int{}}
	return c.cost(w.root, newInode(v))
}

// inode is one location of a value: an object's members in name order, or
// an array's items.
type inode struct {
	v     any
	names []*inode // an object's member names, as string values
	kids  []*inode // an object's members (by names) or an array's items
}

func newInode(v any) *inode {
	n := &inode{v: v}
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			n.names = append(n.names, &inode{v: k})
			n.kids = append(n.kids, newInode(v[k]))
		}
	case []any:
		for _, x := range v {
			n.kids = append(n.kids, newInode(x))
		}
	}
	return n
}

type instKey struct {
	s *jsonschema.Schema
	n *inode
}

type instCost struct {
	w    *evalWalk
	memo map[instKey]int
}

func (c *instCost) cost(s *jsonschema.Schema, n *inode) int {
	const over = MaxInstanceEvaluations + 1
	if s == nil {
		return 0
	}
	k := instKey{s, n}
	if m, ok := c.memo[k]; ok {
		return m
	}
	if len(c.memo) >= MaxInstanceEvaluations {
		return over
	}
	c.memo[k] = over // in-place cycles were refused: never read back
	total := 1
	add := func(t *jsonschema.Schema, at *inode) { total = min(total+c.cost(t, at), over) }
	for _, t := range inPlace(s) {
		add(t, n)
	}
	most := 0
	for _, t := range c.w.candidates(s) {
		most = max(most, c.cost(t, n))
	}
	total = min(total+most, over)
	switch n.v.(type) {
	case map[string]any:
		for i, kid := range n.kids {
			name := n.names[i].v.(string)
			p, matched := s.Properties[name]
			add(p, kid)
			for re, t := range s.PatternProperties {
				if re.MatchString(name) {
					add(t, kid)
					matched = true
				}
			}
			if ap, ok := s.AdditionalProperties.(*jsonschema.Schema); ok && !matched {
				add(ap, kid)
			}
			add(s.UnevaluatedProperties, kid)
			add(s.PropertyNames, n.names[i])
		}
	case []any:
		for i, kid := range n.kids {
			switch items := s.Items.(type) {
			case *jsonschema.Schema:
				add(items, kid)
			case []*jsonschema.Schema:
				if i < len(items) {
					add(items[i], kid)
				} else if ai, ok := s.AdditionalItems.(*jsonschema.Schema); ok {
					add(ai, kid)
				}
			}
			if i < len(s.PrefixItems) {
				add(s.PrefixItems[i], kid)
			} else {
				add(s.Items2020, kid)
			}
			add(s.Contains, kid)
			add(s.UnevaluatedItems, kid)
		}
	}
	c.memo[k] = total
	return total
}
