package projector_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

const prefix = "agentreg"

// rootDef is the root every test folds under: the math module and the print
// function, both with the default patterns (all but _*).
func rootDef() events.RootDef {
	return events.RootDef{
		Name:   "architect",
		Primer: "You build specialists.",
		Capabilities: []events.Capability{
			{Kind: events.KindModule, Name: "math"},
			{Kind: events.KindFunc, Name: "print"},
		},
		Tasks: []events.TaskDef{{
			Name: "create_specialist",
			Input: events.Schema{Type: "object", Fields: []events.Field{
				{Name: "name", Schema: events.Schema{Type: "string"}, Required: true},
			}},
			Output: events.Schema{Type: "string"},
		}},
	}
}

// fold drives a registry the way the runtime does: it builds events with
// Prev taken from the registry at build time, encodes them, and applies
// them as records with increasing sequences.
type fold struct {
	t       testing.TB
	def     events.RootDef
	root    string
	reg     *projector.Registry
	seq     uint64
	records []events.Record
	version uint64 // schema version of the events built; 0: events.SchemaVersion
}

func newFold(t testing.TB) *fold {
	def := rootDef()
	root := def.Fingerprint()
	return &fold{t: t, def: def, root: root, reg: projector.New(root)}
}

// event returns an event of the given type at path with a fixed id and time
// derived from the next sequence, and Prev the agent's last hash.
func (f *fold) event(typ events.Type, path string) *events.Event {
	n := f.seq + 1
	version := f.version
	if version == 0 {
		version = events.SchemaVersion
	}
	return &events.Event{
		ID:          ulid.MustNew(1718000000000+n, bytes.NewReader(make([]byte, 16))).String(),
		Type:        typ,
		Version:     version,
		Root:        f.root,
		Path:        path,
		Time:        1718000000000000000 + int64(n),
		Actor:       "architect",
		Correlation: fmt.Sprintf("corr-%d", n),
		Prev:        f.reg.LastHash(path),
	}
}

func (f *fold) encode(e *events.Event) []byte {
	f.t.Helper()
	b, err := events.Encode(e)
	require.NoError(f.t, err)
	return b
}

// rawEncode encodes without validating, as a newer or hostile writer could.
func rawEncode(t testing.TB, e *events.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	require.NoError(t, enc.Encode(e))
	return buf.Bytes()
}

func (f *fold) subject(path string) string { return events.Subject(prefix, f.root, path) }

// publish applies one record and returns the violation it caused, nil if
// it was applied.
func (f *fold) publish(subject string, data []byte) *projector.Violation {
	f.t.Helper()
	f.seq++
	rec := events.Record{Seq: f.seq, Subject: subject, Data: data}
	f.records = append(f.records, rec)
	n, count := len(f.reg.Violations), f.reg.Count
	f.reg.Apply(rec)
	require.Equal(f.t, f.seq, f.reg.Seq, "Seq after Apply")
	require.Equal(f.t, count+1, f.reg.Count, "Count after Apply")
	switch len(f.reg.Violations) {
	case n:
		return nil
	case n + 1:
		v := f.reg.Violations[n]
		require.Equal(f.t, f.seq, v.Seq)
		require.Equal(f.t, subject, v.Subject)
		return &v
	}
	f.t.Fatalf("one Apply added %d violations", len(f.reg.Violations)-n)
	return nil
}

func (f *fold) apply(e *events.Event) *projector.Violation {
	f.t.Helper()
	return f.publish(f.subject(e.Path), f.encode(e))
}

func (f *fold) register() *projector.Violation {
	f.t.Helper()
	e := f.event(events.RootRegistered, "")
	e.Registered = &events.RootData{Def: f.def}
	return f.apply(e)
}

func (f *fold) create(path, primer string) *projector.Violation {
	f.t.Helper()
	e := f.event(events.AgentCreated, path)
	e.Created = &events.CreatedData{Primer: primer}
	return f.apply(e)
}

func (f *fold) grant(path string, c events.Capability) *projector.Violation {
	f.t.Helper()
	e := f.event(events.CapabilityGranted, path)
	e.Granted = &events.GrantedData{Capability: c}
	return f.apply(e)
}

