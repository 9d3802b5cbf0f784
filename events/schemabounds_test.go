package events

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// diamond is the security review's schema: n $defs, each an anyOf of two
// $refs to the next (one with an extra keyword, so they are not the same
// subschema), ending in end. Validation explores 2^n paths.
func diamond(n int, end string) string {
	var b strings.Builder
	b.WriteString(`{"$defs":{`)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `"d%d":{"anyOf":[{"$ref":"#/$defs/d%d"},{"$ref":"#/$defs/d%d","maximum":1}]},`, i, i+1, i+1)
	}
	fmt.Fprintf(&b, `"d%d":%s},"$ref":"#/$defs/d0","type":"object"}`, n, end)
	return b.String()
}

// The evaluation bound refuses a schema whose validation would explore
// more than MaxSchemaEvaluations schemas at one instance location, and
// does so before validating anything.
func TestSchemaEvaluationBound(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		s, err := ParseJSONSchema([]byte(diamond(11, "false"))) // 8,191 per location
		require.NoError(t, err)
		assert.Error(t, s.ValidateJSON([]byte(`{}`)))
	})
	for _, n := range []int{12, 16, 24, 60} {
		t.Run(fmt.Sprintf("ErrTooLarge/%d", n), func(t *testing.T) {
			t0 := time.Now()
			_, err := ParseJSONSchema([]byte(diamond(n, "false")))
			require.ErrorIs(t, err, ErrTooLarge)
			assert.Contains(t, err.Error(), fmt.Sprintf("more than %d subschemas at one instance location", MaxSchemaEvaluations))
			assert.Less(t, time.Since(t0), 2*time.Second)
		})
	}
	// The fold checks stored (canonical) text through TaskDef.Validate.
	c, err := CanonicalJSON([]byte(diamond(24, `{"type":"string"}`)))
	require.NoError(t, err)
	td := TaskDef{Name: "t", InputSchema: JSONSchema(c), OutputSchema: "{}"}
	require.ErrorIs(t, td.Validate(), ErrTooLarge)

	t.Run("dynamic and recursive references count their largest target", func(t *testing.T) {
		// $dynamicRef "#d" may land on either schema declaring the anchor
		// (the root, or w once validation has entered it through q): the
		// larger, w, is counted for each of p's four references.
		var leaves, wide, refs strings.Builder
		for i := 0; i < 50; i++ {
			fmt.Fprintf(&leaves, `{"minimum":%d},`, i)
		}
		for i := 0; i < 60; i++ {
			fmt.Fprintf(&wide, `{"$ref":"#/$defs/k","maximum":%d},`, i)
		}
		for i := 0; i < 4; i++ {
			fmt.Fprintf(&refs, `{"$dynamicRef":"#d","minimum":%d},`, i)
		}
		trim := func(b *strings.Builder) string { return strings.TrimSuffix(b.String(), ",") }
		// w counts 1 + 60 * (1 + 1 + 51) = 3,181 per location.
		w := `{"$id":"urn:w","$dynamicAnchor":"d","$defs":{"k":{"anyOf":[` + trim(&leaves) + `]}},"anyOf":[` + trim(&wide) + `]}`
		x := `{"$defs":{"w":` + w + `},"$dynamicAnchor":"d","properties":{"q":{"$ref":"#/$defs/w"},"p":{"allOf":[` + trim(&refs) + `]}},"type":"object"}`
		// Without q, nothing enters w: it is never evaluated, p's references
		// can only land on the root.
		_, err := ParseJSONSchema([]byte(strings.Replace(x, `"q":{"$ref":"#/$defs/w"},`, "", 1)))
		require.NoError(t, err)
		_, err = ParseJSONSchema([]byte(x))
		require.ErrorIs(t, err, ErrTooLarge)
	})
}

