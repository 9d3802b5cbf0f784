package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/snapshot"
)

// How a process stays current.
//
// The first time a root's registry is needed whole (a write, a View, a
// Snapshot), the runtime starts one follower for the whole log (an ordered
// consumer on the event prefix, from the stream's last sequence at that
// moment) and loads the root: newest good snapshot plus the tail, read up
// to the follower's position. From then on the follower hands every record
// of a loaded root to that root's inbox; whoever next holds the root's lock
// (a read, a write, or the follower itself when the lock is free) folds the
// inbox. A loaded registry is therefore complete up to rootState.at, the
// follower's position when its inbox was last folded, and nothing asks the
// server what a root holds: no read scans a root's subjects.
//
// Records reach the inbox only while the root is attached (loaded or being
// loaded). Attaching and reading the follower's position happen under
// rt.mu together, so every record after the position is queued and every
// record up to it is in the tail read: none is missed or folded twice. The
// tail's newest part (the last recentRing records of the stream) comes
// from the follower's own ring of recent records, not from a read of the
// log, which a lagging replica may answer on a cluster.

// ensureFollower starts the follower if it is not running.
func (rt *Runtime) ensureFollower(ctx context.Context) error {
	rt.followMu.Lock()
	defer rt.followMu.Unlock()
	if rt.follower != nil {
		return nil
	}
	if rt.life.Err() != nil {
		return fmt.Errorf("start following the log: the runtime is closed")
	}
	last, err := rt.log.LastStreamSeq(ctx)
	if err != nil {
		return fmt.Errorf("start following the log: %w", err)
	}
	// Start a little behind the end, so that the ring of recent records
	// covers the newest ones from the first load on (see recentRing).
	start := last - min(last, recentRing/2)
	rt.mu.Lock()
	rt.followPos = max(rt.followPos, start)
	rt.ringFrom = rt.followPos + 1
	rt.mu.Unlock()
	f, err := rt.log.Follow(ctx, rt.followPos, rt.lg, rt.dispatch)
	if err != nil {
		return fmt.Errorf("start following the log: %w", err)
	}
	rt.follower = f
	// Loads read up to the follower's position: let it reach the end first
	// (or the end of what it can deliver: the newest sequences may have
	// been deleted).
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.timeout())
		defer cancel()
	}
	for {
		rt.mu.Lock()
		done, ch := rt.followPos >= last || rt.followLive, rt.followed
		rt.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("start following the log: the follower reached seq %d of %d: %w", rt.followPosition(), last, ctx.Err())
		}
	}
}

// recentRing is how many of the newest records the follower keeps, of
// every root. A load takes the newest part of a root's tail from them
// rather than from the log: on a replicated stream a read of the log may
// be answered by a replica a moment behind the leader, while the follower
// has every record, in order. Only a replica lagging by more than the ring
// could leave a load short.
const recentRing = 1 << 14

// StartFollowing starts following the log now rather than at the first
// load of a root (agentd does, so that its first request finds the
// follower running).
func (rt *Runtime) StartFollowing(ctx context.Context) error { return rt.ensureFollower(ctx) }

// FollowPosition returns the stream sequence up to which the follower has
// handed records to the loaded roots (0 before it starts).
func (rt *Runtime) FollowPosition() uint64 { return rt.followPosition() }

// dispatch queues a followed record for its root if the root is loaded,
// and advances the follower's position.
func (rt *Runtime) dispatch(r events.Record, pending uint64) {
	if h := rt.cfg.onFollow; h != nil {
		h(r.Seq, pending)
	}
	root := rootOfSubject(rt.prefix, r.Subject)
	rt.mu.Lock()
	st := rt.state[root]
	if st != nil && st.attached {
		st.inbox = append(st.inbox, r)
	} else {
		st = nil
	}
	if r.Seq > rt.followPos {
		rt.followPos = r.Seq
	}
	rt.remember(r)
	if pending == 0 {
		rt.followLive = true
	}
	close(rt.followed)
	rt.followed = make(chan struct{})
	rt.mu.Unlock()
	// Fold at once when nobody holds the root; otherwise its holder does.
	if st != nil && st.mu.TryLock() {
		if st.reg != nil {
			rt.drainLocked(st)
		}
		st.mu.Unlock()
	}
}

// rootOfSubject returns the root fingerprint of an event subject
// (prefix.<root>[.<seg>…]), "" if it has none.
func rootOfSubject(prefix, subject string) string {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return ""
	}
	root, _, _ := strings.Cut(rest, ".")
	return root
}

