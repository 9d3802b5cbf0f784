package natsstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

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
