package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/oklog/ulid/v2"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// How a write works.
//
// Every write is one event on the written agent's own subject (creation
// too: AgentCreated carries the new agent's grants and tasks). Under the
// root's lock in this process the runtime folds what the follower has
// queued (no request), checks the event against the registry (the same
// Check the fold applies; a refusal is confirmed against the stream's last
// sequence before it is reported), and appends it with the agent subject's last
// sequence as JetStream's expected last subject sequence: one round trip.
// When the append finds the subject moved on (this process was behind),
// the runtime asks for the stream's last sequence, waits until the
// follower has handed it everything up to there, checks again and
// retries. The write then folds its own event (at once when the registry
// is complete up to the sequence before it, else when the follower hands
// it over) and reports success only if the fold applied it.
//
// Only the agent's own subject is guarded by the server: JetStream checks
// one expected subject sequence per stored message, and a second message
// to guard the parent's subject would be a second stored event. A change
// to the parent (a revoke, a retirement) landing between the check and the
// append is caught by the fold, which checks every event against the
// registry as it stands in stream order: the write is stored but not
// applied, and reported as ErrConflict together with the reason
// (ErrEscalation, ErrRetired). Effective capabilities are also intersected
// along the chain at resolve time.

// Receipt is what a write reached: the stream sequence of its event.
// Passing Seq to WithMinSeq makes a read through any process see the
// write.
type Receipt struct {
	Seq uint64
	// Replayed: the write was stored before (a retry with the same
	// idempotency key, or whose first attempt's reply was lost); Seq is
	// the original's.
	Replayed bool
}

// maxWriteAttempts bounds the catch-up-and-retry loop of one write.
const maxWriteAttempts = 5

// write appends e (Type, Path and body set) after check accepts it
// against the registry. It fills the envelope (id, version, root, time,
// actor, correlation, previous hash) and returns the receipt once the
// event is folded in this process.
func (rt *Runtime) write(ctx context.Context, e *events.Event, check func(*projector.Registry) error) (Receipt, error) {
	root := e.Root
	if err := rt.canSign(); err != nil {
		return Receipt{}, err
	}
	key := idempotencyKey(ctx)
	if key != "" {
		e.ID = keyedID(root, e.Path, e.Type, key)
	} else {
		e.ID = ulid.Make().String()
	}
	subject := events.Subject(rt.prefix, root, e.Path)
	ctx, err := rt.awaitMin(ctx)
	if err != nil {
		return Receipt{}, err
	}
	st := rt.lockState(root)
	defer st.mu.Unlock()
	if rt.cfg.noFollow {
		defer rt.forgetUnloaded(root, st)
		return rt.writeChain(ctx, e, check, key != "")
	}
	if err := rt.current(ctx, root, st); err != nil {
		return Receipt{}, err
	}
	if key != "" {
		// A retry of a write that was stored (however long ago, whatever
		// came after it) returns the original outcome.
		seq, ok, err := rt.log.StoredID(ctx, subject, e.ID)
		if err != nil {
			return Receipt{}, err
		}
		if ok {
			return rt.outcome(ctx, st, e, seq, true, check)
		}
	}
	e.Version, e.Time = events.SchemaVersion, rt.cfg.now().UnixNano()
	e.Actor, e.Correlation = ActorFrom(ctx, rt.cfg.actor), correlationFrom(ctx)
	e.OnBehalfOf = OnBehalfOfFrom(ctx)
	refreshed := false // caught up to the stream's last sequence in this write
	latest := func() error {
		refreshed = true
		last, err := rt.log.LastStreamSeq(ctx)
		if err != nil {
			return err
		}
		return rt.catchUpTo(ctx, st, last)
	}
	for attempt := 1; ; attempt++ {
		if err := check(st.reg); err != nil {
			// A refusal is reported only against the newest state: another
			// process may have written what the check missed (the parent
			// created, the capability granted) an instant ago.
			if refreshed {
				return Receipt{}, err
			}
			if lerr := latest(); lerr != nil {
				return Receipt{}, errors.Join(err, lerr)
			}
			if err := check(st.reg); err != nil {
				return Receipt{}, err
			}
		}
		e.Prev = st.reg.LastHash(e.Path)
		data, err := rt.encode(e)
		if err != nil {
			return Receipt{}, err
		}
		expect := st.reg.SubjectSeq[e.Path]
		a, err := rt.log.AppendEvent(ctx, events.Message{Subject: subject, Data: data, ID: e.ID, Type: e.Type, ExpectSeq: &expect})
		seq := a.Seq
		if errors.Is(err, events.ErrConflict) && attempt < maxWriteAttempts {
			// Behind: catch up to what the stream holds now and check again.
			if lerr := latest(); lerr != nil {
				return Receipt{}, errors.Join(err, lerr)
			}
			continue
		}
		if err != nil {
			return Receipt{}, err
		}
		if a.Duplicate {
			// Stored before (by an earlier attempt or by another process
			// with the same key): the stored bytes, not these, are what the
			// follower hands over and what the fold judged.
			return rt.outcome(ctx, st, e, seq, true, check)
		}
		// The event is next in stream order for this root's registry when
		// the registry is complete up to the sequence before it: fold it at
		// once. Otherwise the follower hands it over with what precedes it.
		if st.at == seq-1 {
			st.reg.Apply(events.Record{Seq: seq, Subject: subject, Data: data})
			st.at = seq
		}
		return rt.outcome(ctx, st, e, seq, false, check)
	}
}