// A cycle of in-place references is refused (the validator would fail it
// at run time with "ref cycle"); recursion through a child location (a
// tree) is fine.
func TestSchemaRefCycle(t *testing.T) {
	for _, doc := range []string{
		`{"$ref":"#","type":"object"}`,
		`{"$defs":{"a":{"allOf":[{"$ref":"#/$defs/b"}]},"b":{"anyOf":[{"type":"string"},{"$ref":"#/$defs/a"}]}},"properties":{"x":{"$ref":"#/$defs/a"}},"type":"object"}`,
		`{"$anchor":"top","not":{"$ref":"#top"},"type":"object"}`,
		`{"$dynamicAnchor":"n","allOf":[{"$dynamicRef":"#n"}],"type":"object"}`,
	} {
		_, err := ParseJSONSchema([]byte(doc))
		require.ErrorIs(t, err, ErrMalformed, doc)
		assert.Contains(t, err.Error(), "cycle", doc)
	}
	for _, doc := range []string{
		`{"type":"object","properties":{"name":{"type":"string"},"children":{"type":"array","items":{"$ref":"#"}}}}`,
		// The specification's extensible tree ($dynamicRef to "node").
		`{"$defs":{"tree":{"$id":"urn:tree","$dynamicAnchor":"node","type":"object","properties":{"data":true,"children":{"type":"array","items":{"$dynamicRef":"#node"}}}}},` +
			`"$dynamicAnchor":"node","$ref":"#/$defs/tree","unevaluatedProperties":false,"type":"object"}`,
	} {
		s, err := ParseJSONSchema([]byte(doc))
		require.NoError(t, err, doc)
		assert.NoError(t, s.ValidateJSON([]byte(`{"children":[{"children":[]}]}`)))
	}
}

// pydanticLike builds the kind of schema pydantic (and invopop) generate
// for a large model: many $defs, Optional fields as anyOf [$ref, null],
// lists of models, a discriminated union, enums and constrained strings.
func pydanticLike(models, fields int) string {
	var b strings.Builder
	b.WriteString(`{"$defs":{`)
	for m := 0; m < models; m++ {
		if m > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"Model%d":{"title":"Model%d","type":"object","additionalProperties":false,"properties":{`, m, m)
		for f := 0; f < fields; f++ {
			if f > 0 {
				b.WriteString(",")
			}
			next := (m + f + 1) % models
			switch f % 6 {
			case 0:
				fmt.Fprintf(&b, `"f%d":{"type":"string","pattern":"^[a-z0-9-]{1,63}$","description":"a slug"}`, f)
			case 1:
				fmt.Fprintf(&b, `"f%d":{"anyOf":[{"$ref":"#/$defs/Model%d"},{"type":"null"}],"default":null}`, f, next)
			case 2:
				fmt.Fprintf(&b, `"f%d":{"type":"array","items":{"$ref":"#/$defs/Model%d"}}`, f, next)
			case 3:
				fmt.Fprintf(&b, `"f%d":{"enum":["a","b","c"],"type":"string"}`, f)
			case 4:
				fmt.Fprintf(&b, `"f%d":{"anyOf":[{"type":"integer","minimum":0},{"type":"string","format":"date-time"},{"type":"null"}]}`, f)
			case 5:
				fmt.Fprintf(&b, `"f%d":{"oneOf":[{"$ref":"#/$defs/Model%d"},{"$ref":"#/$defs/Model%d"},{"$ref":"#/$defs/Model%d"}],"discriminator":{"propertyName":"kind"}}`,
					f, next, (next+1)%models, (next+2)%models)
			}
		}
		b.WriteString(`},"required":["f0"]}`)
	}
	b.WriteString(`},"allOf":[{"$ref":"#/$defs/Model0"}],"type":"object"}`)
	return b.String()
}

// Ordinary schemas pass the bounds with room to spare.
func TestSchemaBoundsAcceptRealSchemas(t *testing.T) {
	doc := pydanticLike(50, 12)
	require.Greater(t, len(doc), 30<<10)
	s, err := ParseJSONSchema([]byte(doc))
	require.NoError(t, err)
	assert.NoError(t, s.ValidateJSON([]byte(`{"f0":"x","f1":{"f0":"y"},"f2":[],"f3":"a","f4":1}`)))
	assert.Error(t, s.ValidateJSON([]byte(`{"f0":"X"}`)))

	for _, p := range []string{`^[a-z0-9-]{1,63}$`, `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`,
		`^[a-zA-Z0-9.!#$%&'*+/=?^_{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`,
		`^\p{L}[\p{L}\p{N} ]{0,200}$`} {
		_, err := ParseJSONSchema([]byte(fmt.Sprintf(`{"type":"object","properties":{"x":{"pattern":%q}},"patternProperties":{%q:{}}}`, p, p)))
		assert.NoError(t, err, p)
	}
}

