package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/snapshot"
)

// Errors callers test with errors.Is. The event-level ones are the events
// package's sentinels, re-exported so that embedding code needs one import.
var (
	ErrConflict          = events.ErrConflict
	ErrEscalation        = events.ErrEscalation
	ErrNotFound          = events.ErrNotFound
	ErrExists            = events.ErrExists
	ErrRetired           = events.ErrRetired
	ErrInvalidName       = events.ErrInvalidName
	ErrMigrated          = events.ErrMigrated
	ErrStoreLocked       = natsstore.ErrStoreLocked
	ErrFull              = natsstore.ErrFull // the stream's limits or the server's storage are reached
	ErrUnknownCapability = errors.New("capability not offered by this process")
	ErrRootNotRegistered = errors.New("root not registered in this process")
	ErrRootChanged       = errors.New("root definition changed")
	ErrInvalidArgs       = errors.New("invalid task arguments")
	ErrNoExecutor        = errors.New("no executor")
)

// Log is the event log the runtime needs. natsstore.Log implements it.
type Log interface {
	Append(ctx context.Context, msgs []events.Message) (uint64, error)
	ReadRoot(ctx context.Context, root string, from uint64, fn func(events.Record) error) (uint64, error)
	// ReadLiteral reads every message of a few literal subjects, in
	// stream order.
	ReadLiteral(ctx context.Context, subjects []string, fn func(events.Record) error) error
}

// Runtime is the handle services embed: it registers roots, writes dynamic
// agents' events and resolves task refs. It is safe for concurrent use;
// writes to one root are serialised in the process, and across processes
// by optimistic concurrency on each agent's subject.
type Runtime struct {
	cfg    config
	prefix string // subject prefix of the log
	log    Log
	snaps  snapshot.Store
	lg     *slog.Logger

	emb    *natsstore.Embedded
	closer func()
	bg     sync.WaitGroup // background snapshot stores

	mu    sync.Mutex
	tick  uint64                    // use counter for eviction
	roots map[string]events.RootDef // registered in code, by fingerprint
	state map[string]*rootState     // projected registries, by fingerprint
}

type rootState struct {
	mu       sync.Mutex
	reg      *projector.Registry
	snapAt   uint64           // reg.Count at the last snapshot taken or loaded
	resolved map[string]*Task // resolution cache, valid for reg.Seq == cachedAt
	cachedAt uint64
	restored *snapshot.Header // the snapshot the registry was first restored from
	snapTime time.Time        // of the newest snapshot taken or loaded
	used     atomic.Uint64    // rt.tick at the last use, for eviction
}

