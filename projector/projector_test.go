package projector_test

import (
	"encoding/binary"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

func TestRegister(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		f := newFold(t)
		_, err := f.reg.Effective("")
		require.ErrorIs(t, err, events.ErrNotFound, "nothing is effective before registration")

		ok(t, f.register())
		require.NotNil(t, f.reg.Def)
		assert.Equal(t, f.def.Canonical(), *f.reg.Def)
		assert.Equal(t, uint64(1), f.reg.RootSeq)
		assert.Equal(t, "architect", f.reg.RootActor)
		assert.Equal(t, events.Hash(f.records[0].Data), f.reg.RootHash)
		assert.Equal(t, f.reg.RootHash, f.reg.LastHash(""))
		assert.Equal(t, uint64(1), f.reg.SubjectSeq[""])
		assert.Empty(t, f.reg.Violations)

		eff, err := f.reg.Effective("")
		require.NoError(t, err)
		var keys []string
		for _, e := range eff {
			keys = append(keys, e.Capability.Key())
		}
		assert.Equal(t, []string{"fn:print", "module:math"}, keys)
	})

	t.Run("ErrExists", func(t *testing.T) {
		f := newFold(t)
		ok(t, f.register())
		violation(t, f.register(), projector.CodeExists)
	})

	t.Run("ErrMalformed/definition of another root", func(t *testing.T) {
		f := newFold(t)
		e := f.event(events.RootRegistered, "")
		def := f.def
		def.Primer = "Something else."
		e.Registered = &events.RootData{Def: def}
		v := violation(t, f.apply(e), projector.CodeMalformed)
		assert.Contains(t, v.Reason, "hashes to")
		assert.Nil(t, f.reg.Def)
	})

	t.Run("ErrNotFound/before registration", func(t *testing.T) {
		f := newFold(t)
		violation(t, f.create("a", ""), projector.CodeUnknown)
		assert.Empty(t, f.reg.Agents)
		// The registration still applies afterwards.
		ok(t, f.register())
		ok(t, f.create("a", ""))
	})
}

func TestCreateGrantTask(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("math_solver", "You solve equations."))
	ok(t, f.grant("math_solver", events.Capability{
		Kind: events.KindModule, Name: "math", Include: []string{"sin", "cos", "pi", "sin"}, Visibility: events.VisibilityMedium,
	}))
	ok(t, f.task("math_solver", simpleTask("solve")))
	ok(t, f.create("math_solver/equation_parser", "You parse equations."))
	ok(t, f.grant("math_solver/equation_parser", mathCap([]string{"sin"}, nil)))
	ok(t, f.task("math_solver", simpleTask("solve"))) // redefinition replaces

	a, err := f.reg.Agent("math_solver")
	require.NoError(t, err)
	assert.Equal(t, "You solve equations.", a.Primer)
	assert.Equal(t, "architect", a.Creator)
	assert.Equal(t, "corr-2", a.Correlation)
	assert.Equal(t, uint64(2), a.CreatedSeq)
	assert.Equal(t, int64(1718000000000000002), a.CreatedAt)
	assert.False(t, a.Retired)
	assert.Equal(t, "", a.Parent())
	assert.Equal(t, uint64(7), a.LastSeq)
	assert.Equal(t, events.Hash(f.records[6].Data), a.LastHash)

	g, found := a.Capabilities["module:math"]
	require.True(t, found, "capabilities %v", a.Capabilities)
	assert.Equal(t, events.Capability{
		Kind: events.KindModule, Name: "math", Include: []string{"cos", "pi", "sin"}, Exclude: []string{"_*"},
		Visibility: events.VisibilityMedium,
	}, g.Capability, "grants are stored normalized")
	assert.Equal(t, uint64(3), g.Seq)
	assert.Equal(t, "architect", g.Actor)
	require.Len(t, a.Tasks, 1)
	assert.Equal(t, simpleTask("solve"), *a.Tasks["solve"])

	assert.Equal(t, []string{"math_solver", "math_solver/equation_parser"}, f.reg.Paths())
	assert.Equal(t, []string{"math_solver"}, f.reg.Children(""))
	assert.Equal(t, []string{"math_solver/equation_parser"}, f.reg.Children("math_solver"))
	assert.Equal(t, []string{"math_solver", "math_solver/equation_parser"}, f.reg.Descendants(""))
	assert.Equal(t, map[string]uint64{"": 1, "math_solver": 7, "math_solver/equation_parser": 6}, f.reg.SubjectSeq)
	assert.Empty(t, f.reg.Violations)

	t.Run("ErrNotFound/unknown agent", func(t *testing.T) {
		_, err := f.reg.Agent("nobody")
		assert.ErrorIs(t, err, events.ErrNotFound)
		_, err = f.reg.Effective("nobody")
		assert.ErrorIs(t, err, events.ErrNotFound)
	})
}

