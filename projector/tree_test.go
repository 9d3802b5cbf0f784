package projector_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

var treeSeed = flag.Uint64("tree.seed", 0, "seed of the random trees of TestTree (0: from the clock)")

// segmentsCompare orders paths as Walk does: depth first, siblings by
// segment, so a path comes before its descendants, which come before its
// next sibling.
func segmentsCompare(a, b string) int {
	return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/"))
}

// bruteWalk is Walk's definition, by a scan of every agent.
func bruteWalk(reg *projector.Registry, under, after string) []string {
	var out []string
	for p := range reg.Agents {
		if events.IsDescendant(p, under) && (after == "" || segmentsCompare(p, after) > 0) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, segmentsCompare)
	return out
}

// bruteDescendants and bruteChildren are the definitions Descendants and
// Children had before the child index: a scan of every agent.
func bruteDescendants(reg *projector.Registry, path string) []string {
	var out []string
	for p := range reg.Agents {
		if events.IsDescendant(p, path) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

func bruteChildren(reg *projector.Registry, path string) []string {
	var out []string
	for p := range reg.Agents {
		if events.Parent(p) == path {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// randomTree folds n creations of random shape: each under a random
// existing agent or the root, with short segments over "ab0-_" (so that
// siblings share prefixes and '-', which sorts before '/', is common), some
// agents retired on the way.
func randomTree(t testing.TB, rng *rand.Rand, n int) *fold {
	f := newFold(t)
	ok(t, f.register())
	paths := []string{""}
	const alphabet = "ab0-_"
	for len(f.reg.Agents) < n {
		parent := paths[rng.IntN(len(paths))]
		if parent != "" && (f.reg.Agents[parent].Retired || strings.Count(parent, "/") >= 8) {
			continue
		}
		seg := make([]byte, 1+rng.IntN(3))
		for i := range seg {
			seg[i] = alphabet[rng.IntN(len(alphabet))]
		}
		p := events.Join(parent, string(seg))
		if f.reg.Agents[p] != nil {
			continue
		}
		ok(t, f.create(p, ""))
		paths = append(paths, p)
		if rng.IntN(50) == 0 {
			ok(t, f.retire(p, "random"))
		}
	}
	return f
}

// TestTree checks Children, Descendants and Walk against their brute-force
// definitions on random trees: folded, decoded from a snapshot, and cloned.
func TestTree(t *testing.T) {
	seed := *treeSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("random trees from seed %d: go test ./projector -run TestTree -tree.seed %d", seed, seed)
		}
	})
	rng := rand.New(rand.NewPCG(seed, 0x7ee))
	for round, n := range []int{1, 50, 3000, 4000} {
		f := randomTree(t, rng, n)
		b, err := f.reg.Marshal()
		require.NoError(t, err)
		decoded, err := projector.Unmarshal(b)
		require.NoError(t, err)
		for name, reg := range map[string]*projector.Registry{"folded": f.reg, "decoded": decoded, "cloned": f.reg.Clone()} {
			t.Run(fmt.Sprintf("round %d n=%d %s", round, n, name), func(t *testing.T) {
				checkTree(t, rng, reg)
			})
		}
	}
}

func checkTree(t *testing.T, rng *rand.Rand, reg *projector.Registry) {
	paths := reg.Paths()
	unders := []string{"", "nobody", "a/nobody"}
	for range 20 {
		unders = append(unders, paths[rng.IntN(len(paths))])
	}
	sample := slices.Clone(unders)
	for range 200 {
		sample = append(sample, paths[rng.IntN(len(paths))])
	}
	for _, p := range sample {
		require.Equal(t, bruteChildren(reg, p), reg.Children(p), "Children(%q)", p)
		require.Equal(t, bruteDescendants(reg, p), reg.Descendants(p), "Descendants(%q)", p)
	}
	for _, under := range unders {
		full := bruteWalk(reg, under, "")
		got, more := reg.Walk(under, "", 0)
		require.Equal(t, full, got, "Walk(%q) whole", under)
		require.False(t, more)

		// Pages of random sizes, each starting after the last path of the
		// one before, concatenate to the whole walk.
		var pages []string
		after := ""
		for {
			limit := 1 + rng.IntN(40)
			page, more := reg.Walk(under, after, limit)
			require.LessOrEqual(t, len(page), limit)
			pages = append(pages, page...)
			require.Equal(t, len(pages) < len(full), more, "Walk(%q, %q, %d): more", under, after, limit)
			if !more {
				break
			}
			require.Len(t, page, limit, "a page followed by more is full")
			after = page[len(page)-1]
		}
		require.Equal(t, full, pages, "Walk(%q) in pages", under)

		// Resuming after a path that does not exist (or not any more)
		// continues where it would stand.
		for range 5 {
			var after string
			if len(full) > 0 && rng.IntN(2) == 0 {
				after = full[rng.IntN(len(full))] + []string{"-", "/z", "0", "/-"}[rng.IntN(4)]
			} else {
				after = events.Join(under, []string{"-", "0", "a-", "b/0", "zz"}[rng.IntN(5)])
			}
			got, _ := reg.Walk(under, after, 0)
			require.Equal(t, bruteWalk(reg, under, after), got, "Walk(%q, %q)", under, after)
		}
	}
	// after outside under gives nothing.
	if len(paths) > 0 {
		got, more := reg.Walk(paths[0], paths[0], 0)
		require.Empty(t, got)
		require.False(t, more)
	}
}

func TestWalkOrder(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	for _, p := range []string{"a", "a/b-x", "a/b", "a/b/c", "a/_", "a/B", "b", "a/b/c/d", "a0"} {
		ok(t, f.create(p, ""))
	}
	got, more := f.reg.Walk("", "", 0)
	require.False(t, more)
	require.Equal(t, []string{"a", "a/B", "a/_", "a/b", "a/b/c", "a/b/c/d", "a/b-x", "a0", "b"}, got,
		"depth first, siblings by segment")
	require.Equal(t, []string{"a/B", "a/_", "a/b", "a/b-x", "a/b/c", "a/b/c/d"}, f.reg.Descendants("a"), "byte order")

	got, more = f.reg.Walk("a", "a/b/c", 2)
	require.Equal(t, []string{"a/b/c/d", "a/b-x"}, got)
	require.False(t, more)
	got, more = f.reg.Walk("", "a/b", 2)
	require.Equal(t, []string{"a/b/c", "a/b/c/d"}, got)
	require.True(t, more)
	got, _ = f.reg.Walk("a/b", "", 0)
	require.Equal(t, []string{"a/b/c", "a/b/c/d"}, got)
	got, _ = f.reg.Walk("b", "", 0)
	require.Empty(t, got)
	got, _ = f.reg.Walk("", "a/b/c/d", -1)
	require.Equal(t, []string{"a/b-x", "a0", "b"}, got)
	require.Nil(t, f.reg.Children("b"))
	require.Nil(t, f.reg.Descendants("b"))
	require.Equal(t, []string{"a", "a0", "b"}, f.reg.Children(""))
}

// TestWideSiblings: thousands of children of one parent, created in random
// order (so that the index's chunks split), stay in order.
func TestWideSiblings(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("p", ""))
	rng := rand.New(rand.NewPCG(1, 2))
	var want []string
	for _, i := range rng.Perm(3000) {
		p := fmt.Sprintf("p/c%d", i)
		ok(t, f.create(p, ""))
		want = append(want, p)
	}
	slices.Sort(want)
	require.Equal(t, want, f.reg.Children("p"))
	for _, i := range []int{0, 1, 127, 128, 129, 1500, 2998, 2999} {
		got, more := f.reg.Walk("p", want[i], 3)
		exp := want[i+1 : min(i+4, len(want))]
		if len(exp) == 0 {
			exp = nil
		}
		require.Equal(t, exp, got)
		require.Equal(t, i+4 < len(want), more)
	}
}

// TestAgentsChangedDirectly: an Agents map changed other than through
// Apply is indexed anew before the index is read.
func TestAgentsChangedDirectly(t *testing.T) {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))
	require.Equal(t, []string{"a"}, f.reg.Children(""))
	f.reg.Agents["a/b"] = &projector.Agent{Path: "a/b"}
	require.Equal(t, []string{"a/b"}, f.reg.Children("a"))
	require.Equal(t, []string{"a", "a/b"}, f.reg.Descendants(""))
}