// writeChain is write for a runtime that does not follow the log: the
// agent's ancestor chain is read (literal subjects), the event checked
// and appended with the agent subject's last sequence, and the chain read
// again, up to the append's sequence, to confirm the fold applied it.
// The root's lock (held by the caller) serialises this process's writes.
func (rt *Runtime) writeChain(ctx context.Context, e *events.Event, check func(*projector.Registry) error, keyed bool) (Receipt, error) {
	subject := events.Subject(rt.prefix, e.Root, e.Path)
	e.Version, e.Time = events.SchemaVersion, rt.cfg.now().UnixNano()
	e.Actor, e.Correlation = ActorFrom(ctx, rt.cfg.actor), correlationFrom(ctx)
	e.OnBehalfOf = OnBehalfOfFrom(ctx)
	minSeq := minSeqOf(ctx)
	latest := func() error { // what the stream holds now: after a conflict or a refusal
		last, err := rt.log.LastStreamSeq(ctx)
		minSeq = max(minSeq, last)
		return err
	}
	refreshed := false
	for attempt := 1; ; attempt++ {
		reg, ids, err := rt.readChain(ctx, e.Root, e.Path, minSeq)
		if err != nil {
			return Receipt{}, err
		}
		if seq, ok := ids[e.ID]; ok && keyed {
			return chainOutcome(reg, e, seq, true, check)
		}
		if err := check(reg); err != nil {
			// A refusal is reported only against the newest state.
			if refreshed {
				return Receipt{}, err
			}
			refreshed = true
			if lerr := latest(); lerr != nil {
				return Receipt{}, errors.Join(err, lerr)
			}
			continue
		}
		e.Prev = reg.LastHash(e.Path)
		data, err := rt.encode(e)
		if err != nil {
			return Receipt{}, err
		}
		expect := reg.SubjectSeq[e.Path]
		a, err := rt.log.AppendEvent(ctx, events.Message{Subject: subject, Data: data, ID: e.ID, Type: e.Type, ExpectSeq: &expect})
		if errors.Is(err, events.ErrConflict) && attempt < maxWriteAttempts {
			if lerr := latest(); lerr != nil { // the chain moved on: read it again
				return Receipt{}, errors.Join(err, lerr)
			}
			continue
		}
		if err != nil {
			return Receipt{}, err
		}
		after, _, err := rt.readChain(ctx, e.Root, e.Path, a.Seq)
		if err != nil {
			return Receipt{Seq: a.Seq}, fmt.Errorf("stored at seq %d, then reading it back failed (the write stands; read with WithMinSeq(ctx, %d) before retrying it): %w", a.Seq, a.Seq, err)
		}
		return chainOutcome(after, e, a.Seq, a.Duplicate, check)
	}
}

