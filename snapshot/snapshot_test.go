package snapshot_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/snapshot"
	"github.com/agentreg/agentreg/testutil"
)

var seedFlag = flag.Uint64("seed", 0, "seed for the random histories (0: from the clock)")

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// only is a Store that lists exactly one snapshot, whose body lives in the
// real object store: it lets the test restore from a chosen k.
type only struct {
	snapshot.Store
	h snapshot.Header
}

func (o only) List(context.Context, string) ([]snapshot.Header, error) {
	return []snapshot.Header{o.h}, nil
}

type env struct {
	log   *natsstore.Log
	snaps *natsstore.Snapshots
	root  string
	recs  []events.Record
}

// history writes a random history for one root through the runtime (valid
// and refused operations alike) with garbage published in between, and
// reads it back.
func history(t *testing.T, rng *rand.Rand, ops int) env {
	t.Helper()
	ctx := context.Background()
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	l, err := natsstore.OpenLog(ctx, nc, natsstore.Config{})
	require.NoError(t, err)
	s, err := natsstore.OpenSnapshots(ctx, l)
	require.NoError(t, err)

	cat := agent.NewCatalog()
	require.NoError(t, cat.AddModule("math", map[string]any{"sin": 1, "cos": 2, "tan": 3, "pi": 4}))
	require.NoError(t, cat.AddModule("io", map[string]any{"read": 1, "write": 2}))
	rt, err := agent.Open(ctx, agent.WithLog(l, s), agent.WithCatalog(cat), agent.WithSnapshotEvery(0), agent.WithLogger(quiet))
	require.NoError(t, err)
	root, err := rt.RegisterRoot(ctx, events.RootDef{Name: "prop", Primer: "p", Capabilities: []events.Capability{
		{Kind: events.KindModule, Name: "math"}, {Kind: events.KindModule, Name: "io"},
	}})
	require.NoError(t, err)

	paths := []string{""}
	members := []string{"sin", "cos", "tan", "pi", "s*", "*"}
	mods := []string{"math", "io"}
	task := func(n int) events.TaskDef {
		return events.TaskDef{Name: fmt.Sprintf("t%d", n), Input: events.Schema{Type: "object"}, Output: events.Schema{Type: "string"}}
	}
	for i := 0; i < ops; i++ {
		p := paths[rng.IntN(len(paths))]
		a := agent.AgentRef{Root: root.Root, Path: p}
		cap := events.Capability{Kind: events.KindModule, Name: mods[rng.IntN(2)], Include: []string{members[rng.IntN(len(members))]}}
		switch op := rng.IntN(10); {
		case op < 3:
			child, _, err := rt.Create(ctx, a, agent.Spec{Name: fmt.Sprintf("a%d", rng.IntN(6)), Primer: "x",
				Capabilities: []events.Capability{cap}, Tasks: []events.TaskDef{task(rng.IntN(3))}})
			if err == nil {
				paths = append(paths, child.Path)
			}
		case op < 5 && p != "":
			_, _ = rt.Grant(ctx, a, cap)
		case op < 6 && p != "":
			_, _ = rt.Revoke(ctx, a, events.KindModule, cap.Name)
		case op < 8 && p != "":
			_, _, _ = rt.DefineTask(ctx, a, task(rng.IntN(4)))
		case op < 9 && p != "" && rng.IntN(4) == 0:
			_, _ = rt.Retire(ctx, a, "random")
		default:
			testutil.PublishRaw(t, nc, events.Subject("agentreg", string(root.Root), p), []byte(fmt.Sprintf("garbage %d", i)), nil)
		}
	}
	var recs []events.Record
	_, err = l.ReadRoot(ctx, string(root.Root), 1, func(r events.Record) error {
		recs = append(recs, r)
		return nil
	})
	require.NoError(t, err)
	return env{log: l, snaps: s, root: string(root.Root), recs: recs}
}

func fold(root string, recs []events.Record) *projector.Registry {
	reg := projector.New(root)
	for _, r := range recs {
		reg.Apply(r)
	}
	return reg
}

func hash(t *testing.T, reg *projector.Registry) string {
	t.Helper()
	h, err := reg.StateHash()
	require.NoError(t, err)
	return h
}

