package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/snapshot"
)

// Snapshot policy. A loaded root is snapshotted when the records folded
// since its last snapshot reach max(WithSnapshotEvery, half the records the
// last snapshot held): the cost of snapshots stays proportional to what
// changed (each snapshot costs O(root), and the next one comes after
// another half of the root's size in events). The snapshot is made on a
// goroutine of its own from the stored log (newest snapshot plus the tail
// up to the sequence the live registry had reached), never from the live
// registry: no read or write waits for it, and the root's lock is not held
// while it is built, marshalled or stored.

// maybeSnapshot starts a background snapshot when the policy says so.
// st.mu must be held.
func (rt *Runtime) maybeSnapshot(st *rootState) {
	if rt.cfg.snapEvery == 0 || rt.snaps == nil || st.snapping || st.reg == nil {
		return
	}
	if st.reg.Count-st.snapAt < max(rt.cfg.snapEvery, st.snapAt/2) {
		return
	}
	rt.mu.Lock()
	closed := rt.closed
	if !closed {
		rt.bg.Add(1)
	}
	rt.mu.Unlock()
	if closed {
		return
	}
	root, upTo := st.reg.Root, st.reg.Seq
	st.snapping, st.snapAt = true, st.reg.Count
	go func() {
		defer rt.bg.Done()
		h, err := rt.snapshotFromLog(root, upTo)
		st.mu.Lock()
		st.snapping = false
		if err == nil {
			st.snapTime = time.Unix(0, h.Time)
			rt.maybeSnapshot(st) // events folded meanwhile may call for the next one
		}
		st.mu.Unlock()
		if h := rt.cfg.onSnap; h != nil {
			h(root, upTo, err)
		}
		if err != nil {
			rt.lg.Warn("snapshot failed", "root", root, "seq", upTo, "err", err)
			return
		}
		rt.lg.Debug("snapshot taken", "root", root, "seq", h.Seq, "bytes", h.Size)
	}()
}

// snapshotFromLog rebuilds a root's registry up to upTo from the newest
// stored snapshot and the log, and stores it as a new snapshot.
func (rt *Runtime) snapshotFromLog(root string, upTo uint64) (snapshot.Header, error) {
	ctx, cancel := context.WithTimeout(rt.life, 5*time.Minute)
	defer cancel()
	var src snapshot.Source = boundedSource{rt.log, upTo}
	if !rt.cfg.noFollow {
		// The newest part from the follower's ring, not from a replica.
		rt.mu.Lock()
		src = rt.recentSource(root)
		rt.mu.Unlock()
	}
	res, err := snapshot.RestoreTrusted(ctx, rt.snaps, src, root, upTo, rt.cfg.trust, rt.lg)
	if err != nil {
		return snapshot.Header{}, err
	}
	if res.From != nil && res.From.Seq >= upTo {
		return *res.From, nil // another process stored this one already
	}
	h, body, err := snapshot.Capture(res.Registry, rt.cfg.now())
	if err != nil {
		return snapshot.Header{}, err
	}
	if err := rt.snaps.Put(ctx, h, body); err != nil {
		return snapshot.Header{}, err
	}
	return h, nil
}

// Snapshot takes a snapshot of a root's registry now (caught up as View
// is) and returns its header once it is stored.
func (rt *Runtime) Snapshot(ctx context.Context, id RootID) (snapshot.Header, error) {
	root := string(id)
	if err := events.ValidateFingerprint(root); err != nil {
		return snapshot.Header{}, fmt.Errorf("snapshot: %w", err)
	}
	if rt.snaps == nil {
		return snapshot.Header{}, fmt.Errorf("snapshot root %s: this runtime has no snapshot store", root)
	}
	if _, ok := ctx.Value(minSeqKey).(uint64); !ok {
		ctx = WithMinSeq(ctx, LatestSeq)
	}
	st := rt.lockState(root)
	defer st.mu.Unlock()
	if err := rt.current(ctx, root, st); err != nil {
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
