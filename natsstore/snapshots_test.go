package natsstore_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/snapshot"
)

// TestSnapshotIndexEntryThatDoesNotDecode: List reports such an entry with
// only its root set, and Body refuses it with snapshot.ErrCorrupt saying
// what is wrong, rather than "object not found".
func TestSnapshotIndexEntryThatDoesNotDecode(t *testing.T) {
	ctx := context.Background()
	l := openLog(t)
	s, err := natsstore.OpenSnapshots(ctx, l)
	require.NoError(t, err)
	kv, err := l.JetStream().KeyValue(ctx, "AGENTREG_SNAPINDEX")
	require.NoError(t, err)
	_, err = kv.Put(ctx, rootA, []byte{0xc1})
	require.NoError(t, err)
	hs, err := s.List(ctx, rootA)
	require.NoError(t, err)
	require.Equal(t, []snapshot.Header{{Root: rootA}}, hs)
	_, err = s.Body(ctx, hs[0])
	require.ErrorIs(t, err, snapshot.ErrCorrupt)
	require.ErrorContains(t, err, "does not decode as a snapshot header")
}

// TestSnapshotPutKeepsIndexedBodies: two processes snapshot one root, one
// a step behind the other and sometimes at the same sequence, so the
// index's revision order is not its sequence order. After every put each
// header the index holds has its body, and the object store holds no body
// the index no longer names.
func TestSnapshotPutKeepsIndexedBodies(t *testing.T) {
	ctx := context.Background()
	l := openLog(t)
	s, err := natsstore.OpenSnapshots(ctx, l)
	require.NoError(t, err)
	objects, err := l.JetStream().ObjectStore(ctx, "AGENTREG_SNAPSHOTS")
	require.NoError(t, err)
	for i, seq := range []uint64{10, 10, 30, 20, 40, 50, 60, 70, 80, 90, 85, 100, 100, 110, 120, 130, 140, 150} {
		h := snapshot.Header{Format: snapshot.FormatVersion, Root: rootA, Seq: seq, SHA256: "-", Size: 1}
		require.NoError(t, s.Put(ctx, h, []byte{byte(i)}))
		hs, err := s.List(ctx, rootA)
		require.NoError(t, err)
		indexed := map[string]bool{}
		for _, h := range hs {
			indexed[h.Name()] = true
			_, err := s.Body(ctx, h)
			require.NoError(t, err, "put %d (seq %d): the index holds seq %d without its body", i, seq, h.Seq)
		}
		infos, err := objects.List(ctx)
		require.NoError(t, err)
		for _, o := range infos {
			require.True(t, indexed[o.Name], "put %d (seq %d): body %s is named by no header in the index", i, seq, o.Name)
		}
	}
}

// TestSnapshotPutConcurrentLeaksNothing: four processes (each its own
// connection and Snapshots) snapshot one root at the same time. Each put
// reads the index before and after it, so the bodies of the revisions
// that fell out through any put are deleted: in the end the object store
// holds exactly the bodies the index names.
func TestSnapshotPutConcurrentLeaksNothing(t *testing.T) {
	ctx := context.Background()
	l := openLog(t)
	const writers, puts = 4, 15
	var stores []*natsstore.Snapshots
	for range writers {
		s, err := natsstore.OpenSnapshots(ctx, l)
		require.NoError(t, err)
		stores = append(stores, s)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*puts)
	for w, s := range stores {
		wg.Go(func() {
			for i := range puts {
				h := snapshot.Header{Format: snapshot.FormatVersion, Root: rootA, Seq: uint64(1 + i*writers + w), SHA256: "-", Size: 1}
				errs <- s.Put(ctx, h, []byte{byte(w), byte(i)})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	hs, err := stores[0].List(ctx, rootA)
	require.NoError(t, err)
	indexed := map[string]bool{}
	for _, h := range hs {
		indexed[h.Name()] = true
	}
	objects, err := l.JetStream().ObjectStore(ctx, "AGENTREG_SNAPSHOTS")
	require.NoError(t, err)
	infos, err := objects.List(ctx)
	require.NoError(t, err)
	var stored []string
	for _, o := range infos {
		stored = append(stored, o.Name)
		require.True(t, indexed[o.Name], "body %s is named by no header in the index: leaked", o.Name)
	}
	require.Len(t, stored, len(indexed), "every indexed header has its body")
}