// followPosition returns how far the follower has handed records out.
func (rt *Runtime) followPosition() uint64 {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.followPos
}

// waitFollow waits until the follower has handed out every record up to
// seq, or ctx ends.
func (rt *Runtime) waitFollow(ctx context.Context, seq uint64) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rt.timeout())
		defer cancel()
	}
	for {
		rt.mu.Lock()
		pos, ch := rt.followPos, rt.followed
		rt.mu.Unlock()
		if pos >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for stream seq %d: this process has read the log up to seq %d (a sequence the stream does not hold yet, or the server is unreachable): %w",
				seq, pos, ctx.Err())
		}
	}
}

func (rt *Runtime) timeout() time.Duration {
	if t := rt.cfg.store.Timeout; t > 0 {
		return t
	}
	return 10 * time.Second
}

// load attaches a root and reads its registry: newest good snapshot plus
// the tail up to the follower's position. st.mu must be held and st.reg nil.
func (rt *Runtime) load(ctx context.Context, root string, st *rootState) error {
	if err := rt.ensureFollower(ctx); err != nil {
		return err
	}
	rt.mu.Lock()
	src := rt.recentSource(root)
	st.attached, st.inbox = true, nil
	rt.mu.Unlock()
	bound := src.bound
	detach := func() {
		rt.mu.Lock()
		st.attached, st.inbox = false, nil
		rt.mu.Unlock()
	}
	if bound == 0 { // an empty stream
		st.reg, st.at = projector.New(root), 0
		st.reg.SetTrust(rt.cfg.trust)
		rt.markLoaded(st)
		return nil
	}
	res, err := snapshot.RestoreTrusted(ctx, rt.snaps, src, root, bound, rt.cfg.trust, rt.lg)
	if err != nil {
		detach()
		return fmt.Errorf("load root %.12s: %w", root, err)
	}
	st.reg, st.at = res.Registry, bound
	if res.From != nil {
		st.snapAt, st.restored, st.snapTime = res.From.Count, res.From, time.Unix(0, res.From.Time)
	}
	rt.markLoaded(st)
	rt.drainLocked(st)
	return nil
}

// remember keeps r in the ring of recent records. rt.mu must be held.
func (rt *Runtime) remember(r events.Record) {
	if len(rt.ring) < recentRing {
		rt.ring = append(rt.ring, r)
		return
	}
	old := rt.ring[rt.ringHead]
	rt.ring[rt.ringHead] = r
	rt.ringHead = (rt.ringHead + 1) % recentRing
	rt.ringFrom = old.Seq + 1
}

// recentSource returns a source of root's records up to the follower's
// position: the log up to where the ring of recent records begins, the
// ring after it. rt.mu must be held.
func (rt *Runtime) recentSource(root string) recentSource {
	src := recentSource{log: rt.log, bound: rt.followPos, logBound: rt.ringFrom - 1}
	n := len(rt.ring)
	for i := range n {
		r := rt.ring[(rt.ringHead+i)%n]
		if r.Seq <= src.bound && rootOfSubject(rt.prefix, r.Subject) == root {
			src.recent = append(src.recent, r)
		}
	}
	return src
}

// recentSource reads a root up to bound: the log up to logBound, then
// the follower's recent records of the root (in stream order).
type recentSource struct {
	log      Log
	bound    uint64
	logBound uint64
	recent   []events.Record
}

func (s recentSource) ReadRoot(ctx context.Context, root string, from uint64, fn func(events.Record) error) (uint64, error) {
	if from <= s.logBound {
		if err := s.log.ReadRootUpTo(ctx, root, from, s.logBound, fn); err != nil {
			return 0, err
		}
	}
	for _, r := range s.recent {
		if r.Seq >= from {
			if err := fn(r); err != nil {
				return 0, err
			}
		}
	}
	return s.bound, nil
}

// markLoaded counts a root's registry as loaded and evicts the least
// recently used beyond the bound. st.mu must be held (so st is not the
// victim).
func (rt *Runtime) markLoaded(st *rootState) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	st.loaded = true
	rt.evictLocked()
}

// boundedSource reads a root up to a known sequence: no look-up of the
// root's newest event (a scan over its subjects on the server).
type boundedSource struct {
	log   Log
	bound uint64
}

func (b boundedSource) ReadRoot(ctx context.Context, root string, from uint64, fn func(events.Record) error) (uint64, error) {
	return b.bound, b.log.ReadRootUpTo(ctx, root, from, b.bound, fn)
}

