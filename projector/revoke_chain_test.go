package projector_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/oklog/ulid/v2"
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

	t.Run("a descendant at the limit", func(t *testing.T) {
		f := newFold(t)
		ok(t, f.register())
		for _, s := range []step{createA, grantA, createX, grantXs, revoke} {
			ok(t, s.do(f))
		}
		stored := f.reg.Agents["a/x"].Capabilities["module:math"]
		assert.Len(t, stored.Capability.Exclude, events.MaxPatterns-1, "the stored grant is as granted")
		assert.NoError(t, stored.Capability.Validate())
		assert.Empty(t, f.reg.Agents["a/x"].Revocations)
		g := mathGrant(t, f.reg, "a/x")
		assert.Equal(t, []string{"sqrt"}, g.Revoked)
		assert.Len(t, g.Capability.Exclude, events.MaxPatterns, "as read: 63 excludes and sqrt")
		// Widening a restores nothing below it.
		ok(t, f.replace("a", mathCap(nil, nil)))
		assert.True(t, allows(t, f, "a", "sqrt"))
		assert.False(t, allows(t, f, "a/x", "sqrt"))
		requireChainsAgree(t, f, "widened")
		requireSnapshotLoads(t, f.reg)
	})
}

// TestRevokeMembersNoGrantLimit: a member revocation is bounded by its event
// alone (events.MaxPatterns members), not by the size of any grant: it is
// stored at the agent, never in a grant, so an agent whose own grant is at
// the pattern limit still revokes, and what it revokes reaches the grants
// below it made before it; a replaced grant starts without it.
func TestRevokeMembersNoGrantLimit(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))
	ok(t, f.grant("a", mathCap(nil, nil)))
	ok(t, f.create("a/b", ""))
	ok(t, f.grant("a/b", mathCap([]string{"sqrt", "cos", "tan"}, bigExclude()[:events.MaxPatterns-3])))
	ok(t, f.create("a/b/c", ""))
	ok(t, f.grant("a/b/c", mathCap([]string{"sqrt", "cos", "tan"}, nil)))

	// a/b's own grant holds 64 patterns: the revocation applies all the same.
	ok(t, f.revokeMembers("a/b", events.KindModule, "math", "sqrt"))
	assert.False(t, allows(t, f, "a/b", "sqrt"))
	assert.False(t, allows(t, f, "a/b/c", "sqrt"))
	assert.Len(t, f.reg.Agents["a/b"].Capabilities["module:math"].Capability.Exclude, events.MaxPatterns-3, "the grant is not rewritten")

	// a's replacement restores nothing below; a/b/c's grant is replaced,
	// without its revoked members.
	ok(t, f.revokeMembers("a", events.KindModule, "math", "tan"))
	ok(t, f.replace("a", mathCap(nil, nil)))
	assert.True(t, allows(t, f, "a", "tan"))
	assert.False(t, allows(t, f, "a/b", "tan"))
	violation(t, f.replace("a/b/c", mathCap([]string{"cos", "tan"}, nil)), projector.CodeEscalation) // a/b lost tan
	ok(t, f.replace("a/b/c", mathCap([]string{"cos"}, nil)))
	assert.Empty(t, mathGrant(t, f.reg, "a/b/c").Revoked)
	assert.True(t, allows(t, f, "a/b/c", "cos"))
	// A later revocation reaches the replaced grant; a grant made after it
	// is not narrowed, only checked against its parent's.
	ok(t, f.revokeMembers("a/b", events.KindModule, "math", "cos"))
	assert.Equal(t, []string{"cos"}, mathGrant(t, f.reg, "a/b/c").Revoked)
	ok(t, f.create("a/b/c/d", ""))
	violation(t, f.grant("a/b/c/d", mathCap([]string{"cos"}, nil)), projector.CodeEscalation)
	requireChainsAgree(t, f, "no grant limit")
	requireSnapshotLoads(t, f.reg)

	// A whole revocation drops the grants and the member revocations at and
	// below the agent.
	ok(t, f.revoke("a/b", events.KindModule, "math"))
	assert.Empty(t, f.reg.Agents["a/b"].Revocations)
	assert.NotEmpty(t, f.reg.Agents["a"].Revocations)
	requireChainsAgree(t, f, "whole revocation")
	requireSnapshotLoads(t, f.reg)
}

