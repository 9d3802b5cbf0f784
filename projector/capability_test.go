package projector_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// allows reports whether the agent at path effectively holds member of
// module math.
func allows(t *testing.T, f *fold, path, member string) bool {
	t.Helper()
	effs, err := f.reg.Effective(path)
	require.NoError(t, err)
	for _, e := range effs {
		if e.Capability.Name == "math" {
			return e.Allows(member)
		}
	}
	return false
}

// mathGrant returns the agent's grant of module math as it stands
// (Registry.Grant: narrowed by the revocations made after it).
func mathGrant(t testing.TB, reg *projector.Registry, path string) projector.StandingGrant {
	t.Helper()
	g, ok := reg.Grant(path, "module:math")
	require.True(t, ok, "agent %q holds module math", path)
	return g
}

// TestGrantReplace: from schema version 3 a grant on a held capability
// says replace or is refused; version
// 2 grants replace silently, as before. Replace on a capability not held is
// a grant.
func TestGrantReplace(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))
	ok(t, f.grant("a", mathCap([]string{"sqrt"}, nil)))
	v := violation(t, f.grant("a", mathCap(nil, nil)), projector.CodeExists)
	assert.Contains(t, v.Reason, "must say so (replace)")
	assert.Equal(t, []string{"sqrt"}, f.reg.Agents["a"].Capabilities["module:math"].Capability.Include)
	ok(t, f.replace("a", mathCap(nil, nil)))
	assert.Equal(t, []string{"*"}, f.reg.Agents["a"].Capabilities["module:math"].Capability.Include)
	ok(t, f.replace("a", events.Capability{Kind: events.KindFunc, Name: "print"})) // replace holds nothing: a grant
	assert.Contains(t, f.reg.Agents["a"].Capabilities, "fn:print")

	t.Run("version 2", func(t *testing.T) {
		f := newFold(t)
		f.version = 2
		ok(t, f.register())
		ok(t, f.create("a", ""))
		ok(t, f.grant("a", mathCap([]string{"sqrt"}, nil)))
		ok(t, f.grant("a", mathCap(nil, nil)))
		assert.Equal(t, []string{"*"}, f.reg.Agents["a"].Capabilities["module:math"].Capability.Include)
		// Replace did not exist in version 2: such bytes are malformed.
		e := f.event(events.CapabilityGranted, "a")
		e.Granted = &events.GrantedData{Capability: mathCap(nil, nil), Replace: true}
		violation(t, f.publish(f.subject("a"), rawEncode(t, e)), projector.CodeMalformed)
	})
}