func TestEscalation(t *testing.T) {
	setup := func(t *testing.T, parent events.Capability) *fold {
		f := newFold(t)
		ok(t, f.register())
		ok(t, f.create("p", ""))
		ok(t, f.grant("p", parent))
		ok(t, f.create("p/c", ""))
		return f
	}
	sinCosPi := mathCap([]string{"sin", "cos", "pi"}, nil)
	notCos := mathCap([]string{"*"}, []string{"cos", "_*"})

	for _, tc := range []struct {
		name   string
		parent events.Capability
		child  events.Capability
		denied string // "" when the grant applies
	}{
		{"subset", sinCosPi, mathCap([]string{"sin", "pi"}, nil), ""},
		{"same", sinCosPi, mathCap([]string{"pi", "cos", "sin"}, nil), ""},
		{"literal member the parent lacks", sinCosPi, mathCap([]string{"sin", "tan", "pi"}, nil), "tan"},
		{"pattern under a literal list", sinCosPi, mathCap([]string{"s*"}, nil), "list the members by name"},
		{"star under a literal list", sinCosPi, mathCap(nil, nil), `"*"`},
		{"pattern under star", notCos, mathCap([]string{"s*"}, nil), ""},
		{"pattern the parent's exclude may match", notCos, mathCap([]string{"c*"}, nil), `"c*"`},
		{"star that excludes what the parent excludes", notCos, mathCap([]string{"*"}, []string{"cos", "_*"}), ""},
		{"literal member the parent excludes", notCos, mathCap([]string{"cos"}, nil), "cos"},
		{"private member", mathCap(nil, nil), mathCap([]string{"_secret"}, nil), "_secret"},
		{"capability the parent lacks", mathCap(nil, nil), events.Capability{Kind: events.KindFunc, Name: "print"}, "print"},
		{"kind matters", mathCap(nil, nil), events.Capability{Kind: events.KindType, Name: "math"}, "math"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t, tc.parent)
			last := f.reg.LastHash("p/c")
			v := f.grant("p/c", tc.child)
			if tc.denied == "" {
				ok(t, v)
				_, held := f.reg.Agents["p/c"].Capabilities[tc.child.Key()]
				assert.True(t, held)
				return
			}
			violation(t, v, projector.CodeEscalation)
			assert.Contains(t, v.Reason, tc.denied)
			assert.Equal(t, string(events.CapabilityGranted), v.Type)
			assert.Equal(t, "p/c", v.Path)
			assert.NotEmpty(t, v.EventID)
			// Not applied: no grant, chain head unchanged.
			assert.Empty(t, f.reg.Agents["p/c"].Capabilities)
			assert.Equal(t, last, f.reg.LastHash("p/c"))
			// Check says the same without applying.
			e := f.event(events.CapabilityGranted, "p/c")
			e.Granted = &events.GrantedData{Capability: tc.child}
			assert.ErrorIs(t, f.reg.Check(e), events.ErrEscalation)
		})
	}

	t.Run("root lacks the capability", func(t *testing.T) {
		f := newFold(t)
		ok(t, f.register())
		ok(t, f.create("a", ""))
		v := violation(t, f.grant("a", events.Capability{Kind: events.KindModule, Name: "net"}), projector.CodeEscalation)
		assert.Contains(t, v.Reason, "the root")
	})

	t.Run("pattern intersects", func(t *testing.T) {
		f := setup(t, mathCap([]string{"*"}, []string{"sinh", "_*"}))
		ok(t, f.grant("p/c", mathCap([]string{"s*"}, []string{"sinh", "_*"})))
		e, found := effective(t, f.reg, "p/c", "module:math")
		require.True(t, found)
		assert.Len(t, e.Chain, 3, "root, parent, child")
		assert.True(t, e.Allows("sin"))
		assert.False(t, e.Allows("tan"), "the child's own pattern does not match tan")
		assert.False(t, e.Allows("sinh"), "the parent excludes sinh")
	})

	t.Run("parent exclusion holds below", func(t *testing.T) {
		f := setup(t, notCos)
		// A grant that does not exclude what the parent excludes cannot be
		// shown to stay within it.
		violation(t, f.grant("p/c", mathCap([]string{"*"}, []string{})), projector.CodeEscalation)
		ok(t, f.grant("p/c", mathCap([]string{"*"}, []string{"cos", "_*"})))
		e, found := effective(t, f.reg, "p/c", "module:math")
		require.True(t, found)
		assert.True(t, e.Allows("sin"))
		assert.True(t, e.Allows("tan"))
		assert.False(t, e.Allows("cos"), "the parent excluded cos")
		assert.False(t, e.Allows("_private"), "the root excludes _* by default")
	})

	t.Run("ErrMalformed/invalid capability", func(t *testing.T) {
		f := setup(t, sinCosPi)
		violation(t, f.grant("p/c", events.Capability{Kind: "weird", Name: "math"}), projector.CodeMalformed)
		violation(t, f.grant("p/c", mathCap([]string{"["}, nil)), projector.CodeMalformed)
	})
}

