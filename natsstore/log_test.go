package natsstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

var rootA = strings.Repeat("a", 64)
var rootB = strings.Repeat("b", 64)

func msg(root, path string, data string, expect *uint64) events.Message {
	return events.Message{Subject: events.Subject("agentreg", root, path), Data: []byte(data), ID: ulid.Make().String(), Type: events.AgentCreated, ExpectSeq: expect}
}

func u(v uint64) *uint64 { return &v }

func openLog(t *testing.T) *natsstore.Log {
	t.Helper()
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	l, err := natsstore.OpenLog(context.Background(), nc, natsstore.Config{})
	require.NoError(t, err)
	return l
}

func readAll(t *testing.T, l *natsstore.Log, root string, from uint64) []events.Record {
	t.Helper()
	var out []events.Record
	_, err := l.ReadRoot(context.Background(), root, from, func(r events.Record) error {
		out = append(out, r)
		return nil
	})
	require.NoError(t, err)
	return out
}

func TestAppendOCC(t *testing.T) {
	ctx := context.Background()
	l := openLog(t)
	seq, err := l.Append(ctx, []events.Message{msg(rootA, "x", "one", u(0))})
	require.NoError(t, err)
	require.Equal(t, uint64(1), seq)

	t.Run("ErrConflict", func(t *testing.T) {
		_, err := l.Append(ctx, []events.Message{msg(rootA, "x", "two", u(0))})
		require.ErrorIs(t, err, events.ErrConflict)
	})
	t.Run("OK", func(t *testing.T) {
		seq, err := l.Append(ctx, []events.Message{msg(rootA, "x", "two", u(1))})
		require.NoError(t, err)
		require.Equal(t, uint64(2), seq)
	})
	t.Run("RetryStoredOnce", func(t *testing.T) {
		m := msg(rootA, "y", "retry", u(0))
		s1, err := l.Append(ctx, []events.Message{m})
		require.NoError(t, err)
		s2, err := l.Append(ctx, []events.Message{m}) // same id, as after a lost ack
		require.NoError(t, err)
		require.Equal(t, s1, s2)
		recs := readAll(t, l, rootA, 1)
		n := 0
		for _, r := range recs {
			if string(r.Data) == "retry" {
				n++
			}
		}
		require.Equal(t, 1, n)
	})
}

func TestAppendBatchAtomic(t *testing.T) {
	ctx := context.Background()
	l := openLog(t)
	batch := []events.Message{msg(rootA, "m", "c", u(0)), msg(rootA, "m", "g1", nil), msg(rootA, "m", "t1", nil)}
	seq, err := l.Append(ctx, batch)
	require.NoError(t, err)
	require.Equal(t, uint64(3), seq)

	// A retried batch (same ids) is stored once.
	seq2, err := l.Append(ctx, batch)
	require.NoError(t, err)
	require.Equal(t, uint64(3), seq2)

	// A batch whose first message conflicts stores nothing.
	_, err = l.Append(ctx, []events.Message{msg(rootA, "m", "c2", u(0)), msg(rootA, "m", "g2", nil)})
	require.ErrorIs(t, err, events.ErrConflict)
	recs := readAll(t, l, rootA, 1)
	require.Len(t, recs, 3)
	var data []string
	for _, r := range recs {
		data = append(data, string(r.Data))
	}
	require.Equal(t, []string{"c", "g1", "t1"}, data)
}