// Open starts a runtime. With no NATS URL it starts an embedded JetStream
// server with file storage in the data directory (default "agentreg-data");
// with WithNATSURL it connects to that server or cluster. If another process
// holds the embedded store, Open fails with ErrStoreLocked naming the URL
// that process serves.
//
// Options: WithNATSURL, WithDataDir, WithReplicas, WithStream, WithCatalog,
// WithExecutor, WithDefaultActor, WithSigningSeed, WithSnapshotEvery, WithMaxLoadedRoots, WithClock,
// WithLogger, WithLog.
func Open(ctx context.Context, opts ...Option) (*Runtime, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("agent.Open: %w", err)
		}
	}
	rt := &Runtime{cfg: cfg, lg: cfg.logger.With("component", "agent"),
		roots: map[string]events.RootDef{}, state: map[string]*rootState{}}
	rt.prefix = cfg.store.Prefix
	if cfg.log != nil {
		rt.log, rt.snaps, rt.closer = cfg.log, cfg.snaps, func() {}
		if p, ok := cfg.log.(interface{ Config() natsstore.Config }); ok {
			rt.prefix = p.Config().Prefix
		}
		return rt, nil
	}
	var closers []func()
	fail := func(err error) (*Runtime, error) {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		return nil, err
	}
	var err error
	if cfg.url == "" {
		rt.emb, err = natsstore.StartEmbedded(natsstore.EmbeddedOptions{Dir: cfg.dataDir})
		if err != nil {
			return nil, fmt.Errorf("agent.Open: %w", err)
		}
		closers = append(closers, func() { _ = rt.emb.Close() })
		nc, err := rt.emb.Connect()
		if err != nil {
			return fail(fmt.Errorf("agent.Open: %w", err))
		}
		closers = append(closers, nc.Close)
		l, err := natsstore.OpenLog(ctx, nc, cfg.store)
		if err != nil {
			return fail(fmt.Errorf("agent.Open: %w", err))
		}
		s, err := natsstore.OpenSnapshots(ctx, l)
		if err != nil {
			return fail(fmt.Errorf("agent.Open: %w", err))
		}
		rt.log, rt.snaps = l, s
	} else {
		nc, err := natsstore.Connect(cfg.url)
		if err != nil {
			return nil, fmt.Errorf("agent.Open: %w", err)
		}
		closers = append(closers, nc.Close)
		l, err := natsstore.OpenLog(ctx, nc, cfg.store)
		if err != nil {
			return fail(fmt.Errorf("agent.Open: %w", err))
		}
		s, err := natsstore.OpenSnapshots(ctx, l)
		if err != nil {
			return fail(fmt.Errorf("agent.Open: %w", err))
		}
		rt.log, rt.snaps = l, s
	}
	rt.closer = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	return rt, nil
}

// Close closes the connection and, if embedded, shuts the server down
// cleanly and releases the data directory.
func (rt *Runtime) Close() error {
	rt.bg.Wait() // snapshots being stored
	rt.closer()
	return nil
}

// URL returns the client URL of the embedded server ("" when connected to
// an external one).
func (rt *Runtime) URL() string {
	if rt.emb == nil {
		return ""
	}
	return rt.emb.URL()
}

// Catalog returns the runtime's catalog.
func (rt *Runtime) Catalog() *Catalog { return rt.cfg.catalog }

// RegisterRoot registers a root agent defined in code, under its
// fingerprint, and appends RootRegistered to the log unless the root is
// there already. Every capability of the root must be in the catalog.
func (rt *Runtime) RegisterRoot(ctx context.Context, def events.RootDef) (AgentRef, error) {
	if err := def.Validate(); err != nil {
		return AgentRef{}, fmt.Errorf("register root: %w", err)
	}
	def = def.Canonical()
	if err := rt.cfg.catalog.check(def.Capabilities); err != nil {
		return AgentRef{}, fmt.Errorf("register root %q: %w", def.Name, err)
	}
	fp := def.Fingerprint()
	rt.mu.Lock()
	rt.roots[fp] = def
	rt.mu.Unlock()
	ref := AgentRef{Root: fp}
	// Registered before (the usual case at start-up): one read of the root's
	// own subject, without loading its registry.
	if ok, err := rt.rootRecorded(ctx, fp); err != nil {
		return AgentRef{}, fmt.Errorf("register root %q: %w", def.Name, err)
	} else if ok {
		return ref, nil
	}
	_, err := rt.write(ctx, fp, func(reg *projector.Registry) ([]*events.Event, error) {
		if reg.Def != nil {
			return nil, nil // registered before: idempotent
		}
		return []*events.Event{{Type: events.RootRegistered, Registered: &events.RootData{Def: def}}}, nil
	})
	if errors.Is(err, events.ErrConflict) {
		// Another process registered it in the meantime; check that it did.
		if _, err := rt.refresh(ctx, fp); err != nil {
			return AgentRef{}, err
		}
		st := rt.lockState(fp)
		ok := st.reg.Def != nil
		st.mu.Unlock()
		if ok {
			return ref, nil
		}
	}
	if err != nil {
		return AgentRef{}, fmt.Errorf("register root %q: %w", def.Name, err)
	}
	return ref, nil
}

