package events

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// ErrTooLarge: an input over one of the size limits below. The runtime
// refuses it before anything is written (agentd answers 413); the fold
// records an event over a limit as a violation (code too_large).
var ErrTooLarge = errors.New("too large")

// Size limits (ARCHITECTURE.md, "Limits"). They are generous for real use
// and keep one event, one recipe and a snapshot small. Names are bounded
// too: a path segment, task or root name by MaxSegmentLen, a path by
// MaxDepth (names.go), a capability or field name by MaxSymbolLen.
const (
	// MaxPrimerBytes bounds an agent's or a root's primer.
	MaxPrimerBytes = 64 << 10
	// MaxTaskDocBytes bounds a task's doc.
	MaxTaskDocBytes = 16 << 10
	// MaxFieldDocBytes bounds the doc of one schema field.
	MaxFieldDocBytes = 4 << 10
	// MaxSymbolLen bounds a capability's or a schema field's name.
	MaxSymbolLen = 128
	// MaxSchemaDepth bounds how deeply one schema nests: the schema itself
	// is level 1, a field's or an array's items one level below.
	MaxSchemaDepth = 16
	// MaxSchemaNodes bounds the schemas of one task (its input, its output,
	// every field's and every items schema in them, together).
	MaxSchemaNodes = 1024
	// MaxJSONSchemaBytes bounds one JSON Schema document (a task's input or
	// output), in its canonical text.
	MaxJSONSchemaBytes = 64 << 10
	// MaxJSONSchemaDepth bounds how deeply the objects and arrays of one
	// JSON Schema document nest (a property's schema is two levels below
	// its object's: "properties", then the name).
	MaxJSONSchemaDepth = 32
	// MaxJSONSchemaValues bounds the objects and arrays of one JSON Schema
	// document. The validator's compile time grows faster than linearly
	// with them (measured: 1,024 empty properties 27 ms, 2,048 69 ms, 4,096
	// 210 ms; a generated schema of 50 models with 12 fields each, 2,354
	// values in 55 KB, 83 ms), and every reader compiles every definition
	// it folds: the bound keeps a writer's 64 KiB of tiny subschemas near
	// the cost of a real schema of that size.
	MaxJSONSchemaValues = 4096
	// MaxEventSchemaValues bounds the objects and arrays of all the JSON
	// Schema documents one event carries together (a root definition's or
	// a creation's tasks, input and output): every reader compiles them when
	// it folds the event, so the bound is what one event can cost each
	// reader (about 0.4 s at most on the machine of BENCHMARKS.md, a few ms
	// for ordinary schemas).
	MaxEventSchemaValues = 8192
	// MaxSchemaEvaluations bounds how many (sub)schemas one JSON Schema
	// document can evaluate at one instance location: the root plus, through
	// the in-place applicators (allOf, anyOf, oneOf, not, if/then/else,
	// dependentSchemas, $ref, $dynamicRef), every schema they reach, counted
	// once per path (JSONSchema.Validate; docs/wire.md). Ordinary schemas
	// count a few per location (an Optional field as pydantic writes it,
	// {"anyOf":[{"$ref":...},{"type":"null"}]}, counts 4 or 5); a ten-way
	// anyOf of $refs to ten-way anyOfs counts 121. The review's chain of
	// two-way anyOfs counts 4 * 2^n: 10,000 lets 11 links pass (8,191, a
	// few ms of validation) and refuses 12; 16 cost 180 ms and 189 MB.
	MaxSchemaEvaluations = 10_000
	// MaxInstanceEvaluations bounds the subschema evaluations one
	// validation of a value may take (JSONSchema.ValidateJSON, agent
	// Task.Call): counts per location multiply from one level of a value to
	// the next ({"allOf":[A,A]} with A applying the root to property "x"
	// evaluates 2^d schemas at depth d, 1.4 s at d = 18), which no bound on
	// the schema alone can refuse without refusing recursive unions.
	// Counted before validating, it is at most about 100 ms of validation;
	// arguments of a thousand values under a schema of a few branches per
	// location take a few thousand.
	MaxInstanceEvaluations = 100_000
	// MaxRegexpInsts bounds the compiled program (Go regexp/syntax
	// instructions, after simplification) of one "pattern" or
	// "patternProperties" regular expression. A counted repeat is expanded:
	// "[a-z]{1,63}" costs 127, a UUID or e-mail pattern a few hundred;
	// "\p{L}{1000}", which made one compilation cost 200 KB, costs 1,002.
	MaxRegexpInsts = 1000
	// MaxSchemaRegexpInsts bounds the regular expressions of one JSON Schema
	// document together (each counted once however often it appears): with
	// MaxRegexpInsts it keeps a 64 KiB document's patterns to a few MB.
	MaxSchemaRegexpInsts = 10_000
	// MaxSchemaErrorBytes bounds the text of a validation error given to a
	// caller (agent Task.Call): the first failures, then a marker.
	MaxSchemaErrorBytes = 4 << 10
	// MaxCapabilities bounds the capabilities of a root and of a creation;
	// an agent holds only capabilities its root holds, so no more.
	MaxCapabilities = 256
	// MaxPatterns bounds the include plus exclude patterns of one
	// capability.
	MaxPatterns = 64
	// MaxRevokedMembers bounds the distinct members revoked, member by
	// member, at one agent from one capability (schema version 3): a
	// revocation past it is too_large. It depends on that agent alone, so
	// a reader folding only a chain decides it alike, and it bounds what
	// every read of a grant below the agent walks.
	MaxRevokedMembers = 1024
	// MaxPatternBytes bounds one include or exclude pattern.
	MaxPatternBytes = 256
	// MaxTasks bounds the tasks a root or an agent holds.
	MaxTasks = 256
	// MaxRootDefBytes bounds a root definition, msgpack-encoded in its
	// canonical form (what RootRegistered carries).
	MaxRootDefBytes = 256 << 10
	// MaxEventBytes bounds an encoded event: the stored message body.
	// Encode refuses to produce more, Decode to read more.
	MaxEventBytes = 512 << 10
)

