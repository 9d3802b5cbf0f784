package events

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// SchemaVersion is the newest event schema this code writes and reads.
// An event with a higher version is not applied (see projector). Every
// older version is still read: 1 differs from 2 only in AgentCreated, whose
// body had no caps or tasks in version 1; 2 differs from 3 in task
// definitions, which carry JSON Schema (input_schema, output_schema),
// CapabilityGranted (a grant on a capability the agent holds must say
// Replace) and CapabilityRevoked (Members), from version 3 on.
const SchemaVersion uint64 = 3

// Type names an event. The value is what goes on the wire and into the
// Agentreg-Type header.
type Type string

// The event types.
const (
	// RootRegistered records a root agent's definition, once per fingerprint.
	RootRegistered Type = "RootRegistered"
	// AgentCreated creates a dynamic agent under its parent path.
	AgentCreated Type = "AgentCreated"
	// CapabilityGranted gives an agent a capability (a symbolic reference).
	CapabilityGranted Type = "CapabilityGranted"
	// CapabilityRevoked takes a capability from an agent and its descendants.
	CapabilityRevoked Type = "CapabilityRevoked"
	// TaskDefined defines (or redefines) a task on an agent.
	TaskDefined Type = "TaskDefined"
	// AgentRetired retires an agent and its descendants.
	AgentRetired Type = "AgentRetired"
	// RootMigrated records that task refs made under this root fingerprint
	// resolve through the root with fingerprint To from now on.
	RootMigrated Type = "RootMigrated"
)

// Known reports whether t is a type this code understands.
func (t Type) Known() bool {
	switch t {
	case RootRegistered, AgentCreated, CapabilityGranted, CapabilityRevoked,
		TaskDefined, AgentRetired, RootMigrated:
		return true
	}
	return false
}

// Sentinel errors that callers test with errors.Is.
var (
	// ErrConflict: an optimistic-concurrency append found the agent's subject
	// moved on since it was read. Re-read and retry.
	ErrConflict = errors.New("conflict: the agent's history moved on; re-read and retry")
	// ErrInvalidName: an agent path, segment or fingerprint is malformed.
	ErrInvalidName = errors.New("invalid name")
	// ErrMalformed: bytes that do not decode to an event.
	ErrMalformed = errors.New("malformed event")
	// ErrUnknownType: an event type this code does not know.
	ErrUnknownType = errors.New("unknown event type")
	// ErrFutureVersion: an event written by newer code.
	ErrFutureVersion = errors.New("event schema version newer than this code")
	// ErrEscalation: a grant beyond what the parent effectively holds.
	ErrEscalation = errors.New("escalation: a child cannot hold more than its parent")
	// ErrNotFound: an agent, task or root that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: an agent path, or a root registration, that exists already.
	ErrExists = errors.New("already exists")
	// ErrRetired: the agent (or an ancestor) is retired.
	ErrRetired = errors.New("agent is retired")
	// ErrMigrated: the root's history was migrated to a new definition and
	// takes no more changes.
	ErrMigrated = errors.New("root migrated")
	// ErrChain: an event's Prev does not match the agent's last event hash.
	ErrChain = errors.New("hash chain broken")
	// ErrWrongSubject: an event stored on a subject that is not its own.
	ErrWrongSubject = errors.New("event on the wrong subject")
)

// Event is one entry of the log. Its msgpack encoding, with the field names
// given in the tags, is the wire format (see ARCHITECTURE.md).
//
// Actor is who wrote the event; OnBehalfOf (key `obo`, absent when empty)
// is whom the writer's own caller said it was for (agentd: a request's
// `actor` field): recorded, never authenticated. A version 2 reader that
// predates the key skips it (unknown keys are skipped), so it needs no new
// schema version.
type Event struct {
	ID          string `msgpack:"id" json:"id"`     // ULID, also the Nats-Msg-Id
	Type        Type   `msgpack:"type" json:"type"` // one of the Type constants
	Version     uint64 `msgpack:"v" json:"v"`       // schema version; uint64 so that no wire value wraps
	Root        string `msgpack:"root" json:"root"` // root fingerprint, 64 lowercase hex digits
	Path        string `msgpack:"path" json:"path"` // agent path; "" for the root itself
	Time        int64  `msgpack:"time" json:"time"` // Unix nanoseconds, set by the writer
	Actor       string `msgpack:"actor" json:"actor"`
	OnBehalfOf  string `msgpack:"obo,omitempty" json:"obo,omitempty"` // a claim, never checked: see above
	Correlation string `msgpack:"corr" json:"corr"`
	// Prev is the hex SHA-256 of the previous applied event of the same agent
	// (same subject), "" for the agent's first event.
	Prev string `msgpack:"prev" json:"prev"`
	// Data is the type-specific body; exactly one of the pointers is set,
	// matching Type.
	Registered *RootData     `msgpack:"registered,omitempty" json:"registered,omitempty"`
	Created    *CreatedData  `msgpack:"created,omitempty" json:"created,omitempty"`
	Granted    *GrantedData  `msgpack:"granted,omitempty" json:"granted,omitempty"`
	Revoked    *RevokedData  `msgpack:"revoked,omitempty" json:"revoked,omitempty"`
	Task       *TaskData     `msgpack:"task,omitempty" json:"task,omitempty"`
	Retired    *RetiredData  `msgpack:"retired,omitempty" json:"retired,omitempty"`
	Migration  *MigratedData `msgpack:"migrated,omitempty" json:"migrated,omitempty"`
	// Signer is the nkey public key of the writer that signed the event and
	// Sig its ed25519 signature (base64url, unpadded) over the event's
	// encoding without Sig. Both empty: unsigned. See EncodeSigned.
	Signer string `msgpack:"signer,omitempty" json:"signer,omitempty"`
	Sig    string `msgpack:"sig,omitempty" json:"sig,omitempty"`
}