func TestEffectiveThreeLevels(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))
	ok(t, f.grant("a", mathCap([]string{"sin", "cos", "tan", "pi"}, nil)))
	ok(t, f.grant("a", events.Capability{Kind: events.KindFunc, Name: "print"}))
	ok(t, f.create("a/b", ""))
	ok(t, f.grant("a/b", mathCap([]string{"sin", "cos", "pi"}, nil)))
	ok(t, f.create("a/b/c", ""))
	violation(t, f.grant("a/b/c", mathCap([]string{"*"}, []string{"cos"})), projector.CodeEscalation)
	ok(t, f.grant("a/b/c", mathCap([]string{"sin", "pi"}, nil)))
	violation(t, f.grant("a/b/c", mathCap([]string{"tan"}, nil)), projector.CodeEscalation)
	violation(t, f.grant("a/b/c", events.Capability{Kind: events.KindFunc, Name: "print"}), projector.CodeEscalation)

	for _, tc := range []struct {
		path  string
		allow map[string]bool
		chain int
	}{
		{"", map[string]bool{"sin": true, "cos": true, "tan": true, "pi": true, "exp": true, "_x": false}, 1},
		{"a", map[string]bool{"sin": true, "cos": true, "tan": true, "pi": true, "exp": false}, 2},
		{"a/b", map[string]bool{"sin": true, "cos": true, "tan": false, "pi": true, "exp": false}, 3},
		{"a/b/c", map[string]bool{"sin": true, "cos": false, "tan": false, "pi": true, "exp": false}, 4},
	} {
		t.Run("path="+tc.path, func(t *testing.T) {
			e, found := effective(t, f.reg, tc.path, "module:math")
			require.True(t, found)
			assert.Len(t, e.Chain, tc.chain)
			for member, want := range tc.allow {
				assert.Equal(t, want, e.Allows(member), "member %s", member)
			}
		})
	}

	t.Run("only held capabilities", func(t *testing.T) {
		_, found := effective(t, f.reg, "a", "fn:print")
		assert.True(t, found)
		_, found = effective(t, f.reg, "a/b", "fn:print")
		assert.False(t, found)
	})

	t.Run("EffectiveUnder another root", func(t *testing.T) {
		// Under a root whose math holds only sin, sin is all that is left.
		eff, err := f.reg.EffectiveUnder([]events.Capability{mathCap([]string{"sin"}, nil)}, "a/b/c")
		require.NoError(t, err)
		require.Len(t, eff, 1)
		assert.True(t, eff[0].Allows("sin"))
		assert.False(t, eff[0].Allows("pi"))
		// Under a root without math, nothing.
		eff, err = f.reg.EffectiveUnder(nil, "a/b/c")
		require.NoError(t, err)
		assert.Empty(t, eff)
	})
}