// TestRevokeMembers: a member-level revocation excludes the members at the
// agent and every descendant holding the capability, and a later widening
// (re-grant) of an ancestor restores nothing that was revoked below it.
func TestRevokeMembers(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))
	ok(t, f.grant("a", mathCap([]string{"sqrt", "cos", "tan"}, nil)))
	ok(t, f.create("a/b", ""))
	ok(t, f.grant("a/b", mathCap([]string{"sqrt", "cos", "tan"}, nil)))
	ok(t, f.create("a/b/c", ""))
	ok(t, f.grant("a/b/c", mathCap([]string{"sqrt", "cos"}, nil)))
	ok(t, f.create("a/d", "")) // does not hold math: untouched

	before := f.reg.Clone()
	ok(t, f.revokeMembers("a/b", events.KindModule, "math", "sqrt"))
	assert.Equal(t, []string{"_*"}, mathGrant(t, before, "a/b/c").Capability.Exclude, "a clone is not narrowed with the original")
	assert.Empty(t, before.Agents["a/b"].Revocations)
	for _, p := range []string{"a/b", "a/b/c"} {
		g := mathGrant(t, f.reg, p)
		assert.Equal(t, []string{"_*", "sqrt"}, g.Capability.Exclude, p)
		assert.Equal(t, []string{"sqrt"}, g.Revoked, p)
		assert.Equal(t, []string{"_*"}, f.reg.Agents[p].Capabilities["module:math"].Capability.Exclude, "%s: the stored grant is as granted", p)
		assert.False(t, allows(t, f, p, "sqrt"), p)
	}
	assert.Empty(t, f.reg.Agents["a/b/c"].Revocations, "stored once, at the agent it targets")
	assert.Len(t, f.reg.Agents["a/b"].Revocations["module:math"], 1)
	assert.True(t, allows(t, f, "a/b/c", "cos"))
	assert.True(t, allows(t, f, "a", "sqrt"), "the revocation does not reach up")
	assert.Empty(t, f.reg.Agents["a/d"].Capabilities)

	// Widen the ancestor: its grant is replaced by a wider one; what was
	// revoked below it stays revoked.
	ok(t, f.replace("a", mathCap(nil, nil)))
	assert.True(t, allows(t, f, "a", "sqrt"))
	assert.False(t, allows(t, f, "a/b", "sqrt"))
	assert.False(t, allows(t, f, "a/b/c", "sqrt"))
	// An explicit replace of the agent's own grant gives it back there
	// alone: the child keeps its exclusion until it is replaced too.
	ok(t, f.replace("a/b", mathCap([]string{"sqrt", "cos"}, nil)))
	assert.True(t, allows(t, f, "a/b", "sqrt"))
	assert.Empty(t, mathGrant(t, f.reg, "a/b").Revoked)
	assert.False(t, allows(t, f, "a/b/c", "sqrt"))

	t.Run("snapshot", func(t *testing.T) {
		b, err := f.reg.Marshal()
		require.NoError(t, err)
		back, err := projector.Unmarshal(b)
		require.NoError(t, err)
		assert.Equal(t, []string{"sqrt"}, mathGrant(t, back, "a/b/c").Revoked)
		assert.Equal(t, f.reg.Agents["a/b"].Revocations, back.Agents["a/b"].Revocations)
		want, err := f.reg.StateHash()
		require.NoError(t, err)
		got, err := back.StateHash()
		require.NoError(t, err)
		assert.Equal(t, want, got)
	})

	t.Run("refused", func(t *testing.T) {
		violation(t, f.revokeMembers("a/d", events.KindModule, "math", "sqrt"), projector.CodeUnknown)
		e := f.event(events.CapabilityRevoked, "a")
		e.Revoked = &events.RevokedData{Kind: events.KindModule, Name: "math", Members: []string{"s*"}}
		v := violation(t, f.publish(f.subject("a"), rawEncode(t, e)), projector.CodeMalformed)
		assert.Contains(t, v.Reason, `"s*"`)
		many := make([]string, events.MaxPatterns+1)
		for i := range many {
			many[i] = "m" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		}
		violation(t, f.revokeMembers("a", events.KindModule, "math", many...), projector.CodeTooLarge)
		assert.True(t, allows(t, f, "a", "mAa"), "a refused revocation narrows nothing")
		// The limit is on the event alone: a's grant holds two patterns and
		// takes 64 members, which stay out of the grant itself.
		ok(t, f.revokeMembers("a", events.KindModule, "math", many[:events.MaxPatterns]...))
		assert.False(t, allows(t, f, "a", "mAa"))
		assert.Len(t, f.reg.Agents["a"].Capabilities["module:math"].Capability.Exclude, 1)
	})

	t.Run("version 2 carries no members", func(t *testing.T) {
		g := newFold(t)
		g.version = 2
		ok(t, g.register())
		ok(t, g.create("a", ""))
		ok(t, g.grant("a", mathCap(nil, nil)))
		e := g.event(events.CapabilityRevoked, "a")
		e.Revoked = &events.RevokedData{Kind: events.KindModule, Name: "math", Members: []string{"sqrt"}}
		violation(t, g.publish(g.subject("a"), rawEncode(t, e)), projector.CodeMalformed)
	})
}