// chainOutcome reports whether a chain registry applied the event stored
// at seq.
func chainOutcome(reg *projector.Registry, e *events.Event, seq uint64, replayed bool, check func(*projector.Registry) error) (Receipt, error) {
	rc := Receipt{Seq: seq, Replayed: replayed}
	for _, v := range reg.Violations {
		if v.EventID == e.ID && v.Seq == seq {
			return rc, notApplied(v, reg, check)
		}
	}
	return rc, nil
}

// notApplied is the error of a write stored at v.Seq that the fold refused
// (v): ErrConflict joined with the refusal's sentinel, or, when checking
// the write again against the registry as it now stands finds the same
// refusal with its facts (*EscalationError, *RetiredError), with that.
func notApplied(v projector.Violation, reg *projector.Registry, check func(*projector.Registry) error) error {
	reason := notAppliedErr(v.Code)
	if err := check(reg); err != nil && reason != ErrConflict && errors.Is(err, reason) {
		var esc *EscalationError
		var ret *RetiredError
		switch {
		case errors.As(err, &esc):
			reason = esc
		case errors.As(err, &ret):
			reason = ret
		}
	}
	return fmt.Errorf("%s %s stored at seq %d but not applied: the registry changed after it was checked: %s: %w",
		v.Type, v.EventID, v.Seq, v.Reason, errors.Join(ErrConflict, reason))
}

// encode encodes an event, signed when the runtime has a signing key.
func (rt *Runtime) encode(e *events.Event) ([]byte, error) {
	if rt.cfg.signer != nil {
		return events.EncodeSigned(e, rt.cfg.signer)
	}
	return events.Encode(e)
}

// outcome folds the registry up to seq, the sequence of the write's event,
// and reports whether the fold applied it. st.mu must be held.
func (rt *Runtime) outcome(ctx context.Context, st *rootState, e *events.Event, seq uint64, replayed bool, check func(*projector.Registry) error) (Receipt, error) {
	rc := Receipt{Seq: seq, Replayed: replayed}
	if err := rt.catchUpTo(ctx, st, seq); err != nil {
		return rc, fmt.Errorf("stored at seq %d, then folding it failed (the write stands; read with WithMinSeq(ctx, %d) before retrying it): %w", seq, seq, err)
	}
	// A refused event leaves a violation carrying its id; recent ones are
	// at the end.
	for i := len(st.reg.Violations) - 1; i >= 0; i-- {
		v := st.reg.Violations[i]
		if v.Seq < seq && !replayed {
			break
		}
		if v.EventID == e.ID && v.Seq == seq {
			return rc, notApplied(v, st.reg, check)
		}
	}
	return rc, nil
}

// canSign refuses a write the runtime's own trust policy would refuse:
// under WithTrustedSigners its events must be signed by a trusted key.
func (rt *Runtime) canSign() error {
	if rt.cfg.trust == nil {
		return nil
	}
	if rt.cfg.signer == nil {
		return fmt.Errorf("this runtime trusts only signed events (WithTrustedSigners) and signs none: open it WithSigningSeed: %w", events.ErrUnsigned)
	}
	pub, err := rt.cfg.signer.PublicKey()
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	for _, k := range rt.cfg.trust.Signers() {
		if k == pub {
			return nil
		}
	}
	return fmt.Errorf("this runtime signs with %s, which its trust policy does not hold: %w", pub, events.ErrUntrustedSigner)
}