func TestRevocationCascades(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	for _, p := range []string{"a", "a/b", "a/b/c", "a/x"} {
		ok(t, f.create(p, ""))
		ok(t, f.grant(p, mathCap(nil, nil)))
	}
	violation(t, f.grant("a/b/c", events.Capability{Kind: events.KindFunc, Name: "print"}), projector.CodeEscalation)
	ok(t, f.grant("a", events.Capability{Kind: events.KindFunc, Name: "print"}))
	ok(t, f.grant("a/b", events.Capability{Kind: events.KindFunc, Name: "print"}))
	ok(t, f.grant("a/b/c", events.Capability{Kind: events.KindFunc, Name: "print"}))

	ok(t, f.revoke("a/b", events.KindModule, "math"))

	held := func(p, key string) bool { _, ok := f.reg.Agents[p].Capabilities[key]; return ok }
	assert.True(t, held("a", "module:math"))
	assert.False(t, held("a/b", "module:math"))
	assert.False(t, held("a/b/c", "module:math"), "revocation reaches descendants")
	assert.True(t, held("a/x", "module:math"), "siblings keep theirs")
	assert.True(t, held("a/b/c", "fn:print"), "other capabilities stay")
	_, found := effective(t, f.reg, "a/b/c", "module:math")
	assert.False(t, found)

	// Granting again to a/b does not bring back a/b/c's grant.
	ok(t, f.grant("a/b", mathCap(nil, nil)))
	assert.False(t, held("a/b/c", "module:math"))

	t.Run("ErrNotFound/not held", func(t *testing.T) {
		violation(t, f.revoke("a/b/c", events.KindModule, "math"), projector.CodeUnknown)
		violation(t, f.revoke("nobody", events.KindModule, "math"), projector.CodeUnknown)
	})
}

func TestRetirementCascades(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	for _, p := range []string{"a", "a/b", "a/b/c", "a/x"} {
		ok(t, f.create(p, ""))
	}
	ok(t, f.retire("a/b/c", "first"))
	retiredC := f.seq
	ok(t, f.retire("a/b", "done"))
	retiredB := f.seq

	for _, tc := range []struct {
		path    string
		retired bool
		seq     uint64
	}{
		{"a", false, 0},
		{"a/b", true, retiredB},
		{"a/b/c", true, retiredC}, // retired first; the cascade keeps the first retirement
		{"a/x", false, 0},
	} {
		a := f.reg.Agents[tc.path]
		assert.Equal(t, tc.retired, a.Retired, tc.path)
		assert.Equal(t, tc.seq, a.RetiredSeq, tc.path)
		if tc.retired {
			assert.Equal(t, "architect", a.RetiredBy, tc.path)
		}
	}

	for name, v := range map[string]*projector.Violation{
		"task on retired":          f.task("a/b/c", simpleTask("t")),
		"grant on retired":         f.grant("a/b", mathCap(nil, nil)),
		"create under retired":     f.create("a/b/d", ""),
		"retire again":             f.retire("a/b", "again"),
		"revoke on retired":        f.revoke("a/b", events.KindModule, "math"),
		"create retired path anew": f.create("a/b", ""),
	} {
		want := projector.CodeRetired
		if name == "create retired path anew" {
			want = projector.CodeExists
		}
		t.Run(name, func(t *testing.T) { violation(t, v, want) })
	}
	ok(t, f.task("a/x", simpleTask("t")))
	ok(t, f.create("a/y", ""))
}