func TestReadRootOnlyItsSubtree(t *testing.T) {
	ctx := context.Background()
	l := openLog(t)
	for i, m := range []events.Message{
		msg(rootA, "", "a-root", nil), msg(rootB, "", "b-root", nil),
		msg(rootA, "x", "a-x", nil), msg(rootB, "x", "b-x", nil), msg(rootA, "x/y", "a-xy", nil),
	} {
		_, err := l.Append(ctx, []events.Message{m})
		require.NoError(t, err, "message %d", i)
	}
	last, err := l.LastRootSeq(ctx, rootA)
	require.NoError(t, err)
	require.Equal(t, uint64(5), last)
	recs := readAll(t, l, rootA, 1)
	require.Len(t, recs, 3)
	require.Equal(t, []uint64{1, 3, 5}, []uint64{recs[0].Seq, recs[1].Seq, recs[2].Seq})
	require.Len(t, readAll(t, l, rootA, 4), 1)
	require.Empty(t, readAll(t, l, rootA, 6))
	require.Empty(t, readAll(t, l, strings.Repeat("c", 64), 1))
	last, err = l.LastRootSeq(ctx, strings.Repeat("c", 64))
	require.NoError(t, err)
	require.Zero(t, last)
}

func TestOpenLogRejectsLossyStream(t *testing.T) {
	ctx := context.Background()
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	l, err := natsstore.OpenLog(ctx, nc, natsstore.Config{})
	require.NoError(t, err)
	cfg := l.JetStream()
	s, err := cfg.Stream(ctx, "AGENTREG")
	require.NoError(t, err)
	c := s.CachedInfo().Config
	c.MaxMsgsPerSubject = 1
	_, err = cfg.UpdateStream(ctx, c)
	require.NoError(t, err)
	_, err = natsstore.OpenLog(ctx, nc, natsstore.Config{})
	require.Error(t, err)
	require.Contains(t, err.Error(), "max_msgs_per_subject=1")
	require.False(t, errors.Is(err, events.ErrConflict))
}