// TestClone: a clone taken before more events marshals, after them, to the
// bytes the original marshalled before them; and the clone folds on its own.
func TestClone(t *testing.T) {
	f := history(t, "You solve equations.")
	ok(t, f.createWith("printer/child", []events.Capability{printCap}, simpleTask("echo")))
	ok(t, f.create("printer/child/leaf", ""))
	ok(t, f.grant("printer/child/leaf", printCap))
	ok(t, f.create("bare", "")) // no grants, no tasks
	before, err := f.reg.Marshal()
	require.NoError(t, err)
	recorded := len(f.records)

	c := f.reg.Clone()
	// Marshal the clone while the original folds (the race detector
	// watches for shared state).
	var wg sync.WaitGroup
	var during []byte
	var derr error
	wg.Go(func() { during, derr = c.Marshal() })
	ok(t, f.createWith("math_solver/checker/sub", []events.Capability{printCap}))
	ok(t, f.grant("math_solver", mathCap([]string{"cos"}, nil)))
	ok(t, f.task("printer/child", simpleTask("echo2")))
	ok(t, f.revoke("printer", events.KindFunc, "print")) // cascades to printer/child and its leaf
	ok(t, f.retire("math_solver", "done"))               // cascades
	violation(t, f.create("math_solver/x", ""), projector.CodeRetired)
	ok(t, f.create("newcomer", ""))
	ok(t, f.grant("bare", printCap))
	ok(t, f.task("bare", simpleTask("t")))
	wg.Wait()
	require.NoError(t, derr)
	require.Equal(t, before, during)

	after, err := c.Marshal()
	require.NoError(t, err)
	require.Equal(t, before, after, "the clone did not change with the original")
	require.NotContains(t, c.Children(""), "newcomer")
	require.Contains(t, c.Agents["printer/child/leaf"].Capabilities, "fn:print")
	require.False(t, c.Agents["math_solver"].Retired)

	// The clone folds the same records to the same state, and leaves the
	// original alone.
	orig, err := f.reg.Marshal()
	require.NoError(t, err)
	for _, rec := range f.records[recorded:] {
		c.Apply(rec)
	}
	require.Equal(t, stateHash(t, f.reg), stateHash(t, c))
	again, err := f.reg.Marshal()
	require.NoError(t, err)
	require.Equal(t, orig, again)
	require.Equal(t, f.reg.Descendants(""), c.Descendants(""))
}