// notAppliedErr is the sentinel for a violation code of the runtime's own write.
func notAppliedErr(code string) error {
	switch code {
	case projector.CodeUnsigned:
		return events.ErrUnsigned
	case projector.CodeBadSignature:
		return events.ErrBadSignature
	case projector.CodeUntrusted:
		return events.ErrUntrustedSigner
	case projector.CodeReplayed:
		return events.ErrReplayed
	case projector.CodeEscalation:
		return ErrEscalation
	case projector.CodeRetired:
		return ErrRetired
	case projector.CodeExists:
		return ErrExists
	case projector.CodeMigrated:
		return ErrMigrated
	case projector.CodeUnknown:
		return ErrNotFound
	}
	return ErrConflict
}

// Spec describes a dynamic agent to create.
type Spec struct {
	Name         string              // the last path segment
	Primer       string              // the agent's instructions
	Capabilities []events.Capability // each must be held by the parent
	Tasks        []events.TaskDef
}

// Create creates a dynamic agent under parent (a root or a dynamic agent)
// with one AgentCreated event that carries its primer, grants and tasks:
// the fold applies it whole or refuses it whole. A grant beyond the
// parent's effective capabilities is refused before anything is written
// (ErrEscalation); a path that exists gives ErrExists, also when several
// writers race for it, but a retry with the same idempotency key
// (WithIdempotencyKey) of a create that was stored returns its receipt.
func (rt *Runtime) Create(ctx context.Context, parent AgentRef, spec Spec) (AgentRef, Receipt, error) {
	if err := events.ValidateSegment(spec.Name); err != nil {
		return AgentRef{}, Receipt{}, fmt.Errorf("create agent under %q: %w", parent.Path, err)
	}
	child := parent.Child(spec.Name)
	if err := events.ValidatePath(child.Path); err != nil {
		return AgentRef{}, Receipt{}, fmt.Errorf("create agent: %w", err)
	}
	if err := checkSizes(&events.CreatedData{Primer: spec.Primer, Capabilities: spec.Capabilities, Tasks: spec.Tasks}, child.Path); err != nil {
		return AgentRef{}, Receipt{}, fmt.Errorf("create agent %q: %w", child.Path, err)
	}
	if err := rt.checkRoot(ctx, string(parent.Root)); err != nil {
		return AgentRef{}, Receipt{}, fmt.Errorf("create agent %q: %w", child.Path, err)
	}
	caps := make([]events.Capability, 0, len(spec.Capabilities))
	seen := map[string]bool{}
	for _, c := range spec.Capabilities {
		if err := rt.cfg.catalog.check([]events.Capability{c}); err != nil {
			return AgentRef{}, Receipt{}, fmt.Errorf("create agent %q: %w", child.Path, err)
		}
		if seen[c.Key()] {
			return AgentRef{}, Receipt{}, fmt.Errorf("create agent %q: capability %s %q appears twice", child.Path, c.Kind, c.Name)
		}
		seen[c.Key()] = true
		caps = append(caps, c.Normalized())
	}
	for _, t := range spec.Tasks {
		if err := t.Validate(); err != nil {
			return AgentRef{}, Receipt{}, fmt.Errorf("create agent %q: %w", child.Path, err)
		}
	}
	e := &events.Event{Type: events.AgentCreated, Root: string(child.Root), Path: child.Path,
		Created: &events.CreatedData{Primer: spec.Primer, Capabilities: caps, Tasks: spec.Tasks}}
	rc, err := rt.write(ctx, e, func(reg *projector.Registry) error {
		// Name the refused capability before the general check does.
		for _, c := range caps {
			if err := reg.CheckGrant(child.Path, c); err != nil && !errors.Is(err, events.ErrNotFound) {
				return err
			}
		}
		return reg.Check(probe(e))
	})
	if err != nil {
		return AgentRef{}, rc, fmt.Errorf("create agent %q: %w", child.Path, err)
	}
	return child, rc, nil
}

