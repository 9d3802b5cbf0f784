package agent

import (
	"slices"

	"github.com/agentreg/agentreg/events"
)

// Listed returns the member names the catalog offers under a capability,
// sorted: a module's members, or a function's or type's own name. ok is
// false when the catalog does not list it (a symbolic catalog lists
// nothing).
func (c *Catalog) Listed(kind events.Kind, name string) (names []string, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.symbolic {
		return nil, false
	}
	switch kind {
	case events.KindModule:
		m, found := c.modules[name]
		if !found {
			return nil, false
		}
		for k := range m {
			names = append(names, k)
		}
		slices.Sort(names)
		return names, true
	case events.KindFunc:
		_, found := c.funcs[name]
		return []string{name}, found
	case events.KindType:
		_, found := c.types[name]
		return []string{name}, found
	}
	return nil, false
}
