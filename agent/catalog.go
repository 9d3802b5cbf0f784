package agent

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// Catalog is what the host process offers agents: named modules (sets of
// Go functions or values), functions and types, registered at start-up.
// Capabilities in recipes are symbolic references resolved against it; no
// code is ever taken from the log. Safe for concurrent use.
type Catalog struct {
	symbolic bool
	lenient  bool // AllowMissingMembers
	mu       sync.RWMutex
	modules  map[string]map[string]any
	funcs    map[string]any
	types    map[string]reflect.Type
}

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog {
	return &Catalog{modules: map[string]map[string]any{}, funcs: map[string]any{}, types: map[string]reflect.Type{}}
}

func checkSymbol(kind events.Kind, name string) error {
	return events.Capability{Kind: kind, Name: name}.Validate()
}

// SymbolicCatalog returns a catalog that accepts every capability
// reference and resolves no members: for a process that keeps and serves
// recipes (agentd) but runs no agent code itself.
func SymbolicCatalog() *Catalog {
	c := NewCatalog()
	c.symbolic = true
	return c
}

// AllowMissingMembers makes resolution leave out a member that a recipe
// names (a literal name in the include of the agent's own grant) and this
// catalog's module lacks, instead of failing: for a host that knowingly
// offers a subset of a module. By default Resolve fails with
// ErrUnknownMember naming the member and the module.
func (c *Catalog) AllowMissingMembers() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lenient = true
}

// AddModule registers a module: members by name (functions or values).
func (c *Catalog) AddModule(name string, members map[string]any) error {
	if err := checkSymbol(events.KindModule, name); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]any, len(members))
	for k, v := range members {
		m[k] = v
	}
	c.modules[name] = m
	return nil
}

// AddFunc registers one function.
func (c *Catalog) AddFunc(name string, fn any) error {
	if err := checkSymbol(events.KindFunc, name); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	if reflect.TypeOf(fn) == nil || reflect.TypeOf(fn).Kind() != reflect.Func {
		return fmt.Errorf("catalog: fn %q: %T is not a function", name, fn)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.funcs[name] = fn
	return nil
}

// AddType registers a type by a sample value (or a nil pointer to it).
func (c *Catalog) AddType(name string, sample any) error {
	if err := checkSymbol(events.KindType, name); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	t := reflect.TypeOf(sample)
	if t == nil {
		return fmt.Errorf("catalog: type %q: nil sample", name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.types[name] = t
	return nil
}

// Capability is a capability resolved against the catalog: the members
// the agent may use (for a module, those its whole ancestor chain allows).
type Capability struct {
	Ref     events.Capability
	Chain   []events.Capability // the grants that limit it, root first
	Members map[string]any      // module: allowed members; fn: the function under its name; type: its reflect.Type
}

// clone returns a copy of c that shares no slice or map with it.
func (c Capability) clone() Capability {
	c.Ref = cloneCap(c.Ref)
	if c.Chain != nil {
		chain := make([]events.Capability, len(c.Chain))
		for i, g := range c.Chain {
			chain[i] = cloneCap(g)
		}
		c.Chain = chain
	}
	c.Members = maps.Clone(c.Members)
	return c
}

// MemberNames returns the names of the usable members, sorted.
func (c Capability) MemberNames() []string {
	out := make([]string, 0, len(c.Members))
	for k := range c.Members {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// resolve finds an effective capability in the catalog: every member the
// agent's own grant names (and its chain allows) must be in the module,
// unless the catalog allows missing members.
func (c *Catalog) resolve(e projector.Effective) (Capability, error) {
	return c.resolveCap(e, true)
}

// resolveCap is resolve; members says whether named members are checked.
func (c *Catalog) resolveCap(e projector.Effective, members bool) (Capability, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ref := cloneCap(e.Capability)
	out := Capability{Ref: ref, Chain: make([]events.Capability, len(e.Chain)), Members: map[string]any{}}
	for i, g := range e.Chain { // the registry's grants stay its own
		out.Chain[i] = cloneCap(g)
	}
	if c.symbolic {
		return out, nil
	}
	switch ref.Kind {
	case events.KindModule:
		m, ok := c.modules[ref.Name]
		if !ok {
			return out, fmt.Errorf("capability module %q is not in this process's catalog; register it with Catalog.AddModule: %w", ref.Name, ErrUnknownCapability)
		}
		for name, v := range m {
			if e.Allows(name) {
				out.Members[name] = v
			}
		}
		if members && !c.lenient {
			for _, name := range ref.Include {
				if _, ok := m[name]; !ok && !events.IsPattern(name) && e.Allows(name) {
					return out, fmt.Errorf("capability module %q: the recipe names member %q, which this process's module lacks; "+
						"add it to the module or let the catalog leave it out (Catalog.AllowMissingMembers): %w", ref.Name, name, ErrUnknownMember)
				}
			}
		}
	case events.KindFunc:
		fn, ok := c.funcs[ref.Name]
		if !ok {
			return out, fmt.Errorf("capability fn %q is not in this process's catalog; register it with Catalog.AddFunc: %w", ref.Name, ErrUnknownCapability)
		}
		out.Members[ref.Name] = fn
	case events.KindType:
		t, ok := c.types[ref.Name]
		if !ok {
			return out, fmt.Errorf("capability type %q is not in this process's catalog; register it with Catalog.AddType: %w", ref.Name, ErrUnknownCapability)
		}
		out.Members[ref.Name] = t
	default:
		return out, fmt.Errorf("capability %q: unknown kind %q: %w", ref.Name, ref.Kind, ErrUnknownCapability)
	}
	return out, nil
}

// moduleMembers returns the member names of a module in the catalog, nil
// if it has none by that name.
func (c *Catalog) moduleMembers(name string) []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m := c.modules[name]
	if m == nil {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// check reports the first capability of caps the catalog cannot satisfy.
func (c *Catalog) check(caps []events.Capability) error {
	for _, cp := range caps {
		cp = cp.Normalized()
		if _, err := c.resolveCap(projector.Effective{Capability: cp, Chain: []events.Capability{cp}}, false); err != nil {
			return err
		}
	}
	return nil
}

// Member returns the member called name of a resolved capability as a T:
// a module's function or value, a fn capability's function (under the
// capability's own name), a type capability's reflect.Type. A member the
// agent may not use (or the catalog lacks) gives ErrUnknownMember; one of
// another type ErrMemberType, naming both types.
func Member[T any](c Capability, name string) (T, error) {
	var zero T
	v, ok := c.Members[name]
	if !ok {
		return zero, fmt.Errorf("capability %s %q: member %q is not usable by this agent (usable: %v): %w",
			c.Ref.Kind, c.Ref.Name, name, c.MemberNames(), ErrUnknownMember)
	}
	t, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("capability %s %q: member %q is a %T, not a %s: %w",
			c.Ref.Kind, c.Ref.Name, name, v, reflect.TypeFor[T](), ErrMemberType)
	}
	return t, nil
}

// Func returns the function of a fn capability as an F (say
// func(string) (float64, error)); see Member for the errors.
func Func[F any](c Capability) (F, error) {
	if c.Ref.Kind != events.KindFunc {
		var zero F
		return zero, fmt.Errorf("capability %s %q is not a fn: use Member: %w", c.Ref.Kind, c.Ref.Name, ErrMemberType)
	}
	return Member[F](c, c.Ref.Name)
}