// drainLocked folds the root's queued records. st.mu must be held and
// st.reg loaded.
func (rt *Runtime) drainLocked(st *rootState) {
	rt.mu.Lock()
	recs, pos := st.inbox, rt.followPos
	st.inbox = nil
	rt.mu.Unlock()
	for _, r := range recs {
		if r.Seq > st.at {
			st.reg.Apply(r)
			st.at = r.Seq
		}
	}
	st.at = max(st.at, pos)
	rt.maybeSnapshot(st)
}

// current brings a root's registry up to date for a read or a write:
// loaded if it is not, its inbox folded, and, when the context asks for a
// minimum sequence (WithMinSeq), folded at least that far. st.mu must be
// held.
func (rt *Runtime) current(ctx context.Context, root string, st *rootState) error {
	if rt.cfg.noFollow {
		return rt.poll(ctx, root, st)
	}
	if st.reg == nil {
		if err := rt.load(ctx, root, st); err != nil {
			return err
		}
	} else {
		rt.drainLocked(st)
	}
	min := minSeqFrom(ctx)
	if min == LatestSeq {
		last, err := rt.log.LastStreamSeq(ctx)
		if err != nil {
			return err
		}
		min = last
	}
	return rt.catchUpTo(ctx, st, min)
}

// awaitMin waits, before the caller takes a root's lock, until the
// follower has passed the context's minimum sequence (resolving LatestSeq
// to the stream's last sequence), so that a read asking for a sequence the
// stream has not reached holds up no other user of the root. It returns
// the context with the minimum resolved. It does nothing for a runtime
// that does not follow, or whose follower has not started (no root is
// loaded, and a load starts from the stream's end).
func (rt *Runtime) awaitMin(ctx context.Context) (context.Context, error) {
	min := minSeqFrom(ctx)
	if min == 0 || rt.cfg.noFollow {
		return ctx, nil
	}
	rt.followMu.Lock()
	running := rt.follower != nil
	rt.followMu.Unlock()
	if !running {
		return ctx, nil
	}
	if min == LatestSeq {
		last, err := rt.log.LastStreamSeq(ctx)
		if err != nil {
			return ctx, err
		}
		min, ctx = last, WithMinSeq(ctx, last)
	}
	return ctx, rt.waitFollow(ctx, min)
}

// catchUpTo folds a loaded registry at least up to stream sequence seq.
// st.mu must be held.
func (rt *Runtime) catchUpTo(ctx context.Context, st *rootState, seq uint64) error {
	if seq <= st.at {
		return nil
	}
	if err := rt.waitFollow(ctx, seq); err != nil {
		return fmt.Errorf("root %.12s: %w", st.reg.Root, err)
	}
	rt.drainLocked(st)
	return nil
}

// poll is current for a runtime that does not follow the log: the root's
// events up to the stream's last sequence (or the context's minimum,
// whichever is higher) are read and folded. st.mu must be held.
func (rt *Runtime) poll(ctx context.Context, root string, st *rootState) error {
	bound, err := rt.log.LastStreamSeq(ctx)
	if err != nil {
		return err
	}
	if m := minSeqFrom(ctx); m != LatestSeq && m > bound {
		return fmt.Errorf("root %.12s: min seq %d is beyond the stream's last sequence %d", root, m, bound)
	}
	if st.reg == nil {
		st.reg, st.at = projector.New(root), 0
		st.reg.SetTrust(rt.cfg.trust)
		if bound > 0 {
			res, err := snapshot.RestoreTrusted(ctx, rt.snaps, boundedSource{rt.log, bound}, root, bound, rt.cfg.trust, rt.lg)
			if err != nil {
				st.reg = nil
				return fmt.Errorf("load root %.12s: %w", root, err)
			}
			st.reg = res.Registry
			if res.From != nil {
				st.snapAt, st.restored, st.snapTime = res.From.Count, res.From, time.Unix(0, res.From.Time)
			}
		}
		st.at = bound
		rt.markLoaded(st)
		return nil
	}
	if bound <= st.at {
		return nil
	}
	if err := rt.log.ReadRootUpTo(ctx, root, st.at+1, bound, func(r events.Record) error {
		st.reg.Apply(r)
		return nil
	}); err != nil {
		return fmt.Errorf("catch up root %.12s to seq %d: %w", root, bound, err)
	}
	st.at = bound
	rt.maybeSnapshot(st)
	return nil
}