func TestReadLiteral(t *testing.T) {
	ctx := context.Background()
	l := openLog(t)
	var want []string
	for i := range 3000 { // more than one direct-get batch on "x"
		path := []string{"", "x", "x/y", "z"}[i%4]
		if i >= 40 {
			path = "x"
		}
		m := msg(rootA, path, fmt.Sprintf("%s-%d", path, i), nil)
		_, err := l.Append(ctx, []events.Message{m})
		require.NoError(t, err)
		if path != "z" {
			want = append(want, string(m.Data))
		}
	}
	var got []string
	var last uint64
	err := l.ReadLiteral(ctx, []string{
		events.Subject("agentreg", rootA, ""), events.Subject("agentreg", rootA, "x"),
		events.Subject("agentreg", rootA, "x/y"), events.Subject("agentreg", rootB, "none"),
	}, func(r events.Record) error {
		require.Greater(t, r.Seq, last, "stream order")
		last = r.Seq
		require.False(t, r.Time.IsZero())
		got = append(got, string(r.Data))
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// TestAppendFull: a stream at its max_bytes refuses an append, single or
// batch, with ErrFull naming the stream and its limit, and stores nothing.
func TestAppendFull(t *testing.T) {
	ctx := context.Background()
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	l, err := natsstore.OpenLog(ctx, nc, natsstore.Config{MaxBytes: 4096})
	require.NoError(t, err)
	body := strings.Repeat("x", 1000)
	var stored uint64
	for i := 0; ; i++ {
		require.Less(t, i, 10, "a 4096-byte stream took %d messages of 1000 bytes", i)
		seq, err := l.Append(ctx, []events.Message{msg(rootA, fmt.Sprintf("a%d", i), body, nil)})
		if err != nil {
			require.ErrorIs(t, err, natsstore.ErrFull)
			break
		}
		stored = seq
	}
	for _, msgs := range [][]events.Message{
		{msg(rootA, "single", body, nil)},
		{msg(rootA, "batch", body, nil), msg(rootA, "batch", body, nil)},
	} {
		_, err := l.Append(ctx, msgs)
		require.ErrorIs(t, err, natsstore.ErrFull)
		require.ErrorContains(t, err, "stream AGENTREG is full (maximum bytes exceeded, max_bytes 4096)")
		require.ErrorContains(t, err, "nats stream edit AGENTREG --max-bytes")
	}
	require.Len(t, readAll(t, l, rootA, 1), int(stored))
}

// TestReadRootLong: a read spanning more sequences than direct gets serve
// (an ordered consumer on the agents' wildcard, the root's own subject
// merged in by direct gets) returns the root's records in stream order,
// the root's own ones included wherever they fall, and nothing of another
// root; also when the root's own subject holds the newest message, and
// from a sequence in the middle.
func TestReadRootLong(t *testing.T) {
	ctx := context.Background()
	l := openLog(t)
	var msgs []events.Message
	var want []uint64 // rootA's sequences
	for i := range 6000 {
		root, path := rootA, fmt.Sprintf("a%d", i%700)
		switch {
		case i%1500 == 0 || i == 5999:
			path = "" // the root's own subject, at the start, in the middle and last
		case i%7 == 3:
			root = rootB
		}
		msgs = append(msgs, msg(root, path, fmt.Sprint(i), nil))
		if root == rootA {
			want = append(want, uint64(i+1))
		}
	}
	for i := 0; i < len(msgs); i += 500 {
		_, err := l.AppendPipelined(ctx, msgs[i:i+500])
		require.NoError(t, err)
	}
	seqs := func(recs []events.Record) []uint64 {
		out := make([]uint64, len(recs))
		for i, r := range recs {
			out[i] = r.Seq
			require.Equal(t, fmt.Sprint(r.Seq-1), string(r.Data))
		}
		return out
	}
	require.Equal(t, want, seqs(readAll(t, l, rootA, 1)))
	var tail []uint64
	for _, s := range want {
		if s >= 1400 {
			tail = append(tail, s)
		}
	}
	require.Equal(t, tail, seqs(readAll(t, l, rootA, 1400)))
	// The reads' ordered consumers leave the server seconds after the
	// reads, not minutes: a process loading many roots stays far from the
	// consumer limit.
	require.Eventually(t, func() bool {
		info, err := l.JetStream().Stream(ctx, "AGENTREG")
		require.NoError(t, err)
		return info.CachedInfo().State.Consumers == 0
	}, 15*time.Second, 50*time.Millisecond, "consumers left on the server after the reads")
}

// TestReadRootLongServerGone: a long read (an ordered consumer) whose
// server goes away fails after the log's Timeout without a message, even
// with a context that has no deadline; it used to wait forever.
func TestReadRootLongServerGone(t *testing.T) {
	ctx := context.Background()
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	l, err := natsstore.OpenLog(ctx, nc, natsstore.Config{Timeout: 500 * time.Millisecond})
	require.NoError(t, err)
	var msgs []events.Message
	for i := range 5000 {
		msgs = append(msgs, msg(rootA, fmt.Sprintf("a%d", i%100), "x", nil))
	}
	for i := 0; i < len(msgs); i += 500 {
		_, err := l.AppendPipelined(ctx, msgs[i:i+500])
		require.NoError(t, err)
	}
	done := make(chan error, 1)
	go func() {
		first := true
		_, err := l.ReadRoot(ctx, rootA, 1, func(events.Record) error {
			if first {
				first = false
				srv.Shutdown()
			}
			return nil
		})
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorContains(t, err, "no message for 500ms")
	case <-time.After(20 * time.Second):
		t.Fatal("ReadRoot still waits 20s after its server went away")
	}
}

// TestReadLiteralIgnoresForgedHeaders: a message published with its own
// Nats-Sequence and Nats-Subject headers is read at its real sequence and
// subject (the server appends its values after the publisher's).
func TestReadLiteralIgnoresForgedHeaders(t *testing.T) {
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
	var got []events.Record
	require.NoError(t, l.ReadLiteral(ctx, []string{subj}, func(r events.Record) error { got = append(got, r); return nil }))
	require.Len(t, got, 1)
	require.Equal(t, seq, got[0].Seq)
	require.Equal(t, subj, got[0].Subject)
}
