package projector_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// chainFold folds only the records of the subjects of path's chain (the
// root, every ancestor and the agent itself), as a cold reader does
// (agent.readChain).
func chainFold(f *fold, path string) *projector.Registry {
	want := map[string]bool{f.subject(""): true}
	for _, p := range append(events.Ancestors(path), path) {
		want[f.subject(p)] = true
	}
	reg := projector.New(f.root)
	for _, r := range f.records {
		if want[r.Subject] {
			reg.Apply(r)
		}
	}
	return reg
}

// chainMembers are the member names the chain tests ask about.
var chainMembers = []string{"sqrt", "cos", "tan", "sin", "pi", "s1", "junk0", "_seed"}

// allowed returns, for each capability the agent at path holds, the members
// among chainMembers its chain allows; nil if the agent does not exist.
func allowed(t testing.TB, reg *projector.Registry, path string) map[string][]string {
	t.Helper()
	if reg.Agents[path] == nil {
		return nil
	}
	effs, err := reg.Effective(path)
	require.NoError(t, err)
	out := map[string][]string{}
	for _, e := range effs {
		out[e.Capability.Key()] = e.Members(chainMembers)
	}
	return out
}

// requireChainsAgree checks, for every agent of the full fold, that a fold
// of only its chain's subjects holds the same agents along the chain (own
// grants, revoked members, retirement) and allows the same members.
func requireChainsAgree(t testing.TB, f *fold, context string) {
	t.Helper()
	for _, p := range f.reg.Paths() {
		chain := chainFold(f, p)
		for _, q := range append(events.Ancestors(p), p) {
			require.Equal(t, f.reg.Agents[q], chain.Agents[q], "%s: agent %q in the fold of %q's chain", context, q, p)
		}
		require.Equal(t, allowed(t, f.reg, p), allowed(t, chain, p), "%s: members allowed to %q", context, p)
	}
}

// bigExclude returns an exclude list that, with one include, fills a grant
// to events.MaxPatterns patterns.
func bigExclude() []string {
	ex := []string{"_*"}
	for i := 0; len(ex) < events.MaxPatterns-1; i++ {
		ex = append(ex, fmt.Sprintf("junk%d", i))
	}
	return ex
}

