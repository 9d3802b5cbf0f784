package agent

import (
	"fmt"
	"strings"

	"github.com/agentreg/agentreg/events"
)

// AgentRef names an agent: its root's fingerprint and its path under the
// root ("" is the root itself).
type AgentRef struct {
	Root string `json:"root"`
	Path string `json:"path"`
}

func (a AgentRef) String() string { return a.Root + "/" + a.Path }

// Child returns the reference of a direct child named name.
func (a AgentRef) Child(name string) AgentRef {
	return AgentRef{Root: a.Root, Path: events.Join(a.Path, name)}
}

// TaskRef is what a task function carries across processes: root
// fingerprint, agent path and task name. Its text form is
// "<fingerprint>/<path>#<task>" ("<fingerprint>/#<task>" for a task of the
// root itself); it round-trips through encoding.TextMarshaler, and so
// through JSON and msgpack.
type TaskRef struct {
	Root string
	Path string
	Task string
}

// Agent returns the reference of the agent that runs the task.
func (r TaskRef) Agent() AgentRef { return AgentRef{Root: r.Root, Path: r.Path} }

func (r TaskRef) String() string { return r.Root + "/" + r.Path + "#" + r.Task }

// Validate checks every part of the reference.
func (r TaskRef) Validate() error {
	if err := events.ValidateFingerprint(r.Root); err != nil {
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
	return nil
}

// ParseTaskRef parses the text form of a task reference.
func ParseTaskRef(s string) (TaskRef, error) {
	root, rest, ok := strings.Cut(s, "/")
	if !ok {
		return TaskRef{}, fmt.Errorf("task ref %q: want <fingerprint>/<path>#<task>: %w", trunc(s), events.ErrInvalidName)
	}
	i := strings.LastIndexByte(rest, '#')
	if i < 0 {
		return TaskRef{}, fmt.Errorf("task ref %q: no '#<task>' after the path: %w", trunc(s), events.ErrInvalidName)
	}
	r := TaskRef{Root: root, Path: rest[:i], Task: rest[i+1:]}
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
