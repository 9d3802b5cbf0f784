package faults_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/snapshot"
	"github.com/agentreg/agentreg/testutil"
)

// TestSnapshotCorruption damages a stored snapshot in the ways storage and
// upgrades damage them (flipped bytes, a truncated body, a header from
// another projector or format version, a header that does not decode),
// straight through the JetStream object store and KV bucket. A fresh
// runtime still reaches the state of a full replay of the log, and says in
// its log which snapshot it skipped and why.
func TestSnapshotCorruption(t *testing.T) {
	ctx := context.Background()
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 5))
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	w := openRuntime(t, url, agent.WithSnapshotEvery(0))
	root, err := w.RegisterRoot(ctx, rootDef("snapshots"))
	require.NoError(t, err)
	l := newLoad(w, root, s, 10*time.Second)
	for range 40 {
		require.True(t, l.step(ctx), "write: %v", l.snapshot())
	}
	h, err := w.Snapshot(ctx, root.Root)
	require.NoError(t, err)
	for range 20 { // a tail after the snapshot
		require.True(t, l.step(ctx), "write: %v", l.snapshot())
	}
	lg := openLog(t, url, natsstore.Config{})
	full, err := readLog(ctx, lg, string(root.Root))
	require.NoError(t, err)
	require.Empty(t, full.reg.Violations)
	want := full.hash(t)

	js := lg.JetStream()
	objects, err := js.ObjectStore(ctx, "AGENTREG_SNAPSHOTS")
	require.NoError(t, err)
	index, err := js.KeyValue(ctx, "AGENTREG_SNAPINDEX")
	require.NoError(t, err)
	good, err := objects.GetBytes(ctx, h.Name())
	require.NoError(t, err)
	putBody := func(t *testing.T, body []byte) {
		t.Helper()
		_, err := objects.PutBytes(ctx, h.Name(), body)
		require.NoError(t, err)
	}
	putHeader := func(t *testing.T, b []byte) {
		t.Helper()
		_, err := index.Put(ctx, string(root.Root), b)
		require.NoError(t, err)
	}
	withVersions := func(t *testing.T, format, proj uint16) []byte {
		t.Helper()
		bad := h
		bad.Format, bad.Projector = format, proj
		b, err := snapshot.MarshalHeader(bad)
		require.NoError(t, err)
		return b
	}

	// restore opens a fresh runtime, requires the full replay's state, and
	// returns the snapshot it restored from (nil: it replayed the log) and
	// what it logged.
	restore := func(t *testing.T) (*snapshot.Header, string) {
		t.Helper()
		lgr, logs := capturingLogger(t)
		rt := openRuntime(t, url, agent.WithLogger(lgr), agent.WithSnapshotEvery(0))
		hash, seq, err := rt.StateHash(ctx, root.Root)
		require.NoError(t, err)
		require.Equal(t, full.reg.Seq, seq)
		require.Equal(t, want, hash, "a fresh runtime's state differs from the full replay's")
		require.NoError(t, inspect.View(ctx, rt, string(root.Root), func(reg *projector.Registry) error {
			require.Empty(t, reg.Violations)
			return nil
		}))
		from, ok := rt.RestoredFrom(root.Root)
		require.NoError(t, rt.Close())
		if !ok {
			return nil, logs.String()
		}
		return &from, logs.String()
	}

	t.Run("Intact", func(t *testing.T) {
		from, logs := restore(t)
		require.NotNil(t, from, "restored from the snapshot")
		require.Equal(t, h.Seq, from.Seq)
		require.NotContains(t, logs, "snapshot skipped")
	})
	t.Run("FlippedBytes", func(t *testing.T) {
		body := append([]byte(nil), good...)
		for range 1 + rng.IntN(8) {
			body[rng.IntN(len(body))] ^= byte(1 + rng.IntN(255))
		}
		putBody(t, body)
		from, logs := restore(t)
		require.Nil(t, from, "a snapshot with flipped bytes was trusted")
		requireSkipped(t, logs, h.Name(), snapshot.ErrCorrupt.Error())
	})
	t.Run("TruncatedBody", func(t *testing.T) {
		putBody(t, good[:rng.IntN(len(good))])
		from, logs := restore(t)
		require.Nil(t, from, "a truncated snapshot was trusted")
		requireSkipped(t, logs, h.Name(), snapshot.ErrCorrupt.Error())
	})
	putBody(t, good)
	t.Run("WrongProjectorVersion", func(t *testing.T) {
		// The newest header claims another projector version; the older
		// revision of the index, the good header, is used instead.
		putHeader(t, withVersions(t, snapshot.FormatVersion, projector.Version+1))
		from, logs := restore(t)
		require.NotNil(t, from, "the good header under the bad one is used")
		require.Equal(t, projector.Version, int(from.Projector))
		requireSkipped(t, logs, h.Name(), snapshot.ErrVersion.Error())
	})
	t.Run("WrongFormatVersionOnly", func(t *testing.T) {
		require.NoError(t, index.Purge(ctx, string(root.Root)))
		putHeader(t, withVersions(t, snapshot.FormatVersion+1, projector.Version))
		from, logs := restore(t)
		require.Nil(t, from, "a snapshot of another format was trusted")
		requireSkipped(t, logs, h.Name(), snapshot.ErrVersion.Error())
	})
	t.Run("UndecodableHeader", func(t *testing.T) {
		// On top of the wrong-format header: both are skipped.
		putHeader(t, []byte{0xc1, 0x00, 0xff})
		from, logs := restore(t)
		require.Nil(t, from)
		requireSkipped(t, logs, "AGENTREG_SNAPINDEX", "does not decode as a snapshot header")
		requireSkipped(t, logs, h.Name(), snapshot.ErrVersion.Error())
	})
}

// requireSkipped requires a warning that names the snapshot and the reason.
func requireSkipped(t *testing.T, logs, name, reason string) {
	t.Helper()
	require.Contains(t, logs, "snapshot skipped")
	require.Contains(t, logs, name)
	require.Contains(t, logs, reason)
}
