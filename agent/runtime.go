package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
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
	ErrUnknownMember     = errors.New("capability member not usable or not offered")
	ErrMemberType        = errors.New("capability member of another type")
	ErrRootNotRegistered = errors.New("root not registered in this process")
	ErrRootChanged       = errors.New("root definition changed")
	ErrInvalidArgs       = errors.New("invalid task arguments")
	ErrNoExecutor        = errors.New("no executor")
)

// Typed errors with the facts a caller may need, found with errors.As
// through any wrapping; errors.Is with ErrEscalation and ErrRetired still
// holds for them.
type (
	// EscalationError: a grant naming what the granting side lacks
	// (Capability, Parent, Members).
	EscalationError = events.EscalationError
	// RetiredError: the agent is retired (Path, Seq, By).
	RetiredError = events.RetiredError
)

// Log is the event log the runtime needs. natsstore.Log implements it.
type Log interface {
	// AppendEvent stores one event's message (or finds it stored before).
	AppendEvent(ctx context.Context, m events.Message) (natsstore.Appended, error)
	// ReadRootUpTo reads a root's records from sequence from up to bound,
	// a sequence the caller knows the stream holds.
	ReadRootUpTo(ctx context.Context, root string, from, bound uint64, fn func(events.Record) error) error
	// ReadChain reads every message of a few literal subjects (an agent's
	// ancestor chain), in stream order, including every one stored up to
	// minSeq on any replica.
	ReadChain(ctx context.Context, subjects []string, minSeq uint64, fn func(events.Record) error) error
	// LastStreamSeq returns the stream's last sequence.
	LastStreamSeq(ctx context.Context) (uint64, error)
	// Follow calls fn for every message after sequence after, in order.
	Follow(ctx context.Context, after uint64, lg *slog.Logger, fn func(events.Record, uint64)) (*natsstore.Follower, error)
	// StoredID finds the message of an event id on a subject.
	StoredID(ctx context.Context, subject, id string) (uint64, bool, error)
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
	bg     sync.WaitGroup // background snapshots

	life   context.Context // ended by Close: background work stops with it
	cancel context.CancelFunc

	followMu sync.Mutex // serialises starting the follower
	follower *natsstore.Follower

	mu         sync.Mutex
	tick       uint64                    // use counter for eviction
	roots      map[string]events.RootDef // registered in code, by fingerprint
	state      map[string]*rootState     // projected registries, by fingerprint
	followPos  uint64                    // every record up to here was handed to its root's inbox
	ring       []events.Record           // the follower's newest records, of every root (recentRing at most)
	ringHead   int                       // index of the oldest record once the ring is full
	ringFrom   uint64                    // every record from here up to followPos is in the ring
	followLive bool                      // the follower has been handed the stream's last message once
	followed   chan struct{}             // closed (and replaced) when followPos moves
	closed     bool
}

// rootState is one root's registry in this process. Fields marked mu are
// guarded by st.mu, the others by rt.mu.
type rootState struct {
	mu       sync.Mutex
	reg      *projector.Registry // mu; nil until loaded
	at       uint64              // mu; reg holds every event of the root up to this stream sequence
	snapAt   uint64              // mu; reg.Count at the last snapshot taken, started or loaded
	snapping bool                // mu; a background snapshot is running
	resolved map[string]*Task    // mu; resolution cache, valid while reg.Seq == cachedAt
	cachedAt uint64              // mu
	restored *snapshot.Header    // mu; the snapshot the registry was first restored from
	snapTime time.Time           // mu; of the newest snapshot taken or loaded
	used     atomic.Uint64       // rt.tick at the last use, for eviction

	attached bool            // rt.mu; the follower queues this root's records
	loaded   bool            // rt.mu; reg holds the whole root (counts towards WithMaxLoadedRoots)
	inbox    []events.Record // rt.mu; records followed, not yet folded
}