// rootRecorded reports whether the root's subject holds its RootRegistered.
func (rt *Runtime) rootRecorded(ctx context.Context, root string) (bool, error) {
	found := false
	err := rt.log.ReadLiteral(ctx, []string{events.Subject(rt.prefix, root, "")}, func(r events.Record) error {
		if e, err := events.Decode(r.Data); err == nil && e.Type == events.RootRegistered && e.Root == root &&
			e.Prev == "" && e.Registered.Def.Fingerprint() == root {
			found = true
		}
		return nil
	})
	return found, err
}

// chainRegistry folds only the events of an agent's ancestor chain (the
// root's subject, each ancestor's, the agent's own): everything that
// decides the agent's recipe and effective capabilities, read from a few
// literal subjects however long the stream and however large the root.
func (rt *Runtime) chainRegistry(ctx context.Context, root, path string) (*projector.Registry, error) {
	subjects := []string{events.Subject(rt.prefix, root, "")}
	if path != "" {
		for _, p := range append(events.Ancestors(path), path) {
			subjects = append(subjects, events.Subject(rt.prefix, root, p))
		}
	}
	reg := projector.New(root)
	if err := rt.log.ReadLiteral(ctx, subjects, func(r events.Record) error { reg.Apply(r); return nil }); err != nil {
		return nil, fmt.Errorf("read the ancestor chain of %q: %w", path, err)
	}
	return reg, nil
}

func (rt *Runtime) stateOf(root string) *rootState {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.tick++
	st := rt.state[root]
	if st == nil {
		st = &rootState{}
		st.used.Store(rt.tick)
		rt.state[root] = st
		rt.evictLocked()
	}
	st.used.Store(rt.tick)
	return st
}

// lockState returns a root's state with its lock held. A state dropped (by
// eviction or forgetUnloaded) while the caller waited for its lock is not
// used: the caller retries with the current one, so there is never more than
// one live state per root and writes to a root stay serialised.
func (rt *Runtime) lockState(root string) *rootState {
	for {
		st := rt.stateOf(root)
		st.mu.Lock()
		rt.mu.Lock()
		current := rt.state[root] == st
		rt.mu.Unlock()
		if current {
			return st
		}
		st.mu.Unlock()
	}
}

// evictLocked drops the least recently used registries beyond the bound
// (WithMaxLoadedRoots). A dropped root is read again from its newest
// snapshot when next used. rt.mu must be held.
func (rt *Runtime) evictLocked() {
	if rt.cfg.maxRoots <= 0 {
		return
	}
	for len(rt.state) > rt.cfg.maxRoots {
		var victim string
		var oldest uint64
		for root, st := range rt.state {
			if u := st.used.Load(); victim == "" || u < oldest {
				victim, oldest = root, u
			}
		}
		st := rt.state[victim]
		if !st.mu.TryLock() {
			return // in use: try again on the next load
		}
		delete(rt.state, victim)
		st.mu.Unlock()
	}
}

// catchUp brings st.reg up to the newest event of its root: the first time
// from the newest good snapshot plus the tail, then from where it stopped.
// It takes a snapshot when the policy says so. st.mu must be held.
func (rt *Runtime) catchUp(ctx context.Context, root string, st *rootState) error {
	if st.reg == nil {
		res, err := snapshot.Restore(ctx, rt.snaps, rt.log, root, 0, rt.lg)
		if err != nil {
			return err
		}
		st.reg = res.Registry
		if res.From != nil {
			st.snapAt, st.restored, st.snapTime = res.From.Count, res.From, time.Unix(0, res.From.Time)
		}
	} else if err := snapshot.CatchUp(ctx, rt.log, st.reg, 0, nil); err != nil {
		return err
	}
	if rt.cfg.snapEvery > 0 && rt.snaps != nil && st.reg.Count-st.snapAt >= rt.cfg.snapEvery {
		rt.snapshotInBackground(st)
	}
	return nil
}