// TestRevokeMembersChainOnly: whether a member revocation applies depends on
// the agent and its chain only. A descendant whose grant is at the pattern
// limit neither blocks nor weakens it (security review: a/x's grant of one
// include and 63 excludes made RevokeMembers(a, sqrt) too_large in the full
// fold, while a fold of a/b's chain, which never sees a/x, applied it), and
// a fold of any agent's chain agrees with the full fold, whatever the order
// of the events.
func TestRevokeMembersChainOnly(t *testing.T) {
	type step struct {
		name string
		do   func(f *fold) *projector.Violation
	}
	var (
		createA  = step{"create a", func(f *fold) *projector.Violation { return f.create("a", "") }}
		grantA   = step{"grant a", func(f *fold) *projector.Violation { return f.grant("a", mathCap([]string{"sqrt", "cos"}, nil)) }}
		createB  = step{"create a/b", func(f *fold) *projector.Violation { return f.create("a/b", "") }}
		grantB   = step{"grant a/b", func(f *fold) *projector.Violation { return f.grant("a/b", mathCap([]string{"sqrt", "cos"}, nil)) }}
		createX  = step{"create a/x", func(f *fold) *projector.Violation { return f.create("a/x", "") }}
		grantX   = step{"grant a/x full", func(f *fold) *projector.Violation { return f.grant("a/x", mathCap([]string{"cos"}, bigExclude())) }}
		grantXs  = step{"grant a/x full with sqrt", func(f *fold) *projector.Violation { return f.grant("a/x", mathCap([]string{"sqrt"}, bigExclude())) }}
		createXY = step{"create a/x/y", func(f *fold) *projector.Violation { return f.create("a/x/y", "") }}
		grantXY  = step{"grant a/x/y", func(f *fold) *projector.Violation { return f.grant("a/x/y", mathCap([]string{"cos"}, bigExclude())) }}
		revoke   = step{"revoke members(a, sqrt)", func(f *fold) *projector.Violation {
			return f.revokeMembers("a", events.KindModule, "math", "sqrt")
		}}
	)
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"review repro", []step{createA, grantA, createB, grantB, createX, grantX, revoke}},
		{"full descendant first", []step{createA, grantA, createX, grantX, createB, grantB, revoke}},
		{"full descendant holds sqrt", []step{createA, grantA, createX, grantXs, createB, grantB, revoke}},
		{"two full levels", []step{createA, grantA, createX, grantX, createXY, grantXY, createB, grantB, revoke}},
		{"revoke before the descendant", []step{createA, grantA, createB, grantB, revoke, createX, grantX}},
		{"revoke between", []step{createA, grantA, createX, createB, grantB, revoke, grantX}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFold(t)
			ok(t, f.register())
			for _, s := range tc.steps {
				if v := s.do(f); v != nil {
					t.Fatalf("%s: not applied: %s: %s", s.name, v.Code, v.Reason)
				}
			}
			assert.False(t, allows(t, f, "a", "sqrt"))
			assert.False(t, allows(t, f, "a/b", "sqrt"))
			assert.True(t, allows(t, f, "a/b", "cos"))
			for _, p := range []string{"a/x", "a/x/y"} {
				if f.reg.Agents[p] != nil {
					assert.False(t, allows(t, f, p, "sqrt"), p)
				}
			}
			requireChainsAgree(t, f, tc.name)
			requireSnapshotLoads(t, f.reg)
		})
	}

	t.Run("a descendant past the limit", func(t *testing.T) {
		f := newFold(t)
		ok(t, f.register())
		for _, s := range []step{createA, grantA, createX, grantXs, revoke} {
			ok(t, s.do(f))
		}
		g := f.reg.Agents["a/x"].Capabilities["module:math"]
		assert.Equal(t, []string{"sqrt"}, g.Revoked)
		assert.Len(t, g.Capability.Include, 1)
		assert.Len(t, g.Capability.Exclude, events.MaxPatterns, "63 excludes and sqrt: past the limit of a grant event")
		assert.ErrorIs(t, g.Capability.Validate(), events.ErrTooLarge)
		// Widening a restores nothing below it.
		ok(t, f.replace("a", mathCap(nil, nil)))
		assert.True(t, allows(t, f, "a", "sqrt"))
		assert.False(t, allows(t, f, "a/x", "sqrt"))
		requireChainsAgree(t, f, "widened")
		requireSnapshotLoads(t, f.reg)
	})
}

// TestRevokeMembersOwnLimit: the agent's own grant is held to the pattern
// limit; a revocation adding nothing to it is applied even when an
// ancestor's revocations took it past the limit, and still narrows the
// grants below.
func TestRevokeMembersOwnLimit(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))
	ok(t, f.grant("a", mathCap(nil, nil)))
	ok(t, f.create("a/b", ""))
	ok(t, f.grant("a/b", mathCap([]string{"sqrt", "cos", "tan"}, bigExclude()[:events.MaxPatterns-3])))
	ok(t, f.create("a/b/c", ""))
	ok(t, f.grant("a/b/c", mathCap([]string{"sqrt", "cos", "tan"}, nil)))

	// a/b's own grant: 64 patterns. A new member is refused there.
	v := violation(t, f.revokeMembers("a/b", events.KindModule, "math", "sqrt"), projector.CodeTooLarge)
	assert.Contains(t, v.Reason, "replace the grant with a narrower one")
	assert.True(t, allows(t, f, "a/b/c", "sqrt"), "a refused revocation narrows nothing")

	// From a, whose grant is small, it applies to a/b past the limit.
	ok(t, f.revokeMembers("a", events.KindModule, "math", "sqrt"))
	assert.Len(t, f.reg.Agents["a/b"].Capabilities["module:math"].Capability.Exclude, events.MaxPatterns-2)
	// a's replacement restores nothing below; a/b/c's grant is replaced,
	// without its revoked members.
	ok(t, f.replace("a", mathCap(nil, nil)))
	assert.False(t, allows(t, f, "a/b", "sqrt"))
	ok(t, f.replace("a/b/c", mathCap([]string{"cos", "tan"}, nil)))
	assert.Empty(t, f.reg.Agents["a/b/c"].Capabilities["module:math"].Revoked)
	// a/b revokes sqrt again: nothing new for its own grant (65 patterns
	// with sqrt), so it applies, and a/b/c's replaced grant takes it.
	ok(t, f.revokeMembers("a/b", events.KindModule, "math", "sqrt"))
	assert.Equal(t, []string{"sqrt"}, f.reg.Agents["a/b/c"].Capabilities["module:math"].Revoked)
	// Anything new is refused at a/b.
	violation(t, f.revokeMembers("a/b", events.KindModule, "math", "sqrt", "cos"), projector.CodeTooLarge)
	assert.True(t, allows(t, f, "a/b/c", "cos"))
	requireChainsAgree(t, f, "own limit")
	requireSnapshotLoads(t, f.reg)
}

