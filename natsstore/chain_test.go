package natsstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

// TestReadChainReadYourWritesCluster: on an R3 stream, a chain read with
// minSeq = the sequence an append just returned, through a connection to
// a node that does not lead the stream (its direct gets are answered by
// its own replica, which may lag), sees that append, every time.
func TestReadChainReadYourWritesCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster: skipped with -short")
	}
	ctx := context.Background()
	servers := testutil.RunCluster(t, 3)
	var writer *natsstore.Log
	deadline := time.Now().Add(60 * time.Second)
	for { // an R3 stream may wait for every peer to be known
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var err error
		writer, err = natsstore.OpenLog(cctx, testutil.Connect(t, servers[0].ClientURL()), natsstore.Config{Replicas: 3})
		cancel()
		if err == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "open an R3 stream: %v", err)
		time.Sleep(200 * time.Millisecond)
	}
	var info *jetstream.StreamInfo
	for {
		st, err := writer.JetStream().Stream(ctx, "AGENTREG")
		if err == nil {
			info, err = st.Info(ctx)
		}
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2 {
			break
		}
		require.True(t, time.Now().Before(deadline), "stream leader and replicas: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
	// Write through the leader's node, read through a follower's.
	var leaderSrv, followerSrv *server.Server
	for _, s := range servers {
		if s.Name() == info.Cluster.Leader {
			leaderSrv = s
		} else if followerSrv == nil {
			followerSrv = s
		}
	}
	writer, err := natsstore.OpenLog(ctx, testutil.Connect(t, leaderSrv.ClientURL()), natsstore.Config{Replicas: 3})
	require.NoError(t, err)
	reader, err := natsstore.ExistingLog(ctx, testutil.Connect(t, followerSrv.ClientURL()), natsstore.Config{})
	require.NoError(t, err)

	chain := []string{
		events.Subject("agentreg", rootA, ""), events.Subject("agentreg", rootA, "x"),
		events.Subject("agentreg", rootA, "x/y"), events.Subject("agentreg", rootA, "x/y/z"),
	}
	paths := []string{"", "x", "x/y", "x/y/z", "other"} // "other" is outside the chain
	const rounds = 200
	stale := 0
	for i := range rounds {
		m := msg(rootA, paths[i%len(paths)], fmt.Sprint(i), nil)
		seq, err := writer.Append(ctx, []events.Message{m})
		require.NoError(t, err)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var got []uint64
		err = reader.ReadChain(rctx, chain, seq, func(r events.Record) error {
			got = append(got, r.Seq)
			return nil
		})
		cancel()
		require.NoError(t, err, "round %d", i)
		want := 0 // the chain's messages up to seq: every round but the "other" ones
		for j := 0; j <= i; j++ {
			if j%len(paths) != len(paths)-1 {
				want++
			}
		}
		require.GreaterOrEqual(t, len(got), want, "round %d: read %d of the chain's messages up to seq %d", i, len(got), seq)
		if m.Subject != events.Subject("agentreg", rootA, "other") {
			require.Contains(t, got, seq, "round %d: the read misses the append at seq %d", i, seq)
		}

		// The same read without minSeq may miss it (informative).
		n := 0
		require.NoError(t, reader.ReadLiteral(ctx, chain, func(r events.Record) error {
			if r.Seq <= seq {
				n++
			}
			return nil
		}))
		if n < want {
			stale++
		}
	}
	t.Logf("%d rounds; ReadLiteral (no minSeq) right after ReadChain missed a write in %d", rounds, stale)

	// Raw direct gets right after appends, without minSeq: how often a
	// follower's replica lags (informative).
	js := reader.JetStream()
	s, err := js.Stream(ctx, "AGENTREG")
	require.NoError(t, err)
	lag := 0
	for i := range rounds {
		m := msg(rootA, "x", fmt.Sprint("lag", i), nil)
		seq, err := writer.Append(ctx, []events.Message{m})
		require.NoError(t, err)
		raw, err := s.GetLastMsgForSubject(ctx, m.Subject)
		if err != nil || raw.Sequence < seq {
			lag++
		}
	}
	t.Logf("%d appends; a direct get of the subject's last message right after missed it %d times", rounds, lag)
}

// TestReadChainMinSeqBeyondEnd: a minSeq the stream does not hold fails
// when ctx ends, with an error naming minSeq, not a hang and not the old
// answer; also when no subject of the chain holds a message.
func TestReadChainMinSeqBeyondEnd(t *testing.T) {
	ctx := context.Background()
	l := openLog(t)
	seq, err := l.Append(ctx, []events.Message{msg(rootA, "x", "one", nil)})
	require.NoError(t, err)
	for _, chain := range [][]string{
		{events.Subject("agentreg", rootA, ""), events.Subject("agentreg", rootA, "x")},
		{events.Subject("agentreg", rootB, "none")},
	} {
		rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		start := time.Now()
		called := false
		err := l.ReadChain(rctx, chain, seq+100, func(events.Record) error { called = true; return nil })
		cancel()
		require.Less(t, time.Since(start), 5*time.Second)
		require.Error(t, err)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorContains(t, err, fmt.Sprintf("min seq %d", seq+100))
		require.False(t, called, "no records from a read that did not reach minSeq")
	}
	// A minSeq the stream holds: answered at once.
	var got []events.Record
	require.NoError(t, l.ReadChain(ctx, []string{events.Subject("agentreg", rootA, "x")}, seq, func(r events.Record) error {
		got = append(got, r)
		return nil
	}))
	require.Len(t, got, 1)
	require.NoError(t, l.ReadChain(ctx, []string{events.Subject("agentreg", rootB, "none")}, seq, func(events.Record) error {
		t.Fatal("no record expected")
		return nil
	}))
}

// TestReadChainIgnoresForgedStatus: a message published with its own
// Status, Description, Nats-Num-Pending or Nats-UpTo-Sequence headers (an
// empty body, as the server's status replies have) is read as a message,
// and the messages after it are read too.
func TestReadChainIgnoresForgedStatus(t *testing.T) {
	ctx := context.Background()
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	l, err := natsstore.OpenLog(ctx, nc, natsstore.Config{})
	require.NoError(t, err)
	subj := events.Subject("agentreg", rootA, "x")
	other := events.Subject("agentreg", rootA, "y")
	var want []uint64
	for _, h := range []map[string]string{
		{"Status": "404", "Description": "No Messages"},
		{"Status": "204", "Description": "EOB", "Nats-Num-Pending": "0", "Nats-Last-Sequence": "1", "Nats-UpTo-Sequence": "999"},
		{"Status": "503"},
		{},
	} {
		hdr := nats.Header{}
		for k, v := range h {
			hdr.Set(k, v)
		}
		want = append(want, testutil.PublishRaw(t, nc, subj, nil, hdr))
	}
	want = append(want, testutil.PublishRaw(t, nc, other, []byte("after"), nil))
	for _, minSeq := range []uint64{0, want[len(want)-1]} {
		var got []uint64
		require.NoError(t, l.ReadChain(ctx, []string{subj, other}, minSeq, func(r events.Record) error {
			got = append(got, r.Seq)
			return nil
		}))
		require.Equal(t, want, got, "minSeq %d", minSeq)
	}
}

// TestJetstreamextTakesForgedHeaders documents why the direct reads are
// not jetstreamext.GetBatch (ARCHITECTURE.md, "JetStream extensions"): it
// takes a message's sequence, subject and time from the first header of
// each name, which is the publisher's when the publisher set one. If this
// test fails, jetstreamext now reads the server's values: reconsider.
func TestJetstreamextTakesForgedHeaders(t *testing.T) {
	ctx := context.Background()
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	l, err := natsstore.OpenLog(ctx, nc, natsstore.Config{})
	require.NoError(t, err)
	subj := events.Subject("agentreg", rootA, "x")
	hdr := nats.Header{}
	hdr.Set("Nats-Sequence", "999999")
	hdr.Set("Nats-Subject", events.Subject("agentreg", rootB, "y"))
	seq := testutil.PublishRaw(t, nc, subj, []byte("forged"), hdr)
	it, err := jetstreamext.GetBatch(ctx, l.JetStream(), "AGENTREG", 10, jetstreamext.GetBatchSubject(subj))
	require.NoError(t, err)
	for m, err := range it {
		require.NoError(t, err)
		require.NotEqual(t, seq, m.Sequence)
		require.Equal(t, uint64(999999), m.Sequence)
		require.Equal(t, events.Subject("agentreg", rootB, "y"), m.Subject)
	}
	// Ours: the server's values.
	var got []events.Record
	require.NoError(t, l.ReadLiteral(ctx, []string{subj}, func(r events.Record) error { got = append(got, r); return nil }))
	require.Len(t, got, 1)
	require.Equal(t, seq, got[0].Seq)
	require.Equal(t, subj, got[0].Subject)
}