// checkSizes refuses a creation over the size limits (events.ErrTooLarge)
// before anything is read or written: the primer, the counts, and each
// capability's patterns and task's doc and schemas.
func checkSizes(c *events.CreatedData, path string) error {
	if err := c.CheckLimits(path); err != nil {
		return err
	}
	for _, cp := range c.Capabilities {
		if err := cp.Validate(); errors.Is(err, events.ErrTooLarge) {
			return err
		}
	}
	for _, t := range c.Tasks {
		if err := t.Validate(); errors.Is(err, events.ErrTooLarge) {
			return err
		}
	}
	return nil
}

// probe returns a copy of e with what Check requires of an envelope that
// write fills only after the check.
func probe(e *events.Event) *events.Event {
	p := *e
	if p.ID == "" {
		p.ID = "check"
	}
	p.Version = events.SchemaVersion
	return &p
}

// GrantOption changes what Grant writes.
type GrantOption func(*events.GrantedData)

// Replace makes a Grant replace the agent's grant of the same capability,
// if it holds one (wider or narrower: the new grant is the agent's whole
// grant, checked against the parent like any grant). Members revoked from
// the old grant (RevokeMembers) are not kept; descendants' grants are not
// touched, so what was revoked below the agent stays revoked there.
func Replace() GrantOption { return func(g *events.GrantedData) { g.Replace = true } }

// Grant gives an agent a capability its parent effectively holds. A grant
// of a capability the agent holds already is refused (ErrExists) unless
// the Replace option says to replace it.
func (rt *Runtime) Grant(ctx context.Context, a AgentRef, c events.Capability, opts ...GrantOption) (Receipt, error) {
	if err := c.Validate(); errors.Is(err, events.ErrTooLarge) {
		return Receipt{}, fmt.Errorf("grant to %q: %w", a.Path, err)
	}
	if err := rt.checkAgentRef(ctx, a); err != nil {
		return Receipt{}, err
	}
	if err := rt.cfg.catalog.check([]events.Capability{c}); err != nil {
		return Receipt{}, fmt.Errorf("grant to %q: %w", a.Path, err)
	}
	g := &events.GrantedData{Capability: c.Normalized()}
	for _, o := range opts {
		o(g)
	}
	what := "grant"
	if g.Replace {
		what = "replace"
	}
	return rt.single(ctx, a, fmt.Sprintf("%s %s %q to %q", what, c.Kind, c.Name, a.Path),
		&events.Event{Type: events.CapabilityGranted, Path: a.Path, Granted: g})
}

// Revoke takes a capability from an agent and from all its descendants.
func (rt *Runtime) Revoke(ctx context.Context, a AgentRef, kind events.Kind, name string) (Receipt, error) {
	if err := rt.checkAgentRef(ctx, a); err != nil {
		return Receipt{}, err
	}
	return rt.single(ctx, a, fmt.Sprintf("revoke %s %q from %q", kind, name, a.Path),
		&events.Event{Type: events.CapabilityRevoked, Path: a.Path, Revoked: &events.RevokedData{Kind: kind, Name: name}})
}

// RevokeMembers takes members (literal names, at least one) of a
// capability from an agent and from every descendant holding the
// capability: each is added to the Exclude of those grants. A later grant
// to an ancestor, however wide, gives none of them back below it; only a
// grant replacing an agent's own grant (Replace) does, for that agent. The
// agent must hold the capability (ErrNotFound).
func (rt *Runtime) RevokeMembers(ctx context.Context, a AgentRef, kind events.Kind, name string, members ...string) (Receipt, error) {
	what := fmt.Sprintf("revoke members of %s %q from %q", kind, name, a.Path)
	rv := &events.RevokedData{Kind: kind, Name: name, Members: slices.Sorted(slices.Values(members))}
	if len(members) == 0 {
		return Receipt{}, fmt.Errorf("%s: no members named (Revoke takes the whole capability): %w", what, events.ErrMalformed)
	}
	if err := rv.Validate(); errors.Is(err, events.ErrTooLarge) {
		return Receipt{}, fmt.Errorf("%s: %w", what, err)
	} else if err != nil {
		return Receipt{}, fmt.Errorf("%s: %w: %w", what, events.ErrMalformed, err)
	}
	if err := rt.checkAgentRef(ctx, a); err != nil {
		return Receipt{}, err
	}
	return rt.single(ctx, a, what, &events.Event{Type: events.CapabilityRevoked, Path: a.Path, Revoked: rv})
}