func TestStructureViolations(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))

	for _, tc := range []struct {
		name string
		do   func() *projector.Violation
		code string
	}{
		{"unknown parent", func() *projector.Violation { return f.create("x/y", "") }, projector.CodeUnknown},
		{"duplicate path", func() *projector.Violation { return f.create("a", "") }, projector.CodeExists},
		{"task on unknown", func() *projector.Violation { return f.task("nobody", simpleTask("t")) }, projector.CodeUnknown},
		{"grant to unknown", func() *projector.Violation { return f.grant("nobody", mathCap(nil, nil)) }, projector.CodeUnknown},
		{"retire unknown", func() *projector.Violation { return f.retire("nobody", "") }, projector.CodeUnknown},
		{"invalid task", func() *projector.Violation {
			return f.task("a", events.TaskDef{Name: "t", Input: events.Schema{Type: "string"}})
		}, projector.CodeMalformed},
		{"migrate to itself", func() *projector.Violation { return f.migrate(f.root) }, projector.CodeMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.reg.Agents)
			violation(t, tc.do(), tc.code)
			assert.Len(t, f.reg.Agents, before)
		})
	}
	assert.Empty(t, f.reg.Agents["a"].Tasks)
}

func TestMigration(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))
	next, to := f.nextRelease("release 2")
	// Version 2 migrations carry the target's definition: none, one that
	// does not hash to the target, or one of another name is refused and
	// leaves the root writable (a bogus migration is no dead end).
	violation(t, f.migrate(strings.Repeat("0f", 32)), projector.CodeMalformed)
	violation(t, f.migrateTo(next, strings.Repeat("0f", 32)), projector.CodeMalformed)
	renamed := next
	renamed.Name = "other"
	violation(t, f.migrateTo(renamed, renamed.Fingerprint()), projector.CodeMalformed)
	ok(t, f.create("b0", ""))
	ok(t, f.migrateTo(next, to))
	assert.Equal(t, to, f.reg.MigratedTo)
	assert.Equal(t, f.seq, f.reg.MigratedSeq)
	violation(t, f.create("b", ""), projector.CodeMigrated)
	violation(t, f.task("a", simpleTask("t")), projector.CodeMigrated)
	violation(t, f.migrate(strings.Repeat("1e", 32)), projector.CodeMigrated)
	violation(t, f.register(), projector.CodeExists)
	// What was there stays readable.
	_, found := f.reg.Agents["a"]
	assert.True(t, found)
}

