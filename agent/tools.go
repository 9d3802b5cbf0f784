package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/google/jsonschema-go/jsonschema"

	"github.com/agentreg/agentreg/events"
)

// ErrContractChanged: a ref pinned to a task's contract digest, whose task
// was redefined with another contract since. The error is a
// *ContractChangedError naming both digests.
var ErrContractChanged = errors.New("task contract changed")

// ContractChangedError is the error of resolving a pinned ref whose task
// now has another contract. errors.Is(err, ErrContractChanged) holds.
type ContractChangedError struct {
	Ref     TaskRef // the pinned ref
	Pinned  string  // the digest the ref is pinned to
	Current string  // the task's contract digest now
}

func (e *ContractChangedError) Error() string {
	return fmt.Sprintf("task %q of agent %q was redefined: the ref is pinned to contract %s, the task's contract is now %s; "+
		"check the new definition (Runtime.Tools, Task.Tool) and pin the ref to it (TaskRef.Pinned): %v",
		e.Ref.Task, e.Ref.Path, e.Pinned, e.Current, ErrContractChanged)
}

// Unwrap returns ErrContractChanged.
func (e *ContractChangedError) Unwrap() error { return ErrContractChanged }

// Tool is a task as a model is told about it, in the shape of an MCP tool
// definition: name, description, inputSchema, outputSchema (JSON Schema).
// Its digest (Tool.Digest) is the task's contract.
type Tool = events.Tool

// Tool returns the task as a tool definition for a model.
func (t *Task) Tool() Tool { return t.Def.Tool() }

// Tools returns every task of an agent (a root or a dynamic agent) as a
// tool definition, sorted by name, as Resolve would find them: a retired
// agent is an error (ErrRetired), and a root's refs follow its recorded
// migrations. Capabilities are not resolved: a tool definition does not
// show them.
func (rt *Runtime) Tools(ctx context.Context, a AgentRef) ([]Tool, error) {
	if err := events.ValidateFingerprint(string(a.Root)); err != nil {
		return nil, fmt.Errorf("tools of %s: %w", a, err)
	}
	if a.Path != "" {
		if err := events.ValidatePath(a.Path); err != nil {
			return nil, fmt.Errorf("tools of %s: %w", a, err)
		}
	}
	if err := rt.adopt(ctx, string(a.Root)); err != nil {
		return nil, fmt.Errorf("tools of %s: %w", a, err)
	}
	ctx, err := rt.awaitMin(ctx)
	if err != nil {
		return nil, fmt.Errorf("tools of %s: %w", a, err)
	}
	st := rt.lockState(string(a.Root))
	defer st.mu.Unlock()
	reg := st.reg
	if reg == nil || rt.cfg.noFollow {
		// Cold root: only the agent's ancestor chain, as Resolve reads it.
		defer rt.forgetUnloaded(string(a.Root), st)
		if reg, err = rt.chainRegistry(ctx, string(a.Root), a.Path); err != nil {
			return nil, fmt.Errorf("tools of %s: %w", a, err)
		}
	} else if err := rt.current(ctx, string(a.Root), st); err != nil {
		return nil, fmt.Errorf("tools of %s: %w", a, err)
	}
	r, err := rt.recipeOf(ctx, a, reg)
	if err != nil {
		return nil, fmt.Errorf("tools of %s: %w", a, err)
	}
	out := make([]Tool, 0, len(r.tasks))
	for _, td := range r.tasks {
		out = append(out, td.Tool())
	}
	slices.SortFunc(out, func(x, y Tool) int {
		switch {
		case x.Name < y.Name:
			return -1
		case x.Name > y.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// SchemaFor derives a JSON Schema from a Go type, for a task's input or
// output: a struct is an object of its exported fields under their JSON
// names, required unless tagged omitempty or omitzero, with no other
// properties; a `jsonschema:"..."` tag is the property's description; a
// slice may also be null, as Go encodes a nil one. It is the derivation of
// github.com/google/jsonschema-go (For), the one the MCP Go SDK uses for
// tool inputs. Add what Go types cannot say (enum, bounds) by editing the
// result or writing the schema by hand.
func SchemaFor[T any]() (events.JSONSchema, error) {
	s, err := jsonschema.For[T](nil)
	if err != nil {
		return "", fmt.Errorf("schema for %v: %w", reflect.TypeFor[T](), err)
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("schema for %v: %w", reflect.TypeFor[T](), err)
	}
	js, err := events.ParseJSONSchema(b)
	if err != nil {
		return "", fmt.Errorf("schema for %v: %w", reflect.TypeFor[T](), err)
	}
	return js, nil
}