// RootData is the body of RootRegistered: the root's whole definition.
type RootData struct {
	Def RootDef `msgpack:"def" json:"def"`
}

// CreatedData is the body of AgentCreated. Since schema version 2 it carries
// the agent's initial grants and tasks, so that a creation is one event that
// is applied whole or not at all; a version 1 create has neither (Validate
// refuses one that does).
type CreatedData struct {
	Primer       string       `msgpack:"primer" json:"primer"`
	Capabilities []Capability `msgpack:"caps,omitempty" json:"caps,omitempty"`   // since v2
	Tasks        []TaskDef    `msgpack:"tasks,omitempty" json:"tasks,omitempty"` // since v2
}

// GrantedData is the body of CapabilityGranted.
//
// Replace (version 3 on) says the grant replaces whatever grant of the same
// capability the agent holds (none is fine): a version 3 grant without it on
// a capability the agent holds is refused (ErrExists). Version 1 and 2
// grants replace silently, as they always did.
type GrantedData struct {
	Capability Capability `msgpack:"cap" json:"cap"`
	Replace    bool       `msgpack:"replace,omitempty" json:"replace,omitempty"` // since v3
}

// RevokedData is the body of CapabilityRevoked.
//
// Without Members the whole capability is taken from the agent and every
// descendant. With Members (version 3 on; literal member names, each a
// symbol as a capability name is, at most MaxPatterns) only those members
// are: they are added to the Exclude of the agent's grant and of the grant
// of every descendant holding the capability, so a later grant to an
// ancestor, however wide, gives none of them back below it.
type RevokedData struct {
	Kind    Kind     `msgpack:"kind" json:"kind"`
	Name    string   `msgpack:"name" json:"name"`
	Members []string `msgpack:"members,omitempty" json:"members,omitempty"` // since v3
}

// Validate checks a revocation's body: the capability's kind and name, and
// each member a symbol (no patterns), at most MaxPatterns of them, none
// twice.
func (r RevokedData) Validate() error {
	if err := (Capability{Kind: r.Kind, Name: r.Name}).Validate(); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if len(r.Members) > MaxPatterns {
		return tooLarge(fmt.Sprintf("the member list of revoke %s %q", r.Kind, r.Name), len(r.Members), MaxPatterns, "members")
	}
	seen := make(map[string]bool, len(r.Members))
	for _, m := range r.Members {
		if err := validateSymbol(m); err != nil {
			return fmt.Errorf("revoke %s %q: member: %w", r.Kind, r.Name, err)
		}
		if seen[m] {
			return fmt.Errorf("revoke %s %q: member %q appears twice", r.Kind, r.Name, m)
		}
		seen[m] = true
	}
	return nil
}

// TaskData is the body of TaskDefined.
type TaskData struct {
	Task TaskDef `msgpack:"task" json:"task"`
}

// RetiredData is the body of AgentRetired.
type RetiredData struct {
	Reason string `msgpack:"reason" json:"reason"`
}

// MigratedData is the body of RootMigrated.
type MigratedData struct {
	To     string `msgpack:"to" json:"to"` // fingerprint of the new root definition
	Reason string `msgpack:"reason" json:"reason"`
	// Def is the new root's definition (schema version 2 on): it must hash
	// to To and keep the old root's name, or the migration is refused.
	Def *RootDef `msgpack:"def,omitempty" json:"def,omitempty"`
}