// TestRevokeNoAmplification: a writer at an agent alternating a member
// revocation of 64 new names and a replacement of its own grant (which
// starts without them) grows the registry by what the events hold, not by
// that times the number of grants below it (security review: each pair
// added 64 excludes to every descendant's grant).
func TestRevokeNoAmplification(t *testing.T) {
	const kids, pairs = 1000, events.MaxRevokedMembers / events.MaxPatterns
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))
	ok(t, f.grant("a", mathCap(nil, nil)))
	for i := range kids {
		p := fmt.Sprintf("a/k%d", i)
		ok(t, f.create(p, ""))
		ok(t, f.grant(p, mathCap(nil, nil)))
	}
	before, err := f.reg.Marshal()
	require.NoError(t, err)
	for i := range pairs {
		members := make([]string, events.MaxPatterns)
		for j := range members {
			members[j] = fmt.Sprintf("m%dx%d", i, j)
		}
		ok(t, f.revokeMembers("a", events.KindModule, "math", members...))
		ok(t, f.replace("a", mathCap(nil, nil)))
	}
	after, err := f.reg.Marshal()
	require.NoError(t, err)

	excludes, revoked := 0, 0
	for _, a := range f.reg.Agents {
		for _, g := range a.Capabilities {
			excludes += len(g.Capability.Exclude)
		}
		for _, revs := range a.Revocations {
			for _, rv := range revs {
				revoked += len(rv.Members)
			}
		}
	}
	assert.Equal(t, kids+1, excludes, "every grant holds its own exclude (_*) alone")
	assert.Equal(t, pairs*events.MaxPatterns, revoked, "each member stored once")
	// Per pair: two grants' worth of registry at a and 64 short names
	// (under 16 bytes each, with their msgpack headers) plus a sequence.
	// Eagerly it was 64 names times 1,000 grants: some 100 MB here.
	grown := len(after) - len(before)
	assert.Less(t, grown, pairs*(events.MaxPatterns*16+512), "the encoding grew by %d bytes over %d pairs", grown, pairs)

	// Past events.MaxRevokedMembers distinct members at a, a revocation is
	// too_large; revoking members already revoked again stores nothing more
	// (each member once, at its newest revocation), however often.
	violation(t, f.revokeMembers("a", events.KindModule, "math", "one_more"), projector.CodeTooLarge)
	for range 100 {
		ok(t, f.revokeMembers("a", events.KindModule, "math", "m0x1", "m0x2"))
	}
	again := 0
	for _, rv := range f.reg.Agents["a"].Revocations["module:math"] {
		again += len(rv.Members)
	}
	assert.Equal(t, pairs*events.MaxPatterns, again, "members revoked again are stored once")

	// The semantics are the eager ones: every grant below, made before the
	// revocations, lost all their members; a's own, replaced, only the two
	// revoked after the last replacement.
	g := mathGrant(t, f.reg, "a/k7")
	assert.Len(t, g.Revoked, pairs*events.MaxPatterns)
	assert.False(t, allows(t, f, "a/k7", "m3x5"))
	assert.True(t, allows(t, f, "a/k7", "sqrt"))
	assert.Equal(t, []string{"m0x1", "m0x2"}, mathGrant(t, f.reg, "a").Revoked)
	assert.True(t, allows(t, f, "a", "m3x5"))
	assert.False(t, allows(t, f, "a", "m0x1"))
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