// requireSnapshotLoads checks that the registry survives Marshal and
// Unmarshal with the same state hash.
func requireSnapshotLoads(t testing.TB, reg *projector.Registry) {
	t.Helper()
	b, err := reg.Marshal()
	require.NoError(t, err)
	back, err := projector.Unmarshal(b)
	require.NoError(t, err)
	require.Equal(t, stateHash(t, reg), stateHash(t, back))
	b2, err := back.Marshal()
	require.NoError(t, err)
	require.Equal(t, b, b2, "Marshal of the loaded registry")
}

// TestRevokeChainProperty: random version 3 histories of creations, grants,
// replacements, revocations (whole and of members, some large) and
// retirements over a small tree; for every agent, a fold of only its
// chain's subjects agrees with the full fold. The seed is printed on
// failure; -run 'TestRevokeChainProperty/seed=N' replays one.
func TestRevokeChainProperty(t *testing.T) {
	paths := []string{"a", "a/b", "a/b/c", "a/b/d", "a/x", "a/x/y", "e", "e/f"}
	names := []string{"sqrt", "cos", "tan", "sin", "pi", "s1"}
	n := 300
	if testing.Short() {
		n = 50
	}
	for seed := uint64(1); seed <= uint64(n); seed++ {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			pick := func(ss []string) string { return ss[rng.IntN(len(ss))] }
			some := func(ss []string, max int) []string {
				out := slices.Clone(ss)
				rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
				return out[:1+rng.IntN(max)]
			}
			capability := func() events.Capability {
				if rng.IntN(6) == 0 {
					return events.Capability{Kind: events.KindFunc, Name: "print"}
				}
				var include, exclude []string
				switch rng.IntN(4) {
				case 0: // default "*"
				case 1:
					include = []string{"s*"}
				default:
					include = some(names, 3)
				}
				switch rng.IntN(4) {
				case 0:
					exclude = some(names, 2)
				case 1: // at or near the limit
					exclude = bigExclude()[:events.MaxPatterns-len(include)-rng.IntN(2)]
					if len(include) == 0 {
						exclude = exclude[:len(exclude)-1]
					}
				}
				return mathCap(include, exclude)
			}
			f := newFold(t)
			ok(t, f.register())
			// Most agents are created first, each holding math; then
			// anything goes, in any order.
			for _, p := range paths {
				if rng.IntN(5) > 0 {
					f.create(p, "")
					f.grant(p, capability())
				}
			}
			for range 20 + rng.IntN(40) {
				p := pick(paths)
				switch op := rng.IntN(20); {
				case op < 2:
					f.create(p, "")
				case op < 9:
					f.grant(p, capability())
				case op < 12:
					f.replace(p, capability())
				case op < 18:
					members := some(names, 2)
					if rng.IntN(4) == 0 {
						members = append(members, bigExclude()[1:1+rng.IntN(20)]...)
					}
					f.revokeMembers(p, events.KindModule, "math", members...)
				case op < 19:
					if rng.IntN(2) == 0 {
						f.revoke(p, events.KindModule, "math")
					} else {
						f.revoke(p, events.KindFunc, "print")
					}
				default:
					if rng.IntN(3) == 0 {
						f.retire(p, "done")
					}
				}
			}
			requireChainsAgree(t, f, fmt.Sprintf("seed %d", seed))
			requireSnapshotLoads(t, f.reg)
		})
	}
}