// snapshotInBackground captures the registry now (under the root's lock,
// which the caller holds) and stores it on a goroutine of its own, so that
// no read or write waits for the object store. Close waits for it. A
// failed snapshot costs only replay time later: it is logged, not returned.
func (rt *Runtime) snapshotInBackground(st *rootState) {
	h, body, err := snapshot.Capture(st.reg, rt.cfg.now())
	if err != nil {
		rt.lg.Warn("snapshot capture failed", "root", st.reg.Root, "seq", st.reg.Seq, "err", err)
		return
	}
	st.snapAt, st.snapTime = h.Count, time.Unix(0, h.Time)
	rt.bg.Add(1)
	go func() {
		defer rt.bg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := rt.snaps.Put(ctx, h, body); err != nil {
			rt.lg.Warn("snapshot failed", "root", h.Root, "seq", h.Seq, "err", err)
			return
		}
		rt.lg.Debug("snapshot taken", "root", h.Root, "seq", h.Seq, "bytes", h.Size)
	}()
}

// boundedReader is the optional log feature of reading a root up to a
// known sequence, without looking the bound up first.
type boundedReader interface {
	ReadRootUpTo(ctx context.Context, root string, from, bound uint64, fn func(events.Record) error) error
}

// catchUpTo folds a loaded registry up to bound (a sequence the caller knows
// exists, such as its own append's). st.mu must be held.
func (rt *Runtime) catchUpTo(ctx context.Context, root string, st *rootState, bound uint64) error {
	br, ok := rt.log.(boundedReader)
	if !ok || st.reg == nil || bound <= st.reg.Seq {
		return rt.catchUp(ctx, root, st)
	}
	if err := br.ReadRootUpTo(ctx, root, st.reg.Seq+1, bound, func(r events.Record) error {
		st.reg.Apply(r)
		return nil
	}); err != nil {
		return fmt.Errorf("catch up root %s to seq %d: %w", root, bound, err)
	}
	return nil
}

// Snapshot takes a snapshot of a root's registry now and returns its header.
func (rt *Runtime) Snapshot(ctx context.Context, root string) (snapshot.Header, error) {
	if err := events.ValidateFingerprint(root); err != nil {
		return snapshot.Header{}, fmt.Errorf("snapshot: %w", err)
	}
	if rt.snaps == nil {
		return snapshot.Header{}, fmt.Errorf("snapshot root %s: this runtime has no snapshot store", root)
	}
	st := rt.lockState(root)
	defer st.mu.Unlock()
	if err := rt.catchUp(ctx, root, st); err != nil {
		return snapshot.Header{}, err
	}
	h, body, err := snapshot.Capture(st.reg, rt.cfg.now())
	if err != nil {
		return snapshot.Header{}, err
	}
	if err := rt.snaps.Put(ctx, h, body); err != nil {
		return snapshot.Header{}, fmt.Errorf("snapshot root %s: %w", root, err)
	}
	st.snapAt, st.snapTime = st.reg.Count, time.Unix(0, h.Time)
	return h, nil
}

// RestoredFrom returns the snapshot this process restored a root's
// registry from, if it did (false: replayed from the log's start, or not
// loaded yet).
func (rt *Runtime) RestoredFrom(root string) (snapshot.Header, bool) {
	st := rt.lockState(root)
	defer st.mu.Unlock()
	if st.restored == nil {
		return snapshot.Header{}, false
	}
	return *st.restored, true
}

// refresh catches a root's registry up and returns its sequence.
func (rt *Runtime) refresh(ctx context.Context, root string) (uint64, error) {
	st := rt.lockState(root)
	defer st.mu.Unlock()
	if err := rt.catchUp(ctx, root, st); err != nil {
		return 0, err
	}
	return st.reg.Seq, nil
}

// View calls fn with a root's registry caught up to the newest event. fn
// must not keep the registry or change it.
func (rt *Runtime) View(ctx context.Context, root string, fn func(*projector.Registry) error) error {
	if err := events.ValidateFingerprint(root); err != nil {
		return err
	}
	st := rt.lockState(root)
	defer st.mu.Unlock()
	defer rt.forgetUnloaded(root, st)
	if err := rt.catchUp(ctx, root, st); err != nil {
		return err
	}
	return fn(st.reg)
}

