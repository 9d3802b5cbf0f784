// Package inspect hands this module's own programs and tests a root's
// registry: the projector's mutable internals, which the agent package's
// public API does not give out (it answers with values: Describe, List,
// Lineage). Being internal, it cannot be imported from outside the module.
package inspect

import (
	"context"
	"fmt"

	"github.com/agentreg/agentreg/projector"
)

// viewFn is the agent package's view, registered by its init: a root's
// registry, loaded and caught up (to the context's minimum sequence, or to
// every event the stream holds), passed to fn under the root's lock.
var viewFn func(ctx context.Context, rt any, root string, fn func(*projector.Registry) error) error

// Register is called once, by package agent.
func Register(view func(ctx context.Context, rt any, root string, fn func(*projector.Registry) error) error) {
	viewFn = view
}

// View calls fn with the registry of root (a fingerprint) as the runtime rt
// (an *agent.Runtime) holds it. fn must not keep the registry or change it.
func View(ctx context.Context, rt any, root string, fn func(*projector.Registry) error) error {
	if viewFn == nil {
		return fmt.Errorf("inspect: the agent package is not linked in")
	}
	return viewFn(ctx, rt, root, fn)
}