// Open starts a runtime. With no NATS URL it starts an embedded JetStream
// server with file storage in the data directory (default "agentreg-data");
// with WithNATSURL it connects to that server or cluster. If another process
// holds the embedded store, Open fails with ErrStoreLocked naming the URL
// that process serves.
//
// Options: WithNATSURL, WithDataDir, WithReplicas, WithStream, WithCatalog,
// WithExecutor, WithDefaultActor, WithSigningSeed, WithSnapshotEvery,
// WithMaxLoadedRoots, WithFollow, WithAdoptRoots, WithFollowHook,
// WithClock, WithLogger, WithLog.
func Open(ctx context.Context, opts ...Option) (*Runtime, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, fmt.Errorf("agent.Open: %w", err)
		}
	}
	rt := &Runtime{cfg: cfg, lg: cfg.logger.With("component", "agent"),
		roots: map[string]events.RootDef{}, state: map[string]*rootState{}, followed: make(chan struct{})}
	rt.life, rt.cancel = context.WithCancel(context.Background())
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
	rt.cancel() // no follower starts from now on; background snapshots stop at their next request
	rt.followMu.Lock()
	if rt.follower != nil {
		rt.follower.Stop()
		rt.follower = nil
	}
	rt.followMu.Unlock()
	rt.mu.Lock()
	rt.closed = true
	rt.mu.Unlock()
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
	ref := AgentRef{Root: RootID(fp)}
	// Registered before (the usual case at start-up): one read of the root's
	// own subject, without loading its registry.
	if ok, err := rt.rootRecorded(ctx, fp); err != nil {
		return AgentRef{}, fmt.Errorf("register root %q: %w", def.Name, err)
	} else if ok {
		return ref, nil
	}
	e := &events.Event{Type: events.RootRegistered, Root: fp, Registered: &events.RootData{Def: def}}
	_, err := rt.write(ctx, e, func(reg *projector.Registry) error { return reg.Check(e) })
	if err != nil && !errors.Is(err, events.ErrExists) { // ErrExists: another process registered it first
		return AgentRef{}, fmt.Errorf("register root %q: %w", def.Name, err)
	}
	return ref, nil
}

// rootRecorded reports whether the root's subject holds its RootRegistered.
func (rt *Runtime) rootRecorded(ctx context.Context, root string) (bool, error) {
	_, ok, err := rt.recordedDef(ctx, root)
	return ok, err
}

// recordedDef returns the root definition the fold accepted from the
// root's own subject (one literal subject: a few events): a RootRegistered
// whose definition hashes to the subject's fingerprint, first on the
// subject, and, under a trust policy, signed by a trusted key. Anything
// else a publisher put there registers nothing.
func (rt *Runtime) recordedDef(ctx context.Context, root string) (events.RootDef, bool, error) {
	reg, err := rt.chainRegistry(ctx, root, "")
	if err != nil || reg.Def == nil {
		return events.RootDef{}, false, err
	}
	return *reg.Def, true, nil
}

// minSeqOf is the minimum sequence of a context for a direct read of the
// log (LatestSeq is resolved by the caller, or read as "no minimum").
func minSeqOf(ctx context.Context) uint64 {
	if m := minSeqFrom(ctx); m != LatestSeq {
		return m
	}
	return 0
}

// chainRegistry folds only the events of an agent's ancestor chain (the
// root's subject, each ancestor's, the agent's own): everything that
// decides the agent's recipe and effective capabilities, read from a few
// literal subjects however long the stream and however large the root.
func (rt *Runtime) chainRegistry(ctx context.Context, root, path string) (*projector.Registry, error) {
	min := minSeqFrom(ctx)
	if min == LatestSeq {
		last, err := rt.log.LastStreamSeq(ctx)
		if err != nil {
			return nil, err
		}
		min = last
	}
	reg, _, err := rt.readChain(ctx, root, path, min)
	return reg, err
}