// bigRoot folds a root of about n agents: "target" with one leaf, both
// holding math, and the rest as width top-level agents with width children
// each.
func bigRoot(b *testing.B, n int) *fold {
	f := newFold(b)
	ok(b, f.register())
	ok(b, f.createWith("target", []events.Capability{mathCap(nil, nil)}))
	ok(b, f.createWith("target/leaf", []events.Capability{mathCap(nil, nil)}))
	width := 1
	for width*width+width < n {
		width++
	}
	for i := 0; len(f.reg.Agents) < n; i++ {
		top := fmt.Sprintf("t%04d", i)
		ok(b, f.create(top, ""))
		for j := 0; j < width && len(f.reg.Agents) < n; j++ {
			ok(b, f.create(fmt.Sprintf("%s/c%04d", top, j), ""))
		}
	}
	return f
}

// BenchmarkRevokeCascade: applying a revocation from a leaf's parent, whose
// cascade reaches the leaf, at 1k and 100k agents in the root. The grant
// that makes each revocation valid is applied outside the timer. The
// bruteforce rows time the scan that Descendants did before the child index
// (what each cascade cost on top of the fold).
//
//	go test ./projector -run '^$' -bench RevokeCascade -benchtime 2000x
func BenchmarkRevokeCascade(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		f := bigRoot(b, n)
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			f.t = b
			for b.Loop() {
				b.StopTimer()
				ok(b, f.grant("target", mathCap(nil, nil)))
				ok(b, f.grant("target/leaf", mathCap(nil, nil)))
				e := f.event(events.CapabilityRevoked, "target")
				e.Revoked = &events.RevokedData{Kind: events.KindModule, Name: "math"}
				rec := events.Record{Seq: f.seq + 1, Subject: f.subject("target"), Data: f.encode(e)}
				f.seq++
				b.StartTimer()
				f.reg.Apply(rec)
			}
			b.StopTimer()
			if len(f.reg.Violations) != 0 {
				b.Fatalf("violations: %+v", f.reg.Violations[0])
			}
			if _, held := f.reg.Agents["target/leaf"].Capabilities["module:math"]; held {
				b.Fatal("the cascade did not reach the leaf")
			}
		})
		b.Run(fmt.Sprintf("bruteforce-descendants/agents=%d", n), func(b *testing.B) {
			for b.Loop() {
				if len(bruteDescendants(f.reg, "target")) != 1 {
					b.Fatal("target has one descendant")
				}
			}
		})
	}
}

// BenchmarkWalkPage: one page of 100 paths from the middle of the root, at
// 1k and 100k agents.
func BenchmarkWalkPage(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		f := bigRoot(b, n)
		all, _ := f.reg.Walk("", "", 0)
		after := all[len(all)/2]
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			for b.Loop() {
				if page, _ := f.reg.Walk("", after, 100); len(page) != 100 {
					b.Fatal("short page")
				}
			}
		})
	}
}

// BenchmarkClone: Clone against Marshal of a 100k-agent root.
func BenchmarkClone(b *testing.B) {
	f := bigRoot(b, 100_000)
	b.Run("Clone", func(b *testing.B) {
		for b.Loop() {
			f.reg.Clone()
		}
	})
	b.Run("Marshal", func(b *testing.B) {
		for b.Loop() {
			if _, err := f.reg.Marshal(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