// DefineTask defines (or redefines) a task on an agent and returns its ref.
func (rt *Runtime) DefineTask(ctx context.Context, a AgentRef, t events.TaskDef) (TaskRef, Receipt, error) {
	if err := t.Validate(); errors.Is(err, events.ErrTooLarge) {
		return TaskRef{}, Receipt{}, fmt.Errorf("define task %q on %q: %w", t.Name, a.Path, err)
	}
	if err := rt.checkAgentRef(ctx, a); err != nil {
		return TaskRef{}, Receipt{}, err
	}
	rc, err := rt.single(ctx, a, fmt.Sprintf("define task %q on %q", t.Name, a.Path),
		&events.Event{Type: events.TaskDefined, Path: a.Path, Task: &events.TaskData{Task: t}})
	if err != nil {
		return TaskRef{}, rc, err
	}
	return TaskRef{Root: a.Root, Path: a.Path, Task: t.Name}, rc, nil
}

// Retire retires an agent and all its descendants.
func (rt *Runtime) Retire(ctx context.Context, a AgentRef, reason string) (Receipt, error) {
	if err := rt.checkAgentRef(ctx, a); err != nil {
		return Receipt{}, err
	}
	return rt.single(ctx, a, fmt.Sprintf("retire %q", a.Path),
		&events.Event{Type: events.AgentRetired, Path: a.Path, Retired: &events.RetiredData{Reason: reason}})
}

// MigrateRoot records that task refs made under the root definition with
// fingerprint from resolve, from now on, through the root registered in
// this process with fingerprint to. The old root's agents keep their
// recipes; their capabilities are intersected with the new root's. The old
// root takes no further writes.
func (rt *Runtime) MigrateRoot(ctx context.Context, from, to RootID, reason string) (Receipt, error) {
	if err := from.Validate(); err != nil {
		return Receipt{}, fmt.Errorf("migrate root: from: %w", err)
	}
	if err := rt.checkRoot(ctx, string(to)); err != nil {
		return Receipt{}, fmt.Errorf("migrate root %.12s: to: %w", from, err)
	}
	// A migration carries refs to a new release of the same root: the
	// target must have the old root's name (resolution refuses to follow
	// one that does not).
	target, _ := rt.RootDef(to)
	if old, ok, err := rt.recordedDef(ctx, string(from)); err != nil {
		return Receipt{}, fmt.Errorf("migrate root %.12s: %w", from, err)
	} else if ok && old.Name != target.Name {
		return Receipt{}, fmt.Errorf("migrate root %q (%.12s) to %.12s: the target is root %q; a migration keeps the root's name: %w",
			old.Name, from, to, target.Name, events.ErrMalformed)
	}
	return rt.single(ctx, AgentRef{Root: from}, fmt.Sprintf("migrate root %.12s to %.12s", from, to),
		&events.Event{Type: events.RootMigrated, Migration: &events.MigratedData{To: string(to), Reason: reason, Def: &target}})
}

func (rt *Runtime) single(ctx context.Context, a AgentRef, what string, e *events.Event) (Receipt, error) {
	e.Root = string(a.Root)
	rc, err := rt.write(ctx, e, func(reg *projector.Registry) error { return reg.Check(probe(e)) })
	if err != nil {
		return rc, fmt.Errorf("%s: %w", what, err)
	}
	return rc, nil
}
