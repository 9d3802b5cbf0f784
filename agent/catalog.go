package agent

import (
	"fmt"
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

// MemberNames returns the names of the usable members, sorted.
func (c Capability) MemberNames() []string {
	out := make([]string, 0, len(c.Members))
	for k := range c.Members {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// resolve finds an effective capability in the catalog.
func (c *Catalog) resolve(e projector.Effective) (Capability, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	ref := e.Capability
	out := Capability{Ref: ref, Chain: e.Chain, Members: map[string]any{}}
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

// check reports the first capability of caps the catalog cannot satisfy.
func (c *Catalog) check(caps []events.Capability) error {
	for _, cp := range caps {
		cp = cp.Normalized()
		if _, err := c.resolve(projector.Effective{Capability: cp, Chain: []events.Capability{cp}}); err != nil {
			return err
		}
	}
	return nil
}
