package agent

import (
	"fmt"
	"strings"

	"github.com/agentreg/agentreg/events"
)

// RootID identifies a root: the fingerprint of its definition (64
// lowercase hex digits, events.RootDef.Fingerprint). Every API of this
// package that means a root takes or returns one.
type RootID string

// Validate checks the fingerprint's form.
func (r RootID) Validate() error { return events.ValidateFingerprint(string(r)) }

func (r RootID) String() string { return string(r) }

// AgentRef names an agent: its root and its path under the root ("" is the
// root itself).
type AgentRef struct {
	Root RootID `json:"root"`
	Path string `json:"path"`
}

func (a AgentRef) String() string { return string(a.Root) + "/" + a.Path }

// Task returns the reference of the agent's task called name.
func (a AgentRef) Task(name string) TaskRef {
	return TaskRef{Root: a.Root, Path: a.Path, Task: name}
}

// Child returns the reference of a direct child named name.
func (a AgentRef) Child(name string) AgentRef {
	return AgentRef{Root: a.Root, Path: events.Join(a.Path, name)}
}

// TaskRef is what a task function carries across processes: root
// fingerprint, agent path and task name, and optionally the task's
// contract digest. Its text form is "<fingerprint>/<path>#<task>"
// ("<fingerprint>/#<task>" for a task of the root itself), with
// "@<digest>" appended when the ref is pinned; it round-trips through
// encoding.TextMarshaler, and so through JSON and msgpack.
//
// A pinned ref (Contract set: 64 lowercase hex digits, Task.Contract)
// resolves only while the task's contract is that one: after the task is
// redefined with another name, doc or schema, Resolve fails with a
// *ContractChangedError (errors.Is ErrContractChanged) naming both
// digests. An unpinned ref resolves to the task as it is now.
type TaskRef struct {
	Root     RootID
	Path     string
	Task     string
	Contract string // contract digest the ref is pinned to; "" for none
}

// Agent returns the reference of the agent that runs the task.
func (r TaskRef) Agent() AgentRef { return AgentRef{Root: r.Root, Path: r.Path} }

// Pinned returns the ref pinned to the contract digest c ("" unpins it).
func (r TaskRef) Pinned(c string) TaskRef { r.Contract = c; return r }

func (r TaskRef) String() string {
	s := string(r.Root) + "/" + r.Path + "#" + r.Task
	if r.Contract != "" {
		s += "@" + r.Contract
	}
	return s
}

// Validate checks every part of the reference.
func (r TaskRef) Validate() error {
	if err := events.ValidateFingerprint(string(r.Root)); err != nil {
		return fmt.Errorf("task ref %q: %w", r.String(), err)
	}
	if r.Path != "" {
		if err := events.ValidatePath(r.Path); err != nil {
			return fmt.Errorf("task ref %q: %w", r.String(), err)
		}
	}
	if err := events.ValidateSegment(r.Task); err != nil {
		return fmt.Errorf("task ref %q: task name: %w", r.String(), err)
	}
	if r.Contract != "" && !isDigest(r.Contract) {
		return fmt.Errorf("task ref %q: contract %q is not a digest (64 lowercase hex digits): %w", trunc(r.String()), trunc(r.Contract), events.ErrInvalidName)
	}
	return nil
}

// isDigest reports whether s is a hex SHA-256: 64 lowercase hex digits.
func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// ParseTaskRef parses the text form of a task reference, pinned or not.
func ParseTaskRef(s string) (TaskRef, error) {
	root, rest, ok := strings.Cut(s, "/")
	if !ok {
		return TaskRef{}, fmt.Errorf("task ref %q: want <fingerprint>/<path>#<task>[@<contract>]: %w", trunc(s), events.ErrInvalidName)
	}
	i := strings.LastIndexByte(rest, '#')
	if i < 0 {
		return TaskRef{}, fmt.Errorf("task ref %q: no '#<task>' after the path: %w", trunc(s), events.ErrInvalidName)
	}
	r := TaskRef{Root: RootID(root), Path: rest[:i], Task: rest[i+1:]}
	if task, contract, pinned := strings.Cut(r.Task, "@"); pinned {
		if contract == "" {
			return TaskRef{}, fmt.Errorf("task ref %q: '@' with no contract digest after it: %w", trunc(s), events.ErrInvalidName)
		}
		r.Task, r.Contract = task, contract
	}
	if err := r.Validate(); err != nil {
		return TaskRef{}, err
	}
	return r, nil
}

// MarshalText implements encoding.TextMarshaler.
func (r TaskRef) MarshalText() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return []byte(r.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *TaskRef) UnmarshalText(b []byte) error {
	p, err := ParseTaskRef(string(b))
	if err != nil {
		return err
	}
	*r = p
	return nil
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:197] + "..."
	}
	return s
}