func TestBadRecords(t *testing.T) {
	otherDef := rootDef()
	otherDef.Name = "other"
	otherRoot := otherDef.Fingerprint()

	for _, tc := range []struct {
		name string
		// record returns the subject and bytes to publish, given a fold with
		// a registered root and an agent "a".
		record func(f *fold) (string, []byte)
		code   string
		// hasEvent: the bytes decode, so the violation names the event.
		hasEvent bool
	}{
		{"undecodable bytes", func(f *fold) (string, []byte) {
			return f.subject("a"), []byte("definitely not msgpack")
		}, projector.CodeMalformed, false},
		{"empty message", func(f *fold) (string, []byte) {
			return f.subject("a"), nil
		}, projector.CodeMalformed, false},
		{"truncated event", func(f *fold) (string, []byte) {
			e := f.event(events.TaskDefined, "a")
			e.Task = &events.TaskData{Task: simpleTask("t")}
			b := f.encode(e)
			return f.subject("a"), b[:len(b)-3]
		}, projector.CodeMalformed, false},
		{"future schema version", func(f *fold) (string, []byte) {
			e := f.event(events.TaskDefined, "a")
			e.Task = &events.TaskData{Task: simpleTask("t")}
			e.Version = events.SchemaVersion + 1
			return f.subject("a"), rawEncode(t, e)
		}, projector.CodeFutureVersion, false},
		{"unknown type", func(f *fold) (string, []byte) {
			e := f.event("AgentCloned", "a")
			e.Task = &events.TaskData{Task: simpleTask("t")}
			return f.subject("a"), rawEncode(t, e)
		}, projector.CodeUnknownType, false},
		{"event of another agent", func(f *fold) (string, []byte) {
			e := f.event(events.TaskDefined, "a")
			e.Task = &events.TaskData{Task: simpleTask("t")}
			return f.subject("b"), f.encode(e)
		}, projector.CodeWrongSubject, true},
		{"event of the root on an agent's subject", func(f *fold) (string, []byte) {
			e := f.event(events.RootMigrated, "")
			e.Migration = &events.MigratedData{To: otherRoot}
			return f.subject("a"), f.encode(e)
		}, projector.CodeWrongSubject, true},
		{"event of another root", func(f *fold) (string, []byte) {
			e := f.event(events.TaskDefined, "a")
			e.Root = otherRoot
			e.Task = &events.TaskData{Task: simpleTask("t")}
			return f.subject("a"), f.encode(e)
		}, projector.CodeWrongSubject, true},
		{"subject of another root", func(f *fold) (string, []byte) {
			e := f.event(events.TaskDefined, "a")
			e.Task = &events.TaskData{Task: simpleTask("t")}
			return events.Subject(prefix, otherRoot, "a"), f.encode(e)
		}, projector.CodeWrongSubject, false},
		{"subject with a wildcard", func(f *fold) (string, []byte) {
			return f.subject("a") + ".*", []byte{0xc0}
		}, projector.CodeInvalidName, false},
		{"subject with an empty token", func(f *fold) (string, []byte) {
			return f.subject("a") + "..b", []byte{0xc0}
		}, projector.CodeInvalidName, false},
		{"subject without dots", func(f *fold) (string, []byte) {
			return "agentreg", []byte{0xc0}
		}, projector.CodeInvalidName, false},
		{"broken chain", func(f *fold) (string, []byte) {
			e := f.event(events.TaskDefined, "a")
			e.Prev = strings.Repeat("00", 32)
			e.Task = &events.TaskData{Task: simpleTask("t")}
			return f.subject("a"), f.encode(e)
		}, projector.CodeChain, true},
		{"chain restarted", func(f *fold) (string, []byte) {
			e := f.event(events.TaskDefined, "a")
			e.Prev = ""
			e.Task = &events.TaskData{Task: simpleTask("t")}
			return f.subject("a"), f.encode(e)
		}, projector.CodeChain, true},
		{"replayed event", func(f *fold) (string, []byte) {
			// The creation of a, published again at a later sequence: the
			// agent exists (a copy of an applied event never passes).
			return f.records[1].Subject, f.records[1].Data
		}, projector.CodeChain, true},
		{"first event of a new agent with a Prev", func(f *fold) (string, []byte) {
			e := f.event(events.AgentCreated, "b")
			e.Prev = f.reg.LastHash("a")
			e.Created = &events.CreatedData{}
			return f.subject("b"), f.encode(e)
		}, projector.CodeChain, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFold(t)
			ok(t, f.register())
			ok(t, f.create("a", ""))
			before := stateHashWithout(t, f.reg)

			subject, data := tc.record(f)
			v := violation(t, f.publish(subject, data), tc.code)
			if tc.hasEvent {
				assert.NotEmpty(t, v.EventID)
				assert.NotEmpty(t, v.Type)
			} else {
				assert.Empty(t, v.EventID)
			}
			assert.Equal(t, before, stateHashWithout(t, f.reg), "a violation changes nothing but the bookkeeping")

			// Later events still apply.
			ok(t, f.task("a", simpleTask("after")))
			ok(t, f.create("a/b", ""))
			assert.Contains(t, f.reg.Agents["a"].Tasks, "after")
			assert.Len(t, f.reg.Violations, 1)
		})
	}
}