// tooLarge is the error for input named what, size units long, over limit.
func tooLarge(what string, size, limit int, unit string) error {
	return fmt.Errorf("%w: %s is %d %s, the limit is %d", ErrTooLarge, what, size, unit, limit)
}

// CheckPrimer checks a primer's size; what names its owner in the error.
func CheckPrimer(what, primer string) error {
	if len(primer) > MaxPrimerBytes {
		return tooLarge("the primer of "+what, len(primer), MaxPrimerBytes, "bytes")
	}
	return nil
}

// CheckLimits checks a creation's sizes: the primer, the number of
// capabilities and of tasks. Each capability and task is checked by its own
// Validate.
func (c *CreatedData) CheckLimits(path string) error {
	what := fmt.Sprintf("agent %q", path)
	if err := CheckPrimer(what, c.Primer); err != nil {
		return err
	}
	if len(c.Capabilities) > MaxCapabilities {
		return tooLarge("the capability list of "+what, len(c.Capabilities), MaxCapabilities, "capabilities")
	}
	if len(c.Tasks) > MaxTasks {
		return tooLarge("the task list of "+what, len(c.Tasks), MaxTasks, "tasks")
	}
	return CheckSchemaValues(what, c.Tasks...)
}

// checkLimits checks a root definition's sizes: primer, capability and task
// counts, and the size of its canonical encoding.
func (d RootDef) checkLimits() error {
	what := fmt.Sprintf("root %q", d.Name)
	if err := CheckPrimer(what, d.Primer); err != nil {
		return err
	}
	if len(d.Capabilities) > MaxCapabilities {
		return tooLarge("the capability list of "+what, len(d.Capabilities), MaxCapabilities, "capabilities")
	}
	if len(d.Tasks) > MaxTasks {
		return tooLarge("the task list of "+what, len(d.Tasks), MaxTasks, "tasks")
	}
	return CheckSchemaValues(what, d.Tasks...)
}

// CheckSchemaValues checks that the JSON Schema documents of tasks (one
// event's) hold at most MaxEventSchemaValues objects and arrays together,
// counted on their text before anything compiles them.
func CheckSchemaValues(what string, tasks ...TaskDef) error {
	n := 0
	for _, t := range tasks {
		_, in := jsonShape([]byte(t.InputSchema))
		_, out := jsonShape([]byte(t.OutputSchema))
		n += in + out
	}
	if n > MaxEventSchemaValues {
		return tooLarge("the JSON Schemas of the tasks of "+what+" (objects and arrays together)", n, MaxEventSchemaValues, "objects and arrays")
	}
	return nil
}

// checkEncodedSize checks the canonical encoding of a (validated) root
// definition.
func (d RootDef) checkEncodedSize() error {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(d.Canonical()); err != nil {
		return fmt.Errorf("root %q: encode: %w", d.Name, err)
	}
	if buf.Len() > MaxRootDefBytes {
		return tooLarge(fmt.Sprintf("the definition of root %q (encoded)", d.Name), buf.Len(), MaxRootDefBytes, "bytes")
	}
	return nil
}

// checkPatterns checks a capability's pattern count and lengths.
func (c Capability) checkPatterns() error {
	if n := len(c.Include) + len(c.Exclude); n > MaxPatterns {
		return tooLarge(fmt.Sprintf("the pattern list of capability %s %q (include and exclude)", c.Kind, c.Name), n, MaxPatterns, "patterns")
	}
	for _, p := range c.Include {
		if len(p) > MaxPatternBytes {
			return tooLarge(fmt.Sprintf("include pattern %q... of capability %s %q", p[:32], c.Kind, c.Name), len(p), MaxPatternBytes, "bytes")
		}
	}
	for _, p := range c.Exclude {
		if len(p) > MaxPatternBytes {
			return tooLarge(fmt.Sprintf("exclude pattern %q... of capability %s %q", p[:32], c.Kind, c.Name), len(p), MaxPatternBytes, "bytes")
		}
	}
	return nil
}

// checkEventSize checks an encoded event's size.
func checkEventSize(e *Event, n int) error {
	if n > MaxEventBytes {
		return tooLarge(fmt.Sprintf("encoded event %s (%s at %q)", e.ID, e.Type, e.Path), n, MaxEventBytes, "bytes")
	}
	return nil
}