// patternSchema is the review's schema: 64 KiB of properties, each with a
// pattern that compiles to a 1,000-instruction program over a large class.
func patternSchema(seed int) string {
	var b strings.Builder
	b.WriteString(`{"properties":{`)
	for i := 0; b.Len() < MaxJSONSchemaBytes-200; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"p%d_%d":{"pattern":"\\p{L}{1000}"}`, seed, i)
	}
	b.WriteString(`},"type":"object"}`)
	return b.String()
}

// Regular expressions are bounded one by one and per document, and the
// review's schema (410 ms and 431 MB to compile) is refused quickly.
func TestSchemaRegexpBound(t *testing.T) {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	t0 := time.Now()
	_, err := ParseJSONSchema([]byte(patternSchema(0)))
	d := time.Since(t0)
	runtime.ReadMemStats(&m1)
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Contains(t, err.Error(), "instructions")
	assert.Less(t, d, time.Second)
	assert.Less(t, m1.TotalAlloc-m0.TotalAlloc, uint64(100<<20), "allocated")

	for _, tc := range []struct{ name, doc string }{
		{"one pattern", `{"type":"object","properties":{"x":{"pattern":"(a{100}){10}"}}}`},
		{"patternProperties", `{"type":"object","patternProperties":{"\\p{L}{1000}":{}}}`},
		{"nested", `{"type":"object","properties":{"x":{"items":{"pattern":"[a-z]{1,600}"}}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseJSONSchema([]byte(tc.doc))
			require.ErrorIs(t, err, ErrTooLarge)
		})
	}
	t.Run("per document", func(t *testing.T) {
		// Twenty different patterns of about 700 instructions each: each
		// passes, together they are over MaxSchemaRegexpInsts.
		var b strings.Builder
		b.WriteString(`{"type":"object","properties":{`)
		for i := 0; i < 20; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"p%d":{"pattern":"^x%d[a-z]{1,350}$"}`, i, i)
		}
		b.WriteString(`}}`)
		_, err := ParseJSONSchema([]byte(b.String()))
		require.ErrorIs(t, err, ErrTooLarge)
		assert.Contains(t, err.Error(), "together")
	})
}

// The compiled-schema cache is bounded by cost: validating many distinct
// large, legal schemas leaves a bounded heap.
func TestSchemaCacheMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles 150 schemas")
	}
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	for i := 0; i < 150; i++ {
		// 16 KiB of empty properties: about 1,500 subschemas, 1.1 MB
		// compiled; 150 of them held would be 165 MB.
		var b strings.Builder
		b.WriteString(`{"properties":{`)
		for j := 0; b.Len() < 16<<10; j++ {
			if j > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"p%d_%d":{}`, i, j)
		}
		b.WriteString(`},"type":"object"}`)
		c, err := CanonicalJSON([]byte(b.String()))
		require.NoError(t, err)
		td := TaskDef{Name: "t", InputSchema: JSONSchema(c), OutputSchema: "{}"}
		require.NoError(t, td.Validate()) // what the fold runs per definition
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	retained := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	t.Logf("retained %d MB; cache %d entries, cost %d MB", retained>>20, len(schemaCache.m), schemaCache.cost>>20)
	assert.LessOrEqual(t, schemaCache.cost, maxCachedSchemaCost)
	assert.Less(t, retained, int64(maxCachedSchemaCost*3/2), "heap retained after GC")
}

// A validation error's text is bounded for callers.
func TestSchemaErrorText(t *testing.T) {
	s, err := ParseJSONSchema([]byte(diamond(10, "false")))
	require.NoError(t, err)
	verr := s.ValidateJSON([]byte(`{}`))
	require.Error(t, verr)
	require.Greater(t, len(verr.Error()), 16<<10, "the validator's own text")
	got := SchemaErrorText(verr)
	assert.LessOrEqual(t, len(got), MaxSchemaErrorBytes+100)
	assert.Contains(t, got, "more bytes of validation errors left out")
	assert.True(t, strings.HasPrefix(verr.Error(), got[:MaxSchemaErrorBytes-8]))
	short := errors.New("at '/x': want string")
	assert.Equal(t, short.Error(), SchemaErrorText(short))
}

// A number that canonicalization would change is refused; one it keeps
// (in value) passes.
func TestSchemaExactNumbers(t *testing.T) {
	for _, n := range []string{"9007199254740993", "-9007199254740995", "1.00000000000000001", "1e-400", "123456789012345678901234567890", "0.30000000000000001"} {
		doc := fmt.Sprintf(`{"type":"object","properties":{"x":{"const":%s}}}`, n)
		_, err := ParseJSONSchema([]byte(doc))
		require.ErrorIs(t, err, ErrMalformed, n)
		var s JSONSchema
		require.ErrorIs(t, s.UnmarshalJSON([]byte(doc)), ErrMalformed, n)
	}
	for _, n := range []string{"9007199254740992", "0.1", "1.50", "1e3", "-0", "1E+30", "5e-324", "0.30000000000000004", "1e21", "123456789012345680000"} {
		_, err := ParseJSONSchema([]byte(fmt.Sprintf(`{"type":"object","properties":{"x":{"maximum":%s}}}`, n)))
		assert.NoError(t, err, n)
	}
}

