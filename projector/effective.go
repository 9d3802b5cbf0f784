package projector

import (
	"path"
	"slices"

	"github.com/agentreg/agentreg/events"
)

// Intersected returns the capability the chain comes to, written as one
// grant: the agent's own kind, name and visibility (visibility never
// combines along the chain), an Include that is the intersection of every
// grant's includes, and an Exclude that is the union of every grant's
// excludes. exact is false when some pair of include patterns overlaps in a
// way a single glob cannot express (say "a*" under "*b"): that part is left
// out of Include, so the result is never wider than the chain, but Allows
// (which checks every grant) stays the authority for such members. When no
// name passes every include, the result is Include [] and Exclude ["*"]:
// it allows nothing, read with or without the default for an empty Include.
func (e Effective) Intersected() (c events.Capability, exact bool) {
	c = e.Capability.Normalized()
	exact = true
	if len(e.Chain) == 0 {
		return c, true
	}
	include := slices.Clone(e.Chain[0].Normalized().Include)
	var exclude []string
	for i, g := range e.Chain {
		g = g.Normalized()
		exclude = append(exclude, g.Exclude...)
		if i == 0 {
			continue
		}
		var next []string
		for _, a := range include {
			for _, b := range g.Include {
				p, ok := intersectPattern(a, b)
				if !ok {
					exact = false
					continue
				}
				if p != "" {
					next = append(next, p)
				}
			}
		}
		include = next
	}
	c.Include = slices.Compact(slices.Sorted(slices.Values(include)))
	c.Exclude = slices.Compact(slices.Sorted(slices.Values(exclude)))
	if c.Exclude == nil {
		c.Exclude = []string{}
	}
	if len(c.Include) == 0 {
		// Nothing passes every grant. An empty Include would read as the
		// default "*", so the grant says it with an exclude of "*".
		c.Include, c.Exclude = []string{}, []string{"*"}
	}
	return c, exact
}

// Members returns the names among candidates (the members the host's
// catalog or the recipe lists) that the chain allows, sorted.
func (e Effective) Members(candidates []string) []string {
	var out []string
	for _, m := range candidates {
		if e.Allows(m) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// intersectPattern returns one include entry matching exactly the names
// both a and b match: "" with ok when they match nothing in common, ok false
// when the intersection is not a single entry of either.
func intersectPattern(a, b string) (p string, ok bool) {
	switch {
	case a == b:
		return a, true
	case !events.IsPattern(a) && !events.IsPattern(b):
		return "", true // two different names
	case !events.IsPattern(a):
		if m, _ := path.Match(b, a); m || b == "*" {
			return a, true
		}
		return "", true
	case !events.IsPattern(b):
		if m, _ := path.Match(a, b); m || a == "*" {
			return b, true
		}
		return "", true
	}
	if covers(a, b) {
		return b, true
	}
	if covers(b, a) {
		return a, true
	}
	return "", false
}

// covers reports whether the include pattern q provably matches every name
// p matches (events.Capability.CoversPattern with nothing excluded).
func covers(q, p string) bool {
	budget := events.GlobBudget
	return events.Capability{Include: []string{q}, Exclude: []string{}}.CoversPattern(p, nil, &budget)
}