// idAt is the id fold.event gives the event of stream sequence n.
func idAt(n uint64) string {
	return ulid.MustNew(1718000000000+n, bytes.NewReader(make([]byte, 16))).String()
}

// poison publishes, on the subject of the agent at path, an event the fold
// refuses (a grant of a capability the root does not define) carrying the
// id the next event will get: whatever subject that one is on, only a copy
// on this one is replayed.
func (f *fold) poison(path string) *projector.Violation {
	f.t.Helper()
	e := f.event(events.CapabilityGranted, path)
	e.ID = idAt(f.seq + 2)
	e.Granted = &events.GrantedData{Capability: events.Capability{Kind: events.KindType, Name: "Nope"}}
	return f.apply(e)
}

// TestReplayedPerSubject: the ids of refused events are remembered per
// subject (security review: an id refused on a sibling's subject made a
// later event with that id replayed in the full fold and applied in a fold
// of the chain, which never sees the sibling).
func TestReplayedPerSubject(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))
	ok(t, f.create("b", ""))
	v := f.poison("b")
	require.NotNil(t, v)
	id := idAt(f.seq + 1)
	assert.True(t, f.reg.HasID("b", id))
	ok(t, f.grant("a", mathCap([]string{"sqrt"}, nil)))
	assert.Equal(t, id, mathGrantEventID(t, f), "the grant carries the id refused on b's subject")
	assert.False(t, f.reg.HasID("a", id))
	assert.True(t, allows(t, f, "a", "sqrt"))
	requireChainsAgree(t, f, "sibling's refused id")

	// On its own subject the id is still refused, a copy of a refused event
	// as before.
	e := f.event(events.CapabilityGranted, "b")
	e.ID = id
	e.Granted = &events.GrantedData{Capability: mathCap(nil, nil)}
	violation(t, f.apply(e), projector.CodeReplayed)
	requireChainsAgree(t, f, "own subject")
	requireSnapshotLoads(t, f.reg)
}

// mathGrantEventID is the id of the last record the fold published.
func mathGrantEventID(t testing.TB, f *fold) string {
	t.Helper()
	e, err := events.Decode(f.records[len(f.records)-1].Data)
	require.NoError(t, err)
	return e.ID
}

// TestRevokeChainProperty: random version 3 histories of creations, grants,
// replacements, revocations (whole and of members, some large) and
// retirements over a small tree, and refused events carrying the id of the
// next event (on any subject); for every agent, a fold of only its
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
					switch rng.IntN(3) {
					case 0:
						f.retire(p, "done")
					case 1:
						f.poison(pick(paths)) // the next event's id, refused here
					}
				}
			}
			requireChainsAgree(t, f, fmt.Sprintf("seed %d", seed))
			requireSnapshotLoads(t, f.reg)
		})
	}
}

// TestRevocationsClone: a clone shares an agent's revocation lists with
// the original; each appends to its own without changing the other's.
func TestRevocationsClone(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))
	ok(t, f.grant("a", mathCap(nil, nil)))
	for _, m := range []string{"s1", "pi", "tan"} { // three: the list has spare capacity
		ok(t, f.revokeMembers("a", events.KindModule, "math", m))
	}
	clone := f.reg.Clone()
	e := f.event(events.CapabilityRevoked, "a") // chains in both
	e.Revoked = &events.RevokedData{Kind: events.KindModule, Name: "math", Members: []string{"cos"}}
	clone.Apply(events.Record{Seq: f.seq + 1, Subject: f.subject("a"), Data: f.encode(e)})
	require.Empty(t, clone.Violations)
	ok(t, f.revokeMembers("a", events.KindModule, "math", "sqrt"))

	last := func(reg *projector.Registry) []string {
		revs := reg.Agents["a"].Revocations["module:math"]
		require.Len(t, revs, 4)
		return revs[3].Members
	}
	assert.Equal(t, []string{"sqrt"}, last(f.reg))
	assert.Equal(t, []string{"cos"}, last(clone))
}