// TestSnapshotPlusTailEqualsReplay: for random histories, restoring from a
// snapshot taken after any k records, plus the tail, gives the state hash
// of a full replay, also when restoring to an earlier target sequence.
func TestSnapshotPlusTailEqualsReplay(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	ctx := context.Background()
	e := history(t, rng, 150)
	n := len(e.recs)
	require.Greater(t, n, 50)
	full := fold(e.root, e.recs)
	require.NotEmpty(t, full.Violations, "the history has garbage in it")
	want := hash(t, full)

	ks := []int{0, 1, n - 1, n}
	for range 12 {
		ks = append(ks, rng.IntN(n+1))
	}
	for _, k := range ks {
		at := fold(e.root, e.recs[:k])
		if k == 0 {
			at.Seq = 0
		}
		h, body, err := snapshot.Capture(at, time.Unix(0, 0))
		require.NoError(t, err)
		require.NoError(t, e.snaps.Put(ctx, h, body))
		res, err := snapshot.Restore(ctx, only{e.snaps, h}, e.log, e.root, 0, quiet)
		require.NoError(t, err, "seed %d k %d", seed, k)
		require.NotNil(t, res.From, "seed %d k %d: snapshot not used", seed, k)
		require.Equal(t, n-k, res.Tail, "seed %d k %d", seed, k)
		require.Equal(t, want, hash(t, res.Registry), "seed %d k %d", seed, k)

		// To an earlier point j >= k: equal to replaying the first j records.
		j := k + rng.IntN(n-k+1)
		if j == 0 {
			continue
		}
		res, err = snapshot.Restore(ctx, only{e.snaps, h}, e.log, e.root, e.recs[j-1].Seq, quiet)
		require.NoError(t, err)
		require.Equal(t, hash(t, fold(e.root, e.recs[:j])), hash(t, res.Registry), "seed %d k %d j %d", seed, k, j)
	}
}

// TestBadSnapshotSkipped: a snapshot with flipped bytes, a truncated body or
// an unknown version is skipped and reported; the state is rebuilt from the
// log and equals a full replay.
func TestBadSnapshotSkipped(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	e := history(t, rng, 60)
	want := hash(t, fold(e.root, e.recs))
	good := fold(e.root, e.recs[:len(e.recs)/2])
	h, body, err := snapshot.Capture(good, time.Unix(0, 0))
	require.NoError(t, err)

	flipped := append([]byte(nil), body...)
	flipped[len(flipped)/2] ^= 0xff
	future := h
	future.Projector = projector.Version + 1
	for name, c := range map[string]struct {
		h    snapshot.Header
		body []byte
		err  error
	}{
		"flipped":   {h, flipped, snapshot.ErrCorrupt},
		"truncated": {h, body[:len(body)-7], snapshot.ErrCorrupt},
		"version":   {future, body, snapshot.ErrVersion},
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, e.snaps.Put(ctx, c.h, c.body))
			res, err := snapshot.Restore(ctx, only{e.snaps, c.h}, e.log, e.root, 0, quiet)
			require.NoError(t, err)
			require.Nil(t, res.From)
			require.Len(t, res.Skipped, 1)
			require.ErrorIs(t, res.Skipped[0].Err, c.err)
			require.Equal(t, want, hash(t, res.Registry))
		})
	}
}

// TestStoreListsNewestFirst: the store keeps a root's snapshots newest
// (highest sequence) first, and Restore uses the newest one at or below the
// target.
func TestStoreListsNewestFirst(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	e := history(t, rng, 40)
	n := len(e.recs)
	for _, k := range []int{n / 4, n / 2, 3 * n / 4} {
		h, body, err := snapshot.Capture(fold(e.root, e.recs[:k]), time.Unix(0, 0))
		require.NoError(t, err)
		require.NoError(t, e.snaps.Put(ctx, h, body))
	}
	list, err := e.snaps.List(ctx, e.root)
	require.NoError(t, err)
	require.Len(t, list, 3)
	require.Equal(t, e.recs[3*n/4-1].Seq, list[0].Seq)
	require.Equal(t, e.recs[n/4-1].Seq, list[2].Seq)

	target := e.recs[n/2].Seq // just above the middle snapshot
	res, err := snapshot.Restore(ctx, e.snaps, e.log, e.root, target, quiet)
	require.NoError(t, err)
	require.NotNil(t, res.From)
	require.Equal(t, e.recs[n/2-1].Seq, res.From.Seq)
	require.Equal(t, hash(t, fold(e.root, e.recs[:n/2+1])), hash(t, res.Registry))
}
