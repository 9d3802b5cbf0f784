package events_test

import (
	"bytes"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/agentreg/agentreg/events"
)

// conformanceCases defines every vector file under testdata/conformance.
// A new case (or a new body field) is a few lines: a case name, a sentence
// saying what it shows, and its steps; go test -run TestConformance -update
// writes the file.
func conformanceCases() []convCase {
	root := convRoot()
	next := convRoot()
	next.Primer = "You build specialists, carefully."
	next.Capabilities = next.Capabilities[:2] // a migration only narrows: search is gone
	renamed := next
	renamed.Name = "planner"
	alice, bob := convKey(1), convKey(2)
	io := events.Capability{Kind: events.KindModule, Name: "io"}
	ioWith := func(include ...string) events.Capability { c := io; c.Include = include; return c }
	search := events.Capability{Kind: events.KindFunc, Name: "search", Visibility: events.VisibilityLow}
	solve, parse := convTask("solve"), convTask("parse")
	replaceBytes := func(old, new string) func([]byte) []byte {
		return func(b []byte) []byte { return bytes.Replace(b, []byte(old), []byte(new), 1) }
	}

	// Schema version 3: tasks carrying JSON Schema (canonical text).
	rootV3 := convRoot()
	rootV3.Tasks = []events.TaskDef{{
		Name: "create_specialist", Doc: "Create a specialist agent.",
		InputSchema: events.MustJSONSchema(`{"type": "object", "properties": {
			"name": {"type": "string", "pattern": "^[a-z_]+$"},
			"tasks": {"type": "array", "items": {"type": "string"}}},
			"required": ["name"], "additionalProperties": false}`),
		OutputSchema: events.MustJSONSchema(`{"type": "string"}`),
	}}
	nextV3 := rootV3
	nextV3.Primer = "You build specialists, carefully."
	nextV3.Capabilities = nextV3.Capabilities[:2]
	numbers := events.MustJSONSchema(`{"type": "array", "items": {"type": "number"}}`)
	solveV3 := events.TaskDef{
		Name: "solve", Doc: "Solve an equation.",
		InputSchema: events.MustJSONSchema(`{"type": "object", "properties": {"equation": {"type": "string", "minLength": 1}},
			"required": ["equation"]}`),
		OutputSchema: numbers,
	}
	resolvedV3 := solveV3
	resolvedV3.Doc = "Solve one equation." // another contract
	// enum, a nullable member, a $ref to $defs, bounds.
	findRoots := events.TaskDef{
		Name: "find_roots", Doc: "Find the real roots of a polynomial.",
		InputSchema: events.MustJSONSchema(`{"type": "object",
			"$defs": {"term": {"type": "object", "properties": {
				"coef": {"type": "number"}, "power": {"type": "integer", "minimum": 0}},
				"required": ["coef", "power"], "additionalProperties": false}},
			"properties": {
				"terms": {"type": "array", "items": {"$ref": "#/$defs/term"}, "minItems": 1},
				"method": {"enum": ["newton", "bisection", "closed_form"]},
				"tolerance": {"type": ["number", "null"], "exclusiveMinimum": 0}},
			"required": ["terms", "method"], "additionalProperties": false}`),
		OutputSchema: numbers,
	}
	schemaTask := func(name, input string) events.TaskDef {
		return events.TaskDef{Name: name, InputSchema: events.JSONSchema(input), OutputSchema: events.MustJSONSchema(`{}`)}
	}
	// A schema text that is not in canonical form is refused (malformed);
	// TestEventJSONRoundTrip leaves its event out (its JSON form is
	// canonicalized).
	unsorted := schemaTask("unsorted", `{"type":"object","additionalProperties":false}`)
	remoteRef := schemaTask("remote", `{"$ref":"https://example.com/args.json","type":"object"}`)
	notObject := schemaTask("scalar", `{"type":"string"}`)
	bothForms := schemaTask("both", `{"type":"object"}`)
	bothForms.Input = events.Schema{Type: "object"}
	members := func(m ...string) []string { return m }

	return []convCase{
		{
			name: "v2-every-type",
			doc: "One event of every type at schema version 2, all applied: a creation carrying its grants and tasks " +
				"(an explicit empty exclude stays empty), a glob grant the root covers, a task, a revoke, a retirement and " +
				"a migration carrying the target's definition.",
			steps: []step{
				register(root),
				create("solver", "You solve equations.",
					[]events.Capability{{Kind: events.KindModule, Name: "math", Include: []string{"sqrt", "sin", "cos"}, Exclude: []string{}}, io, search},
					[]events.TaskDef{solve}),
				create("solver/parser", "You parse equations.", []events.Capability{mathCap("sin"), ioWith("read")}, nil),
				grant("solver", events.Capability{Kind: events.KindModule, Name: "io", Include: []string{"read*"}, Visibility: events.VisibilityMedium}),
				defineTask("solver/parser", parse),
				revoke("solver", events.KindFunc, "search"),
				retire("solver/parser", "done"),
				migrate(next.Fingerprint(), &next),
			},
		},
		{
			name:    "v3-every-type",
			version: 3,
			doc: "One event of every type at schema version 3, all applied: a definition whose task carries JSON Schema " +
				"(input_schema, output_schema: canonical JSON text), a creation carrying a JSON Schema task, a grant with " +
				"replace, a member-level revoke, a task, a retirement and a migration carrying the target's definition. " +
				"Each message carrying tasks gives their contract digests.",
			steps: []step{
				register(rootV3),
				create("solver", "You solve equations.", []events.Capability{mathCap("sin", "cos", "sqrt"), io}, []events.TaskDef{solveV3}),
				create("solver/parser", "You parse equations.", []events.Capability{mathCap("sin", "cos"), ioWith("read")}, nil),
				replaceGrant("solver", mathCap("sin", "cos", "sqrt", "pi")),
				revokeMembers("solver", events.KindModule, "math", members("cos")),
				defineTask("solver/parser", findRoots),
				revoke("solver", events.KindModule, "io"),
				retire("solver/parser", "done"),
				migrate(nextV3.Fingerprint(), &nextV3),
			},
		},
		{
			name:    "v3-tasks",
			version: 3,
			doc: "Task definitions in JSON Schema (version 3): a creation carrying one, a task using enum, a nullable " +
				"member, bounds and a $ref to $defs, a redefinition (another contract digest), and refusals (malformed): a " +
				"$ref leaving the document, an input schema whose type is not object, both forms in one definition, a " +
				"creation carrying a refused task (refused whole), and version 2 " +
				"events carrying input_schema (refused when decoded). A version 3 definition in the legacy form is applied " +
				"(its contract is that of its converted schemas).",
			steps: []step{
				register(rootV3),
				create("solver", "You solve equations.", []events.Capability{mathCap("sin", "cos", "sqrt")}, []events.TaskDef{solveV3}),
				defineTask("solver", findRoots),
				defineTask("solver", resolvedV3),
				defineTask("solver", remoteRef),
				defineTask("solver", unsorted, unchecked()),
				defineTask("solver", notObject),
				defineTask("solver", bothForms),
				create("parser", "", nil, []events.TaskDef{solveV3, remoteRef}),
				defineTask("solver", findRoots, v(2), unchecked()),
				create("parser", "", nil, []events.TaskDef{solveV3}, v(2), unchecked()),
				defineTask("solver", convTask("legacy")),
			},
		},
		{
			name:    "v3-capabilities",
			version: 3,
			doc: "Capabilities at version 3. A grant of a capability the agent holds without replace is refused (exists); " +
				"with replace it is the agent's whole new grant; replace on a capability not held is a plain grant; a " +
				"version 2 grant still replaces silently. A member-level revoke on a adds the members to the exclude of a's " +
				"grant and of every descendant's (child a/b, grandchild a/b/c, child a/d); a's later re-grant with replace " +
				"restores them to a alone (a/b and a/b/c keep them excluded), and only a replace of a descendant's own " +
				"grant (a/d) restores them there. Refused: members or replace in a version 2 event (malformed, when " +
				"decoded), a member revoke of a capability the agent does not hold (unknown_agent), a pattern as a member " +
				"(malformed).",
			steps: []step{
				register(root),
				create("a", "", []events.Capability{mathCap("sin", "cos", "sqrt"), io}, nil),
				create("a/b", "", []events.Capability{mathCap("sin", "cos", "sqrt")}, nil),
				create("a/b/c", "", []events.Capability{mathCap("sin", "cos", "sqrt")}, nil),
				create("a/d", "", []events.Capability{mathCap("sin", "cos", "sqrt")}, nil),
				grant("a", mathCap("sin", "cos", "sqrt", "pi")),
				replaceGrant("a", mathCap("sin", "cos", "sqrt", "pi")),
				replaceGrant("a", search),
				grant("a", ioWith("read", "write"), v(2)),
				revokeMembers("a", events.KindModule, "math", members("sqrt", "cos")),
				replaceGrant("a", mathCap("sin", "cos", "sqrt", "pi")),
				replaceGrant("a/d", mathCap("sin", "cos")),
				revokeMembers("a/b", events.KindModule, "math", members("sin"), v(2), unchecked()),
				replaceGrant("a/b", mathCap("sin"), v(2), unchecked()),
				revokeMembers("a/b", events.KindFunc, "search", members("search")),
				revokeMembers("a/b", events.KindModule, "math", members("s*")),
			},
		},
		{
			name:    "v3-revoke-replace",
			version: 3,
			doc: "Member revokes and replacements below them. A member revoke (sqrt, cos) on a takes them from the " +
				"grants of a and of every descendant made before it (a/b, a/b/c, a/d, a/e); a/b's replace naming cos " +
				"is an escalation (a's grant lost it) and one naming sin alone is applied, with nothing revoked. A " +
				"revoke of sin on a/b leaves a/b/c nothing, and a/b/c's replace naming sin is an escalation. a's " +
				"replace restores a alone (a/e keeps cos and sqrt revoked); then a/b's replace naming sin and cos is " +
				"applied, and a/b/c's naming cos. A whole revoke of math on a/d drops its grant and its own member " +
				"revoke (sin); its new grant of math starts with nothing revoked.",
			steps: []step{
				register(root),
				create("a", "", []events.Capability{mathCap("sin", "cos", "sqrt", "pi")}, nil),
				create("a/b", "", []events.Capability{mathCap("sin", "cos", "sqrt")}, nil),
				create("a/b/c", "", []events.Capability{mathCap("sin", "cos", "sqrt")}, nil),
				create("a/d", "", []events.Capability{mathCap("sin", "cos")}, nil),
				create("a/e", "", []events.Capability{mathCap("sin", "cos", "sqrt")}, nil),
				revokeMembers("a", events.KindModule, "math", members("sqrt", "cos")),
				replaceGrant("a/b", mathCap("sin", "cos")),
				replaceGrant("a/b", mathCap("sin")),
				revokeMembers("a/b", events.KindModule, "math", members("sin")),
				replaceGrant("a/b/c", mathCap("sin")),
				replaceGrant("a", mathCap("sin", "cos", "sqrt", "pi")),
				replaceGrant("a/b", mathCap("sin", "cos")),
				replaceGrant("a/b/c", mathCap("cos")),
				revokeMembers("a/d", events.KindModule, "math", members("sin")),
				revoke("a/d", events.KindModule, "math"),
				grant("a/d", mathCap("sin", "pi")),
			},
		},
		{
			name: "v1-every-type",
			doc: "One event of every type at schema version 1 (histories written before version 2), all applied: a " +
				"creation without grants, grants (a glob pattern is not checked in version 1: it is bounded by the " +
				"intersection along the chain), a task, a revoke, a retirement, a migration without a definition.",
			steps: []step{
				register(root, v(1)),
				create("solver", "You solve equations.", nil, nil, v(1)),
				grant("solver", mathCap("sin", "cos"), v(1)),
				create("solver/parser", "You parse.", nil, nil, v(1)),
				grant("solver/parser", mathCap("s*"), v(1)),
				grant("solver", ioWith("a*"), v(1)),
				grant("solver/parser", ioWith("*b"), v(1)),
				defineTask("solver", solve, v(1)),
				revoke("solver", events.KindModule, "io", v(1)),
				retire("solver/parser", "done", v(1)),
				migrate(next.Fingerprint(), nil, v(1)),
			},
		},
		{
			name: "normalization",
			doc: "The canonical form behind fingerprints: a definition written out of order (capabilities unsorted, " +
				"includes unsorted and repeated, an empty include, an explicit empty exclude, no exclude, non-ASCII " +
				"patterns sorted by UTF-8 bytes, tasks unsorted) hashes to the same fingerprint as its canonical form; " +
				"grants are kept normalized.",
			steps: []step{
				register(events.RootDef{
					Name: "normalized", Primer: "Sorted by bytes.",
					Capabilities: []events.Capability{
						{Kind: events.KindType, Name: "Vector", Include: []string{}, Exclude: []string{}},
						{Kind: events.KindModule, Name: "math", Include: []string{"é*", "z", "Z", "a", "z", "*"}},
						{Kind: events.KindFunc, Name: "add", Exclude: []string{"_*", "_*", "-x"}, Visibility: events.VisibilityMedium},
					},
					Tasks: []events.TaskDef{convTask("zeta"), convTask("alpha")},
				}),
				create("agent", "", []events.Capability{
					{Kind: events.KindModule, Name: "math", Include: []string{"z", "a", "Z", "a"}, Exclude: []string{}},
					{Kind: events.KindFunc, Name: "add", Exclude: []string{"_*", "-x"}},
				}, nil),
				grant("agent", events.Capability{Kind: events.KindType, Name: "Vector", Include: []string{"norm", "dot"}}),
			},
		},
		{
			name: "chain",
			doc: "The hash chain: an event whose prev is not the hash of its agent's last applied event is refused " +
				"(chain), so is every event built on a refused one (the cascade), a copy of a refused event is refused " +
				"by its id (replayed) even where it would now pass, a creation of an existing agent is refused, and the " +
				"agent's chain goes on from its last applied event.",
			steps: []step{
				register(root),
				create("solver", "You solve.", []events.Capability{mathCap("sin")}, nil),
				grant("solver", mathCap("cos"), prev(strings.Repeat("00", 32))),
				grant("solver", mathCap("cos", "sin"), prevOf(3)),
				revoke("solver", events.KindModule, "math", prevOf(4)),
				grant("solver", mathCap("cos"), copyOf(3)),
				grant("solver", mathCap("sqrt")),
				create("solver", "Again.", nil, nil, prev("")),
				create("solver", "Again, chained.", nil, nil),
				defineTask("solver", solve, prev("")),
				defineTask("solver", solve),
			},
		},
		{
			name: "escalation",
			doc: "A child never holds more than its parent: a member the parent lacks, a capability the root lacks " +
				"(a creation is refused whole), grants and revokes naming agents or capabilities that do not exist, a " +
				"creation under a missing parent, a capability twice in one creation.",
			steps: []step{
				register(root),
				create("solver", "", []events.Capability{mathCap("sin", "cos")}, nil),
				grant("solver", mathCap("sin", "tan")),
				create("solver/parser", "", []events.Capability{mathCap("sin"), {Kind: events.KindModule, Name: "net"}}, []events.TaskDef{parse}),
				create("solver/parser", "", []events.Capability{mathCap("sqrt")}, nil),
				create("solver/parser", "", []events.Capability{mathCap("sin")}, nil),
				grant("solver/parser", mathCap("cos")),
				grant("solver/parser", events.Capability{Kind: events.KindFunc, Name: "search"}),
				grant("nobody", mathCap("sin")),
				revoke("solver/parser", events.KindModule, "io"),
				create("ghost/child", "", nil, nil),
				create("twice", "", []events.Capability{mathCap("sin"), mathCap("cos")}, nil),
				create("badcap", "", []events.Capability{{Kind: "bogus", Name: "x"}}, nil),
				create("badtasks", "", nil, []events.TaskDef{solve, solve}),
				defineTask("solver", solve),
				defineTask("solver", convTask("solve")),
			},
		},
		{
			name: "glob",
			doc: "Glob grants at schema version 2 are accepted only where every grant from the root down to the " +
				"parent provably covers the pattern; otherwise escalation. The same grant at version 1 is applied and " +
				"bounded by the intersection (effective caps: includes intersected, excludes united; exact false where " +
				"one glob cannot express the intersection).",
			steps: []step{
				register(root),
				create("solver", "", []events.Capability{mathCap("sin", "sqrt"), ioWith("read*")}, nil),
				create("solver/a", "", nil, nil),
				grant("solver/a", mathCap("s*")),
				grant("solver/a", mathCap("s*"), v(1)),
				grant("solver/a", ioWith("read_*")),
				grant("solver/a", ioWith("*")),
				grant("solver/a", ioWith("re*")),
				create("solver/b", "", []events.Capability{{Kind: events.KindModule, Name: "io", Include: []string{"read*"}, Exclude: []string{}}}, nil),
				create("solver/c", "", []events.Capability{{Kind: events.KindModule, Name: "io", Include: []string{"readx", "read?"}, Exclude: []string{"_*"}}}, nil),
				create("solver/d", "", nil, nil),
				grant("solver/d", ioWith("*b"), v(1)),
			},
		},
		{
			name: "retire-and-revoke-cascade",
			doc: "Retiring an agent retires its subtree (each descendant records the retiring sequence); a retired " +
				"agent takes no writes and no children. Revoking a capability removes it from the whole subtree; a " +
				"later grant to the agent restores nothing below it.",
			steps: []step{
				register(root),
				create("a", "", []events.Capability{mathCap("sin", "cos"), io}, nil),
				create("a/b", "", []events.Capability{mathCap("sin"), io}, nil),
				create("a/b/c", "", []events.Capability{mathCap("sin"), io}, nil),
				create("a/x", "", []events.Capability{io}, nil),
				revoke("a", events.KindModule, "math"),
				grant("a", mathCap("sin")),
				retire("a/b", "obsolete"),
				grant("a/b/c", io),
				create("a/b/c/d", "", nil, nil),
				retire("a/b", "again"),
				grant("a/x", ioWith("read")),
			},
		},
		{
			name: "migration",
			doc: "A version 2 migration must carry the target's definition, hashing to the target and keeping the " +
				"root's name, and may not name the root itself; a refused one leaves the root writable. After an " +
				"applied migration the root takes no more writes (migrated), and a second registration is refused.",
			steps: []step{
				register(root),
				create("solver", "", []events.Capability{mathCap("sin")}, nil),
				migrate(next.Fingerprint(), nil),
				migrate(renamed.Fingerprint(), &renamed),
				migrate(strings.Repeat("0f", 32), &next),
				migrate(root.Fingerprint(), &root),
				grant("solver", io),
				migrate(next.Fingerprint(), &next),
				grant("solver", mathCap("cos")),
				migrate(next.Fingerprint(), &next),
				register(root),
			},
		},
		{
			name:  "signatures-policy",
			trust: []nkeys.KeyPair{alice},
			doc: "Under a trust policy of one key: an event signed by it applies; signed by another key, unsigned, or " +
				"with bytes changed after signing it is refused (untrusted_signer, unsigned, bad_signature), and so is one " +
				"whose sig is not the last key, or a signer without a sig or the reverse (bad_signature). Events " +
				"refused by the policy do not take their id: a trusted event with the same id applies.",
			steps: []step{
				register(root, signed(alice)),
				create("solver", "", []events.Capability{mathCap("sin")}, nil, signed(bob)),
				create("solver", "", []events.Capability{mathCap("sin")}, nil),
				create("solver", "", []events.Capability{mathCap("sin")}, nil, signed(alice), tampered(replaceBytes("user:alice", "user:mallo"))),
				create("solver", "", []events.Capability{mathCap("sin")}, nil, signed(alice), copyOf(3)),
				grant("solver", mathCap("sin"), signed(alice), edit(func(e *events.Event) { e.OnBehalfOf = "user:carol" })),
				grant("solver", mathCap("sin"), signed(alice), reencode(func(map[string]any) {})),
				grant("solver", mathCap("sin"), signed(alice), reencode(func(m map[string]any) { delete(m, "sig") })),
				grant("solver", mathCap("sin"), signed(alice), reencode(func(m map[string]any) { delete(m, "signer") })),
			},
		},
		{
			name: "signatures-no-policy",
			doc: "Without a trust policy signatures are only reported: the same kinds of messages as in " +
				"signatures-policy all apply (the message's signature field still says valid, bad or unsigned).",
			steps: []step{
				register(root, signed(alice)),
				create("solver", "", []events.Capability{mathCap("sin")}, nil, signed(bob)),
				create("other", "", nil, nil),
				create("third", "", nil, nil, signed(alice), tampered(replaceBytes("user:alice", "user:mallo"))),
			},
		},
		{
			name: "malformed",
			doc: "Bytes that are not an event, events that do not validate, events on the wrong subject: each is a " +
				"violation with its code, and the fold goes on. Readers skip unknown keys and do not enforce key order.",
			steps: []step{
				register(root),
				raw("", []byte{}),
				raw("", []byte{0xc1}),
				raw("", []byte{0x92, 0x01, 0x02}),
				create("trailing", "", nil, nil, tampered(func(b []byte) []byte { return append(b, 0xc0) })),
				create("future", "", nil, nil, v(events.SchemaVersion+1), unchecked()),
				create("noversion", "", nil, nil, v(0), unchecked()),
				create("unknown", "", nil, nil, unchecked(), edit(func(e *events.Event) { e.Type = "AgentRenamed" })),
				create("noid", "", nil, nil, unchecked(), edit(func(e *events.Event) { e.ID = "" })),
				create("mismatch", "", nil, nil, unchecked(), edit(func(e *events.Event) { e.Type = events.AgentRetired })),
				create("twobodies", "", nil, nil, unchecked(), edit(func(e *events.Event) { e.Retired = &events.RetiredData{} })),
				create("v1caps", "", []events.Capability{mathCap("sin")}, nil, v(1), unchecked()),
				create("badpath", "", nil, nil, unchecked(), edit(func(e *events.Event) { e.Path = "bad path" })),
				create("moved", "", nil, nil, onSubject("elsewhere")),
				create("foreign", "", nil, nil, edit(func(e *events.Event) { e.Root = strings.Repeat("ab", 32) })),
				create("foreign", "", nil, nil, edit(func(e *events.Event) { e.Root = strings.Repeat("ab", 32) }), onSubject("foreign")),
				raw("bad.", []byte{0x80}),
				create("longdoc", "", nil, []events.TaskDef{{Name: "t", Doc: strings.Repeat("d", events.MaxTaskDocBytes+1),
					Input: events.Schema{Type: "object"}, Output: events.Schema{Type: "string"}}}),
				create("reordered", "Keys sorted, one unknown key.", nil, nil, reencode(func(m map[string]any) { m["x-extra"] = []any{"skipped"} })),
				create("reordered/child", "", nil, nil),
			},
		},
		{
			name: "integers",
			doc: "time is a uint64 in its shortest msgpack form (a negative time an int64): small values take one " +
				"byte, and 2^53+1 does not survive a reader that parses numbers as IEEE doubles.",
			steps: []step{
				register(root, edit(func(e *events.Event) { e.Time = 0 })),
				create("small", "", nil, nil, edit(func(e *events.Event) { e.Time = 127 })),
				create("u8", "", nil, nil, edit(func(e *events.Event) { e.Time = 255 })),
				create("u32", "", nil, nil, edit(func(e *events.Event) { e.Time = 1 << 31 })),
				create("beyond-double", "", nil, nil, edit(func(e *events.Event) { e.Time = 1<<53 + 1 })),
				create("max", "", nil, nil, edit(func(e *events.Event) { e.Time = 1<<63 - 1 })),
				create("negative", "", nil, nil, edit(func(e *events.Event) { e.Time = -1 })),
			},
		},
	}
}
