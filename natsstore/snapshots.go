package natsstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentreg/agentreg/snapshot"
)

// snapshotHistory is how many snapshots are kept per root: the KV index
// keeps that many revisions of the root's key, and the body of one that
// falls out is deleted.
const snapshotHistory = 8

// Snapshots stores snapshot bodies in a JetStream object store and indexes
// them per root in a KV bucket whose key is the root fingerprint and whose
// revisions are the root's snapshot headers, newest last.
type Snapshots struct {
	objects jetstream.ObjectStore
	index   jetstream.KeyValue
	cfg     Config
}

var _ snapshot.Store = (*Snapshots)(nil)

// OpenSnapshots creates (or opens) the snapshot buckets next to the log.
func OpenSnapshots(ctx context.Context, l *Log) (*Snapshots, error) {
	cfg := l.cfg
	ctx, cancel := withTimeout(ctx, cfg.Timeout)
	defer cancel()
	objects, err := l.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      cfg.SnapshotBucket,
		Description: "agentreg snapshot bodies, one object per root and sequence",
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot object store %s: %w", cfg.SnapshotBucket, err)
	}
	index, err := l.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.SnapshotIndex,
		Description: "agentreg snapshot index: key = root fingerprint, revisions = snapshot headers",
		History:     snapshotHistory,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot index %s: %w", cfg.SnapshotIndex, err)
	}
	return &Snapshots{objects: objects, index: index, cfg: cfg}, nil
}

// ErrNoSnapshots: the snapshot buckets do not exist.
var ErrNoSnapshots = errors.New("no snapshot buckets")

// ExistingSnapshots opens the snapshot buckets without creating them.
func ExistingSnapshots(ctx context.Context, l *Log) (*Snapshots, error) {
	cfg := l.cfg
	ctx, cancel := withTimeout(ctx, cfg.Timeout)
	defer cancel()
	objects, err := l.js.ObjectStore(ctx, cfg.SnapshotBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("snapshot object store %s: %w", cfg.SnapshotBucket, ErrNoSnapshots)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot object store %s: %w", cfg.SnapshotBucket, err)
	}
	index, err := l.js.KeyValue(ctx, cfg.SnapshotIndex)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("snapshot index %s: %w", cfg.SnapshotIndex, ErrNoSnapshots)
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot index %s: %w", cfg.SnapshotIndex, err)
	}
	return &Snapshots{objects: objects, index: index, cfg: cfg}, nil
}

// Roots lists the roots that have snapshots, sorted.
func (s *Snapshots) Roots(ctx context.Context) ([]string, error) {
	ctx, cancel := withTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	keys, err := s.index.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshot roots: %w", err)
	}
	slices.Sort(keys)
	return keys, nil
}

// Put stores the body, then records its header in the index. The body of
// the snapshot that drops out of the index history is deleted.
func (s *Snapshots) Put(ctx context.Context, h snapshot.Header, body []byte) error {
	ctx, cancel := withTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	revisions, err := s.index.History(ctx, h.Root) // oldest first
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("list snapshots of root %s: %w", h.Root, err)
	}
	if _, err := s.objects.PutBytes(ctx, h.Name(), body); err != nil {
		return fmt.Errorf("store snapshot %s: %w", h.Name(), err)
	}
	hb, err := snapshot.MarshalHeader(h)
	if err != nil {
		return fmt.Errorf("encode snapshot header %s: %w", h.Name(), err)
	}
	if _, err := s.index.Put(ctx, h.Root, hb); err != nil {
		return fmt.Errorf("index snapshot %s: %w", h.Name(), err)
	}
	// The index keeps the newest snapshotHistory revisions of the key; the
	// oldest fall out with each put. Delete the bodies that only they name:
	// every revision this put saw before it that the index no longer holds
	// after it, unless a revision still held names the same object. The
	// index is read again after the put, so when several processes
	// snapshot one root at once the revisions that fell out through any of
	// their puts are seen by at least one of them: none leaks (unless more
	// than snapshotHistory puts land between one process's two reads). By
	// revision, not by sequence: processes put sequences out of order, and
	// two may put the same sequence (one object name) twice.
	after, err := s.index.History(ctx, h.Root)
	if err != nil {
		return fmt.Errorf("list snapshots of root %s after storing %s: %w", h.Root, h.Name(), err)
	}
	name := func(e jetstream.KeyValueEntry) (string, bool) {
		if e.Operation() != jetstream.KeyValuePut {
			return "", false
		}
		o, err := snapshot.UnmarshalHeader(e.Value())
		if err != nil || o.Root != h.Root {
			return "", false
		}
		return o.Name(), true
	}
	held := map[uint64]bool{}
	kept := map[string]bool{h.Name(): true}
	for _, e := range after {
		held[e.Revision()] = true
		if n, ok := name(e); ok {
			kept[n] = true
		}
	}
	for _, e := range revisions {
		n, ok := name(e)
		if !ok || held[e.Revision()] || kept[n] {
			continue
		}
		kept[n] = true // deleted once
		if err := s.objects.Delete(ctx, n); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("delete old snapshot %s: %w", n, err)
		}
	}
	return nil
}

// List returns the root's snapshot headers, newest first. A header that
// does not decode (or names another root) is returned with only Root set,
// so Restore reports it and moves on: Body refuses it with
// snapshot.ErrCorrupt.
func (s *Snapshots) List(ctx context.Context, root string) ([]snapshot.Header, error) {
	ctx, cancel := withTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	entries, err := s.index.History(ctx, root)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots of root %s: %w", root, err)
	}
	out := make([]snapshot.Header, 0, len(entries))
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		h, err := snapshot.UnmarshalHeader(e.Value())
		if err != nil || h.Root != root {
			h = snapshot.Header{Root: root}
		}
		out = append(out, h)
	}
	slices.SortStableFunc(out, func(a, b snapshot.Header) int { return cmp.Compare(b.Seq, a.Seq) })
	return out, nil
}

// Body returns a snapshot's stored body.
func (s *Snapshots) Body(ctx context.Context, h snapshot.Header) ([]byte, error) {
	if h.Format == 0 && h.SHA256 == "" {
		// What List makes of an index entry it could not decode: say so,
		// rather than look for a body under a name nobody wrote.
		return nil, fmt.Errorf("snapshot index %s: an entry under root %s does not decode as a snapshot header of that root (damaged, or written by another version): %w",
			s.cfg.SnapshotIndex, h.Root, snapshot.ErrCorrupt)
	}
	ctx, cancel := withTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	b, err := s.objects.GetBytes(ctx, h.Name())
	if err != nil {
		return nil, fmt.Errorf("load snapshot %s: %w", h.Name(), err)
	}
	return b, nil
}