// StateHash returns the state hash of a root's registry caught up to the
// newest event, and the sequence it covers.
func (rt *Runtime) StateHash(ctx context.Context, root string) (hash string, seq uint64, err error) {
	err = rt.View(ctx, root, func(reg *projector.Registry) error {
		hash, err = reg.StateHash()
		seq = reg.Seq
		return err
	})
	return hash, seq, err
}

// write is the one path by which the runtime appends: under the root's
// lock it catches up, lets build derive the events from the registry (and
// refuse), fills the envelopes, checks them, and appends them as one
// atomic batch with optimistic concurrency on the agent's subject.
func (rt *Runtime) write(ctx context.Context, root string, build func(*projector.Registry) ([]*events.Event, error)) (uint64, error) {
	st := rt.lockState(root)
	defer st.mu.Unlock()
	if err := rt.catchUp(ctx, root, st); err != nil {
		return 0, err
	}
	evs, err := build(st.reg)
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	now := rt.cfg.now().UnixNano()
	actor := ActorFrom(ctx, rt.cfg.actor)
	corr := correlationFrom(ctx)
	path := evs[0].Path
	prev := st.reg.LastHash(path)
	msgs := make([]events.Message, len(evs))
	for i, e := range evs {
		if e.Path != path {
			return 0, fmt.Errorf("internal: one write spans agents %q and %q", path, e.Path)
		}
		e.ID, e.Version, e.Root, e.Time, e.Actor, e.Correlation, e.Prev =
			ulid.Make().String(), events.SchemaVersion, root, now, actor, corr, prev
		var data []byte
		var err error
		if rt.cfg.signer != nil {
			data, err = events.EncodeSigned(e, rt.cfg.signer)
		} else {
			data, err = events.Encode(e)
		}
		if err != nil {
			return 0, err
		}
		prev = events.Hash(data)
		msgs[i] = events.Message{Subject: events.Subject(rt.prefix, root, path), Data: data, ID: e.ID, Type: e.Type}
	}
	expect := st.reg.SubjectSeq[path]
	msgs[0].ExpectSeq = &expect
	seq, err := rt.log.Append(ctx, msgs)
	if err != nil {
		return 0, err
	}
	// Fold what was just written (and anything before it) so a read in this
	// process sees its own write. The append's sequence bounds the read.
	nv := len(st.reg.Violations)
	if err := rt.catchUpTo(ctx, root, st, seq); err != nil {
		return seq, fmt.Errorf("stored at seq %d, then reading it back failed (the write stands; read again before retrying it): %w", seq, err)
	}
	// OCC covers only this agent's subject: a change on another subject (a
	// parent's revoke or retirement) can land between the check above and
	// the append, and the fold then refuses what was written. Say so.
	for _, v := range st.reg.Violations[nv:] {
		for _, e := range evs {
			if v.EventID == e.ID {
				return seq, fmt.Errorf("%s %s stored at seq %d but not applied, the registry changed after it was checked: %s: %w",
					v.Type, v.EventID, v.Seq, v.Reason, notAppliedErr(v.Code))
			}
		}
	}
	return seq, nil
}