// stateHashWithout is the state hash with the bookkeeping that every
// record changes (sequence, count, subject sequences, violations) zeroed.
func stateHashWithout(t *testing.T, reg *projector.Registry) string {
	t.Helper()
	c := reg.Clone()
	c.Seq, c.Count, c.Violations, c.SubjectSeq = 0, 0, nil, map[string]uint64{}
	return stateHash(t, projector.WithoutIDs(c))
}

// history folds a fixed history and returns its fold.
func history(t *testing.T, primer string) *fold {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("math_solver", primer))
	ok(t, f.grant("math_solver", mathCap([]string{"sin", "cos", "pi"}, nil)))
	ok(t, f.task("math_solver", simpleTask("solve")))
	ok(t, f.create("math_solver/parser", ""))
	ok(t, f.create("math_solver/checker", ""))
	ok(t, f.grant("math_solver/parser", mathCap([]string{"sin"}, nil)))
	ok(t, f.grant("math_solver", events.Capability{Kind: events.KindFunc, Name: "print"}))
	ok(t, f.grant("math_solver/checker", events.Capability{Kind: events.KindFunc, Name: "print"}))
	violation(t, f.grant("math_solver/parser", mathCap([]string{"tan"}, nil)), projector.CodeEscalation)
	f.publish(f.subject("math_solver"), []byte("junk"))
	ok(t, f.create("printer", ""))
	ok(t, f.grant("printer", events.Capability{Kind: events.KindFunc, Name: "print"}))
	ok(t, f.retire("math_solver/parser", "merged"))
	ok(t, f.revoke("math_solver", events.KindModule, "math"))
	return f
}

func TestStateHash(t *testing.T) {
	a := history(t, "You solve equations.")
	b := newFold(t)
	for _, rec := range a.records {
		b.reg.Apply(rec)
	}
	ha := stateHash(t, a.reg)
	assert.Equal(t, ha, stateHash(t, b.reg), "same records, same hash")
	assert.Equal(t, ha, stateHash(t, a.reg), "hashing does not change the registry")
	assert.Len(t, a.reg.Violations, 2)

	// Marshal is byte-for-byte stable across calls (map order is random).
	m1, err := a.reg.Marshal()
	require.NoError(t, err)
	for range 20 {
		m2, err := a.reg.Marshal()
		require.NoError(t, err)
		require.Equal(t, m1, m2)
	}

	c := history(t, "You solve equations!")
	assert.NotEqual(t, ha, stateHash(t, c.reg), "one event differs, the hash differs")

	// Two folds that differ only in a record's sequence differ too.
	d := newFold(t)
	for _, rec := range a.records {
		rec.Seq += 100
		d.reg.Apply(rec)
	}
	assert.NotEqual(t, ha, stateHash(t, d.reg))
}