// replace grants c to the agent at path, replacing its grant of c.
func (f *fold) replace(path string, c events.Capability) *projector.Violation {
	f.t.Helper()
	e := f.event(events.CapabilityGranted, path)
	e.Granted = &events.GrantedData{Capability: c, Replace: true}
	return f.apply(e)
}

// revokeMembers takes members of a capability from the agent at path and
// its descendants.
func (f *fold) revokeMembers(path string, kind events.Kind, name string, members ...string) *projector.Violation {
	f.t.Helper()
	e := f.event(events.CapabilityRevoked, path)
	e.Revoked = &events.RevokedData{Kind: kind, Name: name, Members: members}
	return f.apply(e)
}

func (f *fold) revoke(path string, kind events.Kind, name string) *projector.Violation {
	f.t.Helper()
	e := f.event(events.CapabilityRevoked, path)
	e.Revoked = &events.RevokedData{Kind: kind, Name: name}
	return f.apply(e)
}

func simpleTask(name string) events.TaskDef {
	return events.TaskDef{
		Name: name,
		Doc:  "Does " + name + ".",
		Input: events.Schema{Type: "object", Fields: []events.Field{
			{Name: "text", Schema: events.Schema{Type: "string"}, Required: true},
		}},
		Output: events.Schema{Type: "array", Items: &events.Schema{Type: "number"}},
	}
}

func (f *fold) task(path string, t events.TaskDef) *projector.Violation {
	f.t.Helper()
	e := f.event(events.TaskDefined, path)
	e.Task = &events.TaskData{Task: t}
	return f.apply(e)
}

func (f *fold) retire(path, reason string) *projector.Violation {
	f.t.Helper()
	e := f.event(events.AgentRetired, path)
	e.Retired = &events.RetiredData{Reason: reason}
	return f.apply(e)
}

func (f *fold) migrate(to string) *projector.Violation {
	f.t.Helper()
	e := f.event(events.RootMigrated, "")
	e.Migration = &events.MigratedData{To: to, Reason: "new definition"}
	return f.apply(e)
}

// nextRelease returns a new release of the fold's root definition (same
// name, another primer) and its fingerprint.
func (f *fold) nextRelease(primer string) (events.RootDef, string) {
	def := f.def
	def.Primer = primer
	return def, def.Fingerprint()
}

// migrateTo migrates to def, carrying it as version 2 requires.
func (f *fold) migrateTo(def events.RootDef, to string) *projector.Violation {
	f.t.Helper()
	e := f.event(events.RootMigrated, "")
	e.Migration = &events.MigratedData{To: to, Reason: "new definition", Def: &def}
	return f.apply(e)
}

// ok fails the test if v is a violation.
func ok(t testing.TB, v *projector.Violation) {
	t.Helper()
	if v != nil {
		t.Fatalf("not applied: %s: %s", v.Code, v.Reason)
	}
}

// violation fails the test unless v is a violation with the given code.
func violation(t testing.TB, v *projector.Violation, code string) *projector.Violation {
	t.Helper()
	if v == nil {
		t.Fatalf("applied, want a %q violation", code)
	}
	if v.Code != code {
		t.Fatalf("violation %q (%s), want %q", v.Code, v.Reason, code)
	}
	return v
}

func mathCap(include, exclude []string) events.Capability {
	return events.Capability{Kind: events.KindModule, Name: "math", Include: include, Exclude: exclude}
}

// effective returns the agent's effective capability with the given key.
func effective(t testing.TB, reg *projector.Registry, path, key string) (projector.Effective, bool) {
	t.Helper()
	eff, err := reg.Effective(path)
	require.NoError(t, err)
	for _, e := range eff {
		if e.Capability.Key() == key {
			return e, true
		}
	}
	return projector.Effective{}, false
}

func stateHash(t testing.TB, reg *projector.Registry) string {
	t.Helper()
	h, err := reg.StateHash()
	require.NoError(t, err)
	return h
}