// readChain is chainRegistry that also returns the message ids stored on
// the agent's own subject (id -> sequence), read with at least minSeq.
func (rt *Runtime) readChain(ctx context.Context, root, path string, minSeq uint64) (*projector.Registry, map[string]uint64, error) {
	own := events.Subject(rt.prefix, root, path)
	subjects := []string{events.Subject(rt.prefix, root, "")}
	if path != "" {
		for _, p := range append(events.Ancestors(path), path) {
			subjects = append(subjects, events.Subject(rt.prefix, root, p))
		}
	}
	reg := projector.New(root)
	reg.SetTrust(rt.cfg.trust)
	ids := map[string]uint64{}
	if err := rt.log.ReadChain(ctx, subjects, minSeq, func(r events.Record) error {
		if r.Subject == own && r.MsgID != "" {
			if _, dup := ids[r.MsgID]; !dup {
				ids[r.MsgID] = r.Seq
			}
		}
		reg.Apply(r)
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("read the ancestor chain of %q: %w", path, err)
	}
	return reg, ids, nil
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
	for {
		// Only loaded registries count: the short-lived state of a cold
		// resolve or of an unknown root evicts nothing.
		var victim string
		var oldest uint64
		loaded := 0
		for root, st := range rt.state {
			if !st.loaded {
				continue
			}
			loaded++
			if u := st.used.Load(); victim == "" || u < oldest {
				victim, oldest = root, u
			}
		}
		if loaded <= rt.cfg.maxRoots {
			return
		}
		st := rt.state[victim]
		if !st.mu.TryLock() {
			return // in use: try again on the next load
		}
		delete(rt.state, victim)
		st.attached, st.inbox, st.loaded = false, nil, false
		st.mu.Unlock()
	}
}

// RestoredFrom returns the snapshot this process restored a root's
// registry from, if it did (false: replayed from the log's start, or not
// loaded yet).
func (rt *Runtime) RestoredFrom(id RootID) (snapshot.Header, bool) {
	st := rt.lockState(string(id))
	defer st.mu.Unlock()
	if st.restored == nil {
		return snapshot.Header{}, false
	}
	return *st.restored, true
}

func init() {
	inspect.Register(func(ctx context.Context, rt any, root string, fn func(*projector.Registry) error) error {
		r, ok := rt.(*Runtime)
		if !ok {
			return fmt.Errorf("inspect: %T is not an *agent.Runtime", rt)
		}
		return r.view(ctx, root, fn)
	})
}

// view calls fn with a root's registry (loading it first if this process
// has not). Unless the context sets a minimum sequence (WithMinSeq), the
// registry is caught up to every event the stream holds when view is
// called: one request for the stream's last sequence, whose cost does not
// grow with the stream or the root. fn must not keep the registry or
// change it.
func (rt *Runtime) view(ctx context.Context, root string, fn func(*projector.Registry) error) error {
	if err := events.ValidateFingerprint(root); err != nil {
		return err
	}
	if _, ok := ctx.Value(minSeqKey).(uint64); !ok {
		ctx = WithMinSeq(ctx, LatestSeq)
	}
	ctx, err := rt.awaitMin(ctx)
	if err != nil {
		return fmt.Errorf("root %.12s: %w", root, err)
	}
	st := rt.lockState(root)
	defer st.mu.Unlock()
	defer rt.forgetUnloaded(root, st)
	if err := rt.current(ctx, root, st); err != nil {
		return err
	}
	return fn(st.reg)
}

// StateHash returns the state hash of a root's registry caught up to the
// newest event, and the sequence it covers.
func (rt *Runtime) StateHash(ctx context.Context, root RootID) (hash string, seq uint64, err error) {
	err = rt.view(ctx, string(root), func(reg *projector.Registry) error {
		hash, err = reg.StateHash()
		seq = reg.Seq
		return err
	})
	return hash, seq, err
}

func (rt *Runtime) checkAgentRef(ctx context.Context, a AgentRef) error {
	if err := rt.checkRoot(ctx, string(a.Root)); err != nil {
		return fmt.Errorf("agent %q: %w", a.Path, err)
	}
	if err := events.ValidatePath(a.Path); err != nil {
		return err
	}
	return nil
}

// checkRoot requires the root to be registered in this process: writes go
// only through roots whose definition this process holds.
func (rt *Runtime) checkRoot(ctx context.Context, root string) error {
	if err := events.ValidateFingerprint(root); err != nil {
		return err
	}
	if err := rt.adopt(ctx, root); err != nil {
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

// adopt registers a root recorded in the log but not in this process, when
// the runtime adopts roots (WithAdoptRoots). It reads the root's own
// subject only; a root already registered costs nothing.
func (rt *Runtime) adopt(ctx context.Context, root string) error {
	if !rt.cfg.adopt || events.ValidateFingerprint(root) != nil {
		return nil
	}
	rt.mu.Lock()
	_, ok := rt.roots[root]
	rt.mu.Unlock()
	if ok {
		return nil
	}
	def, found, err := rt.recordedDef(ctx, root)
	if err != nil || !found {
		return err
	}
	return rt.AdoptRoot(def)
}

// AdoptRoot registers a root definition in this process without writing
// anything (its RootRegistered is in the log already): its capabilities
// must be in the catalog.
func (rt *Runtime) AdoptRoot(def events.RootDef) error {
	if err := def.Validate(); err != nil {
		return fmt.Errorf("adopt root: %w", err)
	}
	def = def.Canonical()
	if err := rt.cfg.catalog.check(def.Capabilities); err != nil {
		return fmt.Errorf("adopt root %q: %w", def.Name, err)
	}
	rt.mu.Lock()
	rt.roots[def.Fingerprint()] = def
	rt.mu.Unlock()
	return nil
}

// RootDef returns the definition of a root registered in this process.
func (rt *Runtime) RootDef(root RootID) (events.RootDef, bool) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	d, ok := rt.roots[string(root)]
	return d, ok
}

var _ Log = (*natsstore.Log)(nil)

// clock stamps events; WithClock replaces it in tests.
type clock func() time.Time