func TestMarshalRoundTrip(t *testing.T) {
	f := history(t, "You solve equations.")
	b, err := f.reg.Marshal()
	require.NoError(t, err)
	got, err := projector.Unmarshal(b)
	require.NoError(t, err)
	assert.Equal(t, stateHash(t, f.reg), stateHash(t, got))
	assert.Equal(t, projector.WithoutIndex(f.reg), projector.WithoutIndex(got))
	for _, p := range append([]string{""}, f.reg.Paths()...) {
		assert.Equal(t, f.reg.Children(p), got.Children(p), p)
		assert.Equal(t, f.reg.Descendants(p), got.Descendants(p), p)
	}

	for _, p := range append([]string{""}, f.reg.Paths()...) {
		want, err := f.reg.Effective(p)
		require.NoError(t, err)
		have, err := got.Effective(p)
		require.NoError(t, err)
		assert.Equal(t, want, have, p)
	}

	t.Run("snapshot and tail equals full replay", func(t *testing.T) {
		// The restored registry keeps folding like the original.
		g := &fold{t: t, def: f.def, root: f.root, reg: got, seq: f.seq}
		for _, ff := range []*fold{f, g} {
			ok(t, ff.create("math_solver/solver2", ""))
			violation(t, ff.create("math_solver/parser/sub", ""), projector.CodeRetired)
			ok(t, ff.grant("printer", mathCap(nil, nil)))
		}
		assert.Equal(t, stateHash(t, f.reg), stateHash(t, g.reg))
	})

	t.Run("empty registry", func(t *testing.T) {
		reg := projector.New(f.root)
		b, err := reg.Marshal()
		require.NoError(t, err)
		got, err := projector.Unmarshal(b)
		require.NoError(t, err)
		assert.Equal(t, reg, got)
	})

	t.Run("Clone copies what Apply changes", func(t *testing.T) {
		c := f.reg.Clone()
		c.Agents["printer"].Capabilities["type:Matrix"] = &projector.Grant{}
		c.Agents["math_solver"].Tasks["t"] = &events.TaskDef{}
		c.Agents["printer"].Primer = "changed"
		c.SubjectSeq["x"] = 1
		assert.NotContains(t, f.reg.Agents["printer"].Capabilities, "type:Matrix")
		assert.NotContains(t, f.reg.Agents["math_solver"].Tasks, "t")
		assert.NotContains(t, f.reg.SubjectSeq, "x")
		assert.Equal(t, "", f.reg.Agents["printer"].Primer)
	})
}

func TestUnmarshalErrors(t *testing.T) {
	f := history(t, "You solve equations.")
	valid, err := f.reg.Marshal()
	require.NoError(t, err)

	badRoot, err := projector.New("not-a-fingerprint").Marshal()
	require.NoError(t, err)

	c := f.reg.Clone()
	c.Agents["printer"].Path = "bad path"
	badPath, err := c.Marshal()
	require.NoError(t, err)

	c = f.reg.Clone()
	dup := *c.Agents["printer"]
	dup.Path = "math_solver"
	c.Agents["zzz"] = &dup
	repeated, err := c.Marshal()
	require.NoError(t, err)

	// A registry whose violations array claims 2^20 entries.
	bomb := []byte{0x81, 0xaa}
	bomb = append(bomb, "violations"...)
	bomb = append(bomb, 0xdd)
	bomb = binary.BigEndian.AppendUint32(bomb, 1<<20)

	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"garbage", []byte("garbage")},
		{"never used code", []byte{0xc1}},
		{"msgpack nil", []byte{0xc0}},
		{"truncated", valid[:len(valid)/2]},
		{"trailing bytes", append(slices.Clone(valid), 0)},
		{"invalid root", badRoot},
		{"invalid agent path", badPath},
		{"repeated agent", repeated},
		{"huge declared array", bomb},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			reg, err := projector.Unmarshal(tc.b)
			runtime.ReadMemStats(&after)
			require.ErrorIs(t, err, events.ErrMalformed)
			assert.Nil(t, reg)
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20), "bytes allocated")
		})
	}

	t.Run("every prefix", func(t *testing.T) {
		for n := range len(valid) {
			_, err := projector.Unmarshal(valid[:n])
			require.ErrorIs(t, err, events.ErrMalformed, "prefix of %d bytes", n)
		}
	})
}

// TestInternedPatternsDoNotCollide: pattern sets whose joined forms are
// equal stay distinct (a NUL is a valid pattern character).
func TestInternedPatternsDoNotCollide(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", "A"))
	ok(t, f.grant("a", mathCap([]string{"cos", "sin"}, nil)))
	ok(t, f.create("b", "B"))
	ok(t, f.grant("b", mathCap([]string{"cos\x00sin"}, nil)))
	require.Equal(t, []string{"cos", "sin"}, f.reg.Agents["a"].Capabilities["module:math"].Capability.Include)
	require.Equal(t, []string{"cos\x00sin"}, f.reg.Agents["b"].Capabilities["module:math"].Capability.Include)
}
