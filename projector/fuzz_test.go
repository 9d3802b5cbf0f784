package projector_test

import (
	"testing"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// fuzzPaths are the subjects FuzzApply publishes on, chosen by the fuzzer.
var fuzzPaths = []string{"", "a", "a/b", "c"}

// fuzzSetup folds a registered root with agents a (holding math sin, cos,
// pi) and a/b (holding math sin).
func fuzzSetup(t testing.TB) *fold {
	f := newFold(t)
	ok(t, f.register())
	ok(t, f.create("a", ""))
	ok(t, f.grant("a", mathCap([]string{"sin", "cos", "pi"}, nil)))
	ok(t, f.create("a/b", ""))
	ok(t, f.grant("a/b", mathCap([]string{"sin"}, nil)))
	return f
}

// FuzzApply publishes arbitrary bytes on one of a root's subjects after a
// valid history. Apply must not panic, must either record exactly one
// violation with a known code or apply the event, and the registry must
// keep its invariants and survive Marshal/Unmarshal.
func FuzzApply(f *testing.F) {
	// Seeds: valid next events (their Prev matches the setup), and junk.
	s := fuzzSetup(f)
	seed := func(e *events.Event, code string) {
		// The seed does what it is meant to on a fresh setup.
		got := fuzzSetup(f).apply(e)
		if code == "" && got != nil || code != "" && (got == nil || got.Code != code) {
			f.Fatalf("seed %s on %q: got %+v, want code %q", e.Type, e.Path, got, code)
		}
		for i, p := range fuzzPaths {
			if p == e.Path {
				f.Add(s.encode(e), uint8(i))
			}
		}
	}
	e := s.event(events.TaskDefined, "a")
	e.Task = &events.TaskData{Task: simpleTask("solve")}
	seed(e, "")
	e = s.event(events.CapabilityGranted, "a/b")
	e.Granted = &events.GrantedData{Capability: mathCap([]string{"tan"}, nil)}
	seed(e, projector.CodeEscalation)
	e = s.event(events.CapabilityGranted, "a/b")
	e.Granted = &events.GrantedData{Capability: mathCap([]string{"s*"}, []string{"sinh"})}
	seed(e, projector.CodeEscalation) // a pattern under a literal list
	e = s.event(events.CapabilityRevoked, "a")
	e.Revoked = &events.RevokedData{Kind: events.KindModule, Name: "math"}
	seed(e, "")
	e = s.event(events.AgentRetired, "a")
	e.Retired = &events.RetiredData{Reason: "fuzz"}
	seed(e, "")
	e = s.event(events.AgentCreated, "c")
	e.Created = &events.CreatedData{Primer: "p"}
	seed(e, "")
	e = s.event(events.AgentCreated, "c")
	e.Created = &events.CreatedData{Primer: "p", Capabilities: []events.Capability{mathCap([]string{"sin"}, nil)},
		Tasks: []events.TaskDef{simpleTask("solve")}}
	seed(e, "")
	e = s.event(events.AgentCreated, "c")
	e.Created = &events.CreatedData{Capabilities: []events.Capability{{Kind: events.KindType, Name: "Matrix"}}}
	seed(e, projector.CodeEscalation)
	e = s.event(events.RootMigrated, "")
	next, to := s.nextRelease("next")
	e.Migration = &events.MigratedData{To: to, Def: &next}
	seed(e, "")
	f.Add([]byte{}, uint8(1))
	f.Add([]byte("junk"), uint8(2))
	f.Add([]byte{0x80}, uint8(0))

	f.Fuzz(func(t *testing.T, data []byte, target uint8) {
		// Replay the setup's records rather than build them again.
		fl := &fold{t: t, def: s.def, root: s.root, reg: projector.New(s.root), seq: s.seq}
		for _, rec := range s.records {
			fl.reg.Apply(rec)
		}
		if len(fl.reg.Violations) != 0 {
			t.Fatalf("setup replay: %+v", fl.reg.Violations)
		}
		path := fuzzPaths[int(target)%len(fuzzPaths)]
		before := len(fl.reg.Violations)
		v := fl.publish(fl.subject(path), data) // checks Seq, Count and at most one violation
		switch {
		case v != nil:
			if v.Code == "" || v.Code == projector.CodeOther || v.Reason == "" {
				t.Fatalf("violation without a known code: %+v", *v)
			}
		default:
			if len(fl.reg.Violations) != before {
				t.Fatal("applied and recorded a violation")
			}
			e, err := events.Decode(data)
			if err != nil {
				t.Fatalf("applied bytes that do not decode: %v", err)
			}
			if e.Path != path {
				t.Fatalf("applied an event for %q published on %q", e.Path, path)
			}
			if got := fl.reg.LastHash(path); got != events.Hash(data) {
				t.Fatalf("applied, but the chain head of %q is %s", path, got)
			}
		}
		checkInvariants(t, fl.reg)

		b, err := fl.reg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		back, err := projector.Unmarshal(b)
		if err != nil {
			t.Fatalf("Unmarshal of Marshal: %v", err)
		}
		h1, err1 := fl.reg.StateHash()
		h2, err2 := back.StateHash()
		if err1 != nil || err2 != nil || h1 != h2 {
			t.Fatalf("state hash changed through Marshal/Unmarshal: %s %s (%v %v)", h1, h2, err1, err2)
		}
	})
}

// checkInvariants checks what the fold promises whatever the stream holds.
func checkInvariants(t *testing.T, r *projector.Registry) {
	t.Helper()
	members := []string{"sin", "cos", "tan", "pi", "sinh", "_x", ""}
	for _, p := range r.Paths() {
		a := r.Agents[p]
		if a.Path != p {
			t.Fatalf("agent at %q says it is %q", p, a.Path)
		}
		if err := events.ValidatePath(p); err != nil {
			t.Fatalf("agent at an invalid path: %v", err)
		}
		parent := events.Parent(p)
		if parent != "" {
			pa := r.Agents[parent]
			if pa == nil {
				t.Fatalf("agent %q has no parent", p)
			}
			if pa.Retired && !a.Retired {
				t.Fatalf("agent %q is live under retired %q", p, parent)
			}
		}
		own, err := r.Effective(p)
		if err != nil {
			t.Fatal(err)
		}
		up, err := r.Effective(parent)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range own {
			var pe *projector.Effective
			for i := range up {
				if up[i].Capability.Key() == e.Capability.Key() {
					pe = &up[i]
				}
			}
			if pe == nil {
				t.Fatalf("agent %q holds %s, its parent does not", p, e.Capability.Key())
			}
			for _, m := range members {
				if e.Allows(m) && !pe.Allows(m) {
					t.Fatalf("agent %q may use %s.%s, its parent may not", p, e.Capability.Key(), m)
				}
			}
		}
	}
}