// Invalid UTF-8 in a definition would collide in the contract digest
// (JSON turns it into U+FFFD): a JSON Schema definition, and any
// definition in a version 3 event, is refused.
func TestTaskDefUTF8(t *testing.T) {
	in, out := MustJSONSchema(`{"type":"object"}`), MustJSONSchema(`{}`)
	a := TaskDef{Name: "t", Doc: "pay \xff", InputSchema: in, OutputSchema: out}
	b := TaskDef{Name: "t", Doc: "pay \xfe", InputSchema: in, OutputSchema: out}
	c := TaskDef{Name: "t", Doc: "pay \uFFFD", InputSchema: in, OutputSchema: out}
	require.Equal(t, a.Contract(), b.Contract(), "the collision the rule prevents")
	require.ErrorIs(t, a.Validate(), ErrMalformed)
	require.ErrorIs(t, b.Validate(), ErrMalformed)
	require.NoError(t, c.Validate())

	legacy := TaskDef{Name: "t", Input: Schema{Type: "object", Fields: []Field{{Name: "x", Schema: Schema{Type: "array",
		Items: &Schema{Type: "object", Fields: []Field{{Name: "y", Schema: Schema{Type: "string"}, Doc: "\xfe"}}}}}}}, Output: Schema{Type: "any"}}
	require.ErrorIs(t, legacy.CheckUTF8(), ErrMalformed)
	require.NoError(t, legacy.Validate(), "a legacy definition alone is not refused: versions 1 and 2 fold as before")

	fp := strings.Repeat("a", 64)
	ev := func(v uint64, td TaskDef) *Event {
		return &Event{ID: "01J00000000000000000000000", Version: v, Type: TaskDefined, Root: fp, Path: "a", Task: &TaskData{Task: td}}
	}
	require.NoError(t, ev(2, legacy).Validate())
	require.ErrorIs(t, ev(3, legacy).Validate(), ErrMalformed)
	_, err := Encode(ev(3, legacy))
	require.ErrorIs(t, err, ErrMalformed, "the library writes no such event")
}

// Counts multiply from one level of a value to the next; a value whose
// validation would take more than MaxInstanceEvaluations is refused before
// the validator runs. A recursive union (an expression tree) does not
// multiply, and deep values of it validate.
func TestSchemaInstanceEvaluations(t *testing.T) {
	s, err := ParseJSONSchema([]byte(`{"allOf":[{"$ref":"#/$defs/a"},{"$ref":"#/$defs/a","minimum":1}],"$defs":{"a":{"properties":{"x":{"$ref":"#"}}}},"type":"object"}`))
	require.NoError(t, err, "each location counts 5")
	nested := func(key string, d int, leaf string) []byte {
		return []byte(strings.Repeat(`{"`+key+`":`, d) + leaf + strings.Repeat("}", d))
	}
	require.NoError(t, s.ValidateJSON(nested("x", 10, "{}")))
	t0 := time.Now()
	err = s.ValidateJSON(nested("x", 40, "{}")) // 2^40 evaluations
	require.ErrorIs(t, err, ErrTooLarge)
	assert.Less(t, time.Since(t0), 2*time.Second)
	assert.Contains(t, SchemaErrorText(err), "multiply with the value's depth")

	expr, err := ParseJSONSchema([]byte(`{"$defs":{"expr":{"oneOf":[{"$ref":"#/$defs/num"},{"$ref":"#/$defs/bin"}]},` +
		`"num":{"type":"object","properties":{"n":{"type":"number"}},"required":["n"],"additionalProperties":false},` +
		`"bin":{"type":"object","properties":{"op":{"enum":["+","-"]},"l":{"$ref":"#/$defs/expr"},"r":{"$ref":"#/$defs/expr"}},"required":["op","l","r"],"additionalProperties":false}},` +
		`"$ref":"#/$defs/expr","type":"object"}`))
	require.NoError(t, err)
	deep := strings.Repeat(`{"op":"+","r":{"n":1},"l":`, 200) + `{"n":0}` + strings.Repeat("}", 200)
	assert.NoError(t, expr.ValidateJSON([]byte(deep)))
	assert.Error(t, expr.ValidateJSON([]byte(strings.Replace(deep, `{"n":0}`, `{"n":"0"}`, 1))))

	big, err := ParseJSONSchema([]byte(pydanticLike(50, 12)))
	require.NoError(t, err)
	opt := strings.Repeat(`{"f0":"a","f1":`, 30) + `{"f0":"a"}` + strings.Repeat("}", 30)
	assert.NoError(t, big.ValidateJSON([]byte(opt)), "Optional nesting does not multiply")
}
