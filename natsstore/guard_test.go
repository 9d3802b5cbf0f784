package natsstore_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The stream OpenLog creates denies message deletes and purges: what `nats
// stream rmm` and `nats stream purge` send (the JetStream API's
// STREAM.MSG.DELETE and STREAM.PURGE) is refused, whoever asks, and the
// setting cannot be edited away.
func TestOpenLogDeniesDeleteAndPurge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	l, err := natsstore.OpenLog(ctx, nc, natsstore.Config{})
	require.NoError(t, err)
	seq, err := l.Append(ctx, []events.Message{msg(rootA, "x", "one", u(0))})
	require.NoError(t, err)

	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stream, err := js.Stream(ctx, "AGENTREG")
	require.NoError(t, err)
	cfg := stream.CachedInfo().Config
	require.True(t, cfg.DenyDelete)
	require.True(t, cfg.DenyPurge)

	err = stream.DeleteMsg(ctx, seq)
	require.ErrorContains(t, err, "message delete not permitted")
	err = stream.SecureDeleteMsg(ctx, seq)
	require.ErrorContains(t, err, "message delete not permitted")
	err = stream.Purge(ctx)
	require.ErrorContains(t, err, "purge not permitted")
	err = stream.Purge(ctx, jetstream.WithPurgeSubject(events.Subject("agentreg", rootA, "x")))
	require.ErrorContains(t, err, "purge not permitted")

	// `nats stream edit --no-deny-delete` is refused by the server.
	cfg.DenyDelete, cfg.DenyPurge = false, false
	_, err = js.UpdateStream(ctx, cfg)
	require.ErrorContains(t, err, "can not cancel deny")

	state, err := l.StreamState(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), state.Msgs)
	require.Zero(t, state.NumDeleted)
}

// An existing stream that allows deletes and purges is still opened, with
// a warning; OpenLog does not change it. AllowDeletes creates one that
// allows them, silently.
func TestOpenLogWarnsOnDeletableStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	var logs syncBuffer
	lg := slog.New(slog.NewTextHandler(&logs, nil))

	_, err := natsstore.OpenLog(ctx, nc, natsstore.Config{AllowDeletes: true, Logger: lg})
	require.NoError(t, err)
	require.Empty(t, logs.String(), "creating a stream with deletes allowed, as asked, warns of nothing")

	l, err := natsstore.OpenLog(ctx, nc, natsstore.Config{Logger: lg})
	require.NoError(t, err)
	require.Contains(t, logs.String(), "level=WARN")
	require.Contains(t, logs.String(), "stream allows deleting or purging events")
	require.Contains(t, logs.String(), "deny_delete=false deny_purge=false")

	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stream, err := js.Stream(ctx, "AGENTREG")
	require.NoError(t, err)
	require.False(t, stream.CachedInfo().Config.DenyDelete, "OpenLog never changes a stream")
	seq, err := l.Append(ctx, []events.Message{msg(rootA, "x", "one", u(0))})
	require.NoError(t, err)
	require.NoError(t, stream.DeleteMsg(ctx, seq))
}

// The lock is on the JetStream store directory the server uses: two
// embedded servers whose configuration files name one store_dir, with
// different data directories, do not both start.
func TestEmbeddedLocksConfiguredStoreDir(t *testing.T) {
	base := t.TempDir()
	store := filepath.Join(base, "store")
	conf := func(name string) string {
		p := filepath.Join(base, name+".conf")
		require.NoError(t, os.WriteFile(p, []byte(fmt.Sprintf("server_name: %s\nlisten: 127.0.0.1:-1\njetstream {\n  store_dir: %q\n}\n", name, store)), 0o644))
		return p
	}
	first, err := natsstore.StartEmbedded(natsstore.EmbeddedOptions{Dir: filepath.Join(base, "data1"), ConfigFile: conf("one")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = first.Close() })
	require.Equal(t, store, first.StoreDir())

	_, err = natsstore.StartEmbedded(natsstore.EmbeddedOptions{Dir: filepath.Join(base, "data2"), ConfigFile: conf("two")})
	require.ErrorIs(t, err, natsstore.ErrStoreLocked)
	require.Contains(t, err.Error(), store)
	require.Contains(t, err.Error(), fmt.Sprintf("pid %d serving %s", os.Getpid(), first.URL()), "names the holder")

	// A server with no configuration file on that directory as its data
	// directory is refused too; one on another directory starts.
	_, err = natsstore.StartEmbedded(natsstore.EmbeddedOptions{Dir: store, NoListen: true})
	require.ErrorIs(t, err, natsstore.ErrStoreLocked)
	other, err := natsstore.StartEmbedded(natsstore.EmbeddedOptions{Dir: filepath.Join(base, "data2"), NoListen: true})
	require.NoError(t, err)
	require.NoError(t, other.Close())

	// Released on Close.
	require.NoError(t, first.Close())
	second, err := natsstore.StartEmbedded(natsstore.EmbeddedOptions{Dir: filepath.Join(base, "data2"), ConfigFile: conf("two")})
	require.NoError(t, err)
	require.NoError(t, second.Close())
}

// The follower and long reads take sequences from the server's reply
// subject: a stored empty message carrying a status header (which nats.go's
// consumers take for a status and drop, then recreate their consumer before
// it for ever) is delivered as a record with its own sequence, and what
// follows it too.
func TestFollowAndLongReadPassForgedStatus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := testutil.RunServer(t)
	nc := testutil.Connect(t, srv.ClientURL())
	l, err := natsstore.OpenLog(ctx, nc, natsstore.Config{})
	require.NoError(t, err)
	subj := events.Subject("agentreg", rootA, "x")
	var forged []uint64
	for _, st := range []string{"404", "408", "409", "100", "503"} {
		h := nats.Header{"Status": {st}, "Description": {"Consumer Deleted"}, "Nats-Sequence": {"1"}}
		forged = append(forged, testutil.PublishRaw(t, nc, subj, nil, h))
	}
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for i := range 4200 { // a read of the root spans more than directReadMax
		_, err := js.PublishAsync(events.Subject("agentreg", rootA, "y"), []byte(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	<-js.PublishAsyncComplete()
	lastSeq, err := l.Append(ctx, []events.Message{msg(rootA, "z", "legit", nil)})
	require.NoError(t, err)

	got := make(chan uint64, 5000)
	f, err := l.Follow(ctx, 0, slog.Default(), func(r events.Record, _ uint64) { got <- r.Seq })
	require.NoError(t, err)
	defer f.Stop()
	var seen []uint64
	for len(seen) == 0 || seen[len(seen)-1] < lastSeq {
		select {
		case s := <-got:
			seen = append(seen, s)
		case <-ctx.Done():
			t.Fatalf("follower stopped at %v of %d", seen[max(0, len(seen)-1):], lastSeq)
		}
	}
	require.Equal(t, forged, seen[:len(forged)])
	require.Len(t, seen, int(lastSeq))

	recs := readAll(t, l, rootA, 1)
	require.Len(t, recs, int(lastSeq))
	for i, r := range recs {
		require.Equal(t, uint64(i+1), r.Seq)
		require.True(t, strings.HasPrefix(r.Subject, "agentreg."+rootA+"."), r.Subject)
	}
}