// notAppliedErr is the sentinel for a violation code of the runtime's own write.
func notAppliedErr(code string) error {
	switch code {
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

// Create creates a dynamic agent under parent (a root or a dynamic agent),
// writing AgentCreated, its grants and its task definitions as one atomic
// batch. A grant beyond the parent's effective capabilities is refused
// before anything is written (ErrEscalation); a path that exists gives
// ErrExists, also when several writers race for it.
func (rt *Runtime) Create(ctx context.Context, parent AgentRef, spec Spec) (AgentRef, error) {
	if err := events.ValidateSegment(spec.Name); err != nil {
		return AgentRef{}, fmt.Errorf("create agent under %q: %w", parent.Path, err)
	}
	child := parent.Child(spec.Name)
	if err := events.ValidatePath(child.Path); err != nil {
		return AgentRef{}, fmt.Errorf("create agent: %w", err)
	}
	if err := rt.checkRoot(parent.Root); err != nil {
		return AgentRef{}, fmt.Errorf("create agent %q: %w", child.Path, err)
	}
	for _, c := range spec.Capabilities {
		if err := rt.cfg.catalog.check([]events.Capability{c}); err != nil {
			return AgentRef{}, fmt.Errorf("create agent %q: %w", child.Path, err)
		}
	}
	_, err := rt.write(ctx, child.Root, func(reg *projector.Registry) ([]*events.Event, error) {
		created := &events.Event{Type: events.AgentCreated, Path: child.Path, Created: &events.CreatedData{Primer: spec.Primer}}
		created.Root, created.ID, created.Version = child.Root, "check", events.SchemaVersion
		if err := reg.Check(created); err != nil {
			return nil, err
		}
		evs := []*events.Event{created}
		seen := map[string]bool{}
		for _, c := range spec.Capabilities {
			if err := reg.CheckGrant(child.Path, c); err != nil {
				return nil, err
			}
			if seen[c.Key()] {
				return nil, fmt.Errorf("capability %s %q appears twice", c.Kind, c.Name)
			}
			seen[c.Key()] = true
			evs = append(evs, &events.Event{Type: events.CapabilityGranted, Path: child.Path, Granted: &events.GrantedData{Capability: c.Normalized()}})
		}
		for _, t := range spec.Tasks {
			if err := t.Validate(); err != nil {
				return nil, err
			}
			evs = append(evs, &events.Event{Type: events.TaskDefined, Path: child.Path, Task: &events.TaskData{Task: t}})
		}
		return evs, nil
	})
	if errors.Is(err, events.ErrConflict) {
		// Someone wrote to this path first: say what is there now.
		var exists error
		_ = rt.View(ctx, child.Root, func(reg *projector.Registry) error {
			if a := reg.Agents[child.Path]; a != nil {
				exists = fmt.Errorf("agent %q was created at seq %d by %q: %w", child.Path, a.CreatedSeq, a.Creator, events.ErrExists)
			}
			return nil
		})
		if exists != nil {
			err = exists
		}
	}
	if err != nil {
		return AgentRef{}, fmt.Errorf("create agent %q: %w", child.Path, err)
	}
	return child, nil
}

// Grant gives an agent a capability its parent effectively holds.
func (rt *Runtime) Grant(ctx context.Context, a AgentRef, c events.Capability) error {
	if err := rt.checkAgentRef(a); err != nil {
		return err
	}
	if err := rt.cfg.catalog.check([]events.Capability{c}); err != nil {
		return fmt.Errorf("grant to %q: %w", a.Path, err)
	}
	return rt.single(ctx, a, fmt.Sprintf("grant %s %q to %q", c.Kind, c.Name, a.Path),
		&events.Event{Type: events.CapabilityGranted, Path: a.Path, Granted: &events.GrantedData{Capability: c.Normalized()}})
}

// Revoke takes a capability from an agent and from all its descendants.
func (rt *Runtime) Revoke(ctx context.Context, a AgentRef, kind events.Kind, name string) error {
	if err := rt.checkAgentRef(a); err != nil {
		return err
	}
	return rt.single(ctx, a, fmt.Sprintf("revoke %s %q from %q", kind, name, a.Path),
		&events.Event{Type: events.CapabilityRevoked, Path: a.Path, Revoked: &events.RevokedData{Kind: kind, Name: name}})
}

// DefineTask defines (or redefines) a task on an agent and returns its ref.
func (rt *Runtime) DefineTask(ctx context.Context, a AgentRef, t events.TaskDef) (TaskRef, error) {
	if err := rt.checkAgentRef(a); err != nil {
		return TaskRef{}, err
	}
	err := rt.single(ctx, a, fmt.Sprintf("define task %q on %q", t.Name, a.Path),
		&events.Event{Type: events.TaskDefined, Path: a.Path, Task: &events.TaskData{Task: t}})
	if err != nil {
		return TaskRef{}, err
	}
	return TaskRef{Root: a.Root, Path: a.Path, Task: t.Name}, nil
}

// Retire retires an agent and all its descendants.
func (rt *Runtime) Retire(ctx context.Context, a AgentRef, reason string) error {
	if err := rt.checkAgentRef(a); err != nil {
		return err
	}
	return rt.single(ctx, a, fmt.Sprintf("retire %q", a.Path),
		&events.Event{Type: events.AgentRetired, Path: a.Path, Retired: &events.RetiredData{Reason: reason}})
}

// MigrateRoot records that task refs made under the root definition with
// fingerprint from resolve, from now on, through the root registered in
// this process with fingerprint to. The old root's agents keep their
// recipes; their capabilities are intersected with the new root's. The old
// root takes no further writes.
func (rt *Runtime) MigrateRoot(ctx context.Context, from, to, reason string) error {
	if err := events.ValidateFingerprint(from); err != nil {
		return fmt.Errorf("migrate root: from: %w", err)
	}
	if err := rt.checkRoot(to); err != nil {
		return fmt.Errorf("migrate root %.12s: to: %w", from, err)
	}
	return rt.single(ctx, AgentRef{Root: from}, fmt.Sprintf("migrate root %.12s to %.12s", from, to),
		&events.Event{Type: events.RootMigrated, Migration: &events.MigratedData{To: to, Reason: reason}})
}

func (rt *Runtime) single(ctx context.Context, a AgentRef, what string, e *events.Event) error {
	_, err := rt.write(ctx, a.Root, func(reg *projector.Registry) ([]*events.Event, error) {
		probe := *e
		probe.Root, probe.ID, probe.Version = a.Root, "check", events.SchemaVersion
		if err := reg.Check(&probe); err != nil {
			return nil, err
		}
		return []*events.Event{e}, nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func (rt *Runtime) checkAgentRef(a AgentRef) error {
	if err := rt.checkRoot(a.Root); err != nil {
		return fmt.Errorf("agent %q: %w", a.Path, err)
	}
	if err := events.ValidatePath(a.Path); err != nil {
		return err
	}
	return nil
}

// checkRoot requires the root to be registered in this process: writes go
// only through roots whose definition this process holds.
func (rt *Runtime) checkRoot(root string) error {
	if err := events.ValidateFingerprint(root); err != nil {
		return err
	}
	rt.mu.Lock()
	_, ok := rt.roots[root]
	rt.mu.Unlock()
	if !ok {
		return fmt.Errorf("root %.12s: register it with RegisterRoot first: %w", root, ErrRootNotRegistered)
	}
	return nil
}

// RootDef returns the definition of a root registered in this process.
func (rt *Runtime) RootDef(root string) (events.RootDef, bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	d, ok := rt.roots[root]
	return d, ok
}

type ctxKey int

const (
	actorKey ctxKey = iota
	corrKey
)

// WithActor returns a context whose writes are recorded as made by
// principal (who asked: a user, a service, an agent's task ref).
func WithActor(ctx context.Context, principal string) context.Context {
	return context.WithValue(ctx, actorKey, principal)
}

// ActorFrom returns the principal set by WithActor, or def.
func ActorFrom(ctx context.Context, def string) string {
	if s, ok := ctx.Value(actorKey).(string); ok && s != "" {
		return s
	}
	return def
}

// WithCorrelation returns a context whose writes carry correlation id id.
func WithCorrelation(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, corrKey, id)
}

func correlationFrom(ctx context.Context) string {
	if s, ok := ctx.Value(corrKey).(string); ok && s != "" {
		return s
	}
	return ulid.Make().String()
}

var _ Log = (*natsstore.Log)(nil)

// clock stamps events; WithClock replaces it in tests.
type clock func() time.Time