// Hash returns the hex SHA-256 of an event's encoded bytes: the value the
// next event of the same agent carries in Prev.
func Hash(encoded []byte) string {
	sum := sha256.Sum256(encoded)
	return hex.EncodeToString(sum[:])
}

// Validate checks the envelope and that the body matches the type. It does
// not check invariants that need the registry (that is the projector's job).
func (e *Event) Validate() error {
	if e.ID == "" {
		return fmt.Errorf("%w: event has no id", ErrMalformed)
	}
	if e.Version == 0 {
		return fmt.Errorf("%w: event %s has no schema version", ErrMalformed, e.ID)
	}
	if e.Version > SchemaVersion {
		return fmt.Errorf("event %s: version %d, this code knows up to %d: %w; upgrade the reader",
			e.ID, e.Version, SchemaVersion, ErrFutureVersion)
	}
	if !e.Type.Known() {
		return fmt.Errorf("event %s: type %q: %w", e.ID, e.Type, ErrUnknownType)
	}
	if err := ValidateFingerprint(e.Root); err != nil {
		return fmt.Errorf("event %s: %w", e.ID, err)
	}
	if e.Path != "" {
		if err := ValidatePath(e.Path); err != nil {
			return fmt.Errorf("event %s: %w", e.ID, err)
		}
	}
	n := 0
	for _, set := range []bool{e.Registered != nil, e.Created != nil, e.Granted != nil, e.Revoked != nil,
		e.Task != nil, e.Retired != nil, e.Migration != nil} {
		if set {
			n++
		}
	}
	var ok bool
	switch e.Type {
	case RootRegistered:
		ok = e.Registered != nil && e.Path == ""
	case RootMigrated:
		ok = e.Migration != nil && e.Path == ""
	case AgentCreated:
		ok = e.Created != nil && e.Path != ""
		if ok && e.Version < 2 && (len(e.Created.Capabilities) > 0 || len(e.Created.Tasks) > 0) {
			// The keys did not exist in version 1: such bytes come from no
			// version 1 writer, and applying them without their grants is
			// the partial creation version 2 exists to prevent.
			return fmt.Errorf("%w: event %s: a version %d AgentCreated carries capabilities or tasks (since version 2 only)",
				ErrMalformed, e.ID, e.Version)
		}
	case CapabilityRevoked:
		ok = e.Revoked != nil && e.Path != ""
		if ok && e.Version < 3 && len(e.Revoked.Members) > 0 {
			return fmt.Errorf("%w: event %s: a version %d CapabilityRevoked carries members (since version 3 only)",
				ErrMalformed, e.ID, e.Version)
		}
	case CapabilityGranted:
		ok = e.Granted != nil && e.Path != ""
		if ok && e.Version < 3 && e.Granted.Replace {
			return fmt.Errorf("%w: event %s: a version %d CapabilityGranted carries replace (since version 3 only)",
				ErrMalformed, e.ID, e.Version)
		}
	case TaskDefined:
		ok = e.Task != nil && e.Path != ""
	case AgentRetired:
		ok = e.Retired != nil && e.Path != ""
	}
	if !ok || n != 1 {
		return fmt.Errorf("%w: event %s of type %s at path %q has a body that does not match its type",
			ErrMalformed, e.ID, e.Type, e.Path)
	}
	if e.Version < 3 {
		if name, ok := e.jsonSchemaTask(); ok {
			// No writer of an earlier version wrote these keys: a reader of
			// that version would skip them and see a task without schemas.
			return fmt.Errorf("%w: event %s: a version %d event defines task %q with JSON Schema (since version 3 only)",
				ErrMalformed, e.ID, e.Version, name)
		}
	} else {
		for _, t := range e.tasks() {
			if err := t.CheckUTF8(); err != nil {
				return fmt.Errorf("event %s: %w", e.ID, err)
			}
		}
	}
	return nil
}

// tasks returns the task definitions the event's body carries.
func (e *Event) tasks() []TaskDef {
	switch {
	case e.Task != nil:
		return []TaskDef{e.Task.Task}
	case e.Created != nil:
		return e.Created.Tasks
	case e.Registered != nil:
		return e.Registered.Def.Tasks
	case e.Migration != nil && e.Migration.Def != nil:
		return e.Migration.Def.Tasks
	}
	return nil
}

// jsonSchemaTask returns the name of the first task definition in the
// event's body that carries JSON Schema.
func (e *Event) jsonSchemaTask() (string, bool) {
	for _, t := range e.tasks() {
		if t.HasJSONSchema() {
			return t.Name, true
		}
	}
	return "", false
}
