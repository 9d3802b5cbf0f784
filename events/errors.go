package events

import (
	"fmt"
	"strings"
)

// EscalationError is a grant refused because the granting side (the
// agent's parent, or the root) does not effectively hold what it names.
// errors.Is(err, ErrEscalation) holds for it; errors.As gives the facts.
type EscalationError struct {
	// Capability is the grant that was refused (kind, name, patterns).
	Capability Capability
	// Parent is the path of the agent whose chain lacks it, "" for the root.
	Parent string
	// Members are the member names or patterns of the grant the parent's
	// chain does not (provably) hold, sorted; empty when the parent lacks
	// the whole capability.
	Members []string
	// Patterns: Members are include patterns that could not be shown to be
	// covered (list the members by name instead), not names the parent
	// lacks.
	Patterns bool
}

func (e *EscalationError) Error() string {
	who := "the root"
	if e.Parent != "" {
		who = fmt.Sprintf("parent %q", e.Parent)
	}
	c := e.Capability
	switch {
	case len(e.Members) == 0:
		return fmt.Sprintf("%s does not hold %s %q: %v", who, c.Kind, c.Name, ErrEscalation)
	case e.Patterns:
		return fmt.Sprintf("%s cannot be shown to hold everything pattern(s) %q of %s %q could match "+
			"(a pattern is accepted only under grants that include \"*\", the same pattern or a literal prefix and \"*\", "+
			"and exclude nothing it could match that the grant does not exclude too): list the members by name instead: %v",
			who, e.Members, c.Kind, c.Name, ErrEscalation)
	}
	return fmt.Sprintf("%s does not hold member(s) %s of %s %q: %v", who, strings.Join(e.Members, ", "), c.Kind, c.Name, ErrEscalation)
}

// Unwrap returns ErrEscalation.
func (e *EscalationError) Unwrap() error { return ErrEscalation }

// RetiredError is a write or resolution refused because the agent is
// retired (itself, or by the retirement of an ancestor, which retires the
// subtree). errors.Is(err, ErrRetired) holds for it.
type RetiredError struct {
	Path string // the retired agent
	Seq  uint64 // stream sequence of the AgentRetired event that retired it
	By   string // that event's actor
}

func (e *RetiredError) Error() string {
	return fmt.Sprintf("agent %q was retired at seq %d by %q: %v", e.Path, e.Seq, e.By, ErrRetired)
}

// Unwrap returns ErrRetired.
func (e *RetiredError) Unwrap() error { return ErrRetired }
