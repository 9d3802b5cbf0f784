package natsstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/testutil"
)

// The benchmarks below compare the hand-written direct reads and atomic
// batches with github.com/synadia-io/orbit.go/jetstreamext (ARCHITECTURE.md,
// "JetStream extensions"):
//
//	go test -run '^$' -bench 'ChainRead|Batch8' -benchtime 3s -count 3 ./natsstore/

var (
	benchRoot  = strings.Repeat("a", 64)
	benchOther = strings.Repeat("b", 64)
)

// benchChain returns a log whose stream holds 100k messages on other
// subjects and a 10-subject chain of 5 messages each, spread among them.
func benchChain(b *testing.B) (*Log, []string, uint64) {
	b.Helper()
	srv := testutil.RunServer(b)
	nc := testutil.Connect(b, srv.ClientURL())
	ctx := context.Background()
	l, err := OpenLog(ctx, nc, Config{})
	if err != nil {
		b.Fatal(err)
	}
	var chain []string
	path := ""
	for i := range 10 {
		if i > 0 {
			path = strings.TrimPrefix(path+"/s"+strconv.Itoa(i), "/")
		}
		chain = append(chain, events.Subject("agentreg", benchRoot, path))
	}
	const total = 100_000
	var last uint64
	var futures []jetstream.PubAckFuture
	for i := range total {
		subj := events.Subject("agentreg", benchOther, "n"+strconv.Itoa(i%1000))
		if i%2000 == 1000 { // 50 chain messages spread over the stream
			subj = chain[(i/2000)%10]
		}
		f, err := l.js.PublishAsync(subj, []byte("body-"+strconv.Itoa(i)))
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
		if len(futures) == 4000 || i == total-1 {
			for _, f := range futures {
				select {
				case ack := <-f.Ok():
					last = max(last, ack.Sequence)
				case err := <-f.Err():
					b.Fatal(err)
				}
			}
			futures = futures[:0]
		}
	}
	return l, chain, last
}

// readChainExt is the chain read written with jetstreamext.GetBatch: one
// GetBatch per subject, all in flight at once, merged in stream order.
func readChainExt(ctx context.Context, l *Log, subjects []string, fn func(events.Record) error) error {
	var mu sync.Mutex
	var recs []events.Record
	var first error
	var wg sync.WaitGroup
	for _, s := range subjects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from := uint64(1)
			for {
				it, err := jetstreamext.GetBatch(ctx, l.js, l.cfg.Stream, directBatch, jetstreamext.GetBatchSeq(from), jetstreamext.GetBatchSubject(s))
				n := 0
				if err == nil {
					for m, ierr := range it {
						if ierr != nil {
							err = ierr
							break
						}
						n++
						from = m.Sequence + 1
						mu.Lock()
						recs = append(recs, events.Record{Seq: m.Sequence, Subject: m.Subject, Data: m.Data, Time: m.Time})
						mu.Unlock()
					}
				}
				if err == jetstreamext.ErrNoMessages || (err == nil && n < directBatch) {
					return
				}
				if err != nil {
					mu.Lock()
					first = cmp.Or(first, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	slices.SortFunc(recs, func(a, b events.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func BenchmarkChainRead(b *testing.B) {
	l, chain, last := benchChain(b)
	ctx := context.Background()
	check := func(b *testing.B, n int) {
		if n != 50 {
			b.Fatalf("read %d chain messages, want 50", n)
		}
	}
	b.Run("hand", func(b *testing.B) {
		for b.Loop() {
			n := 0
			if err := l.ReadLiteral(ctx, chain, func(events.Record) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
			check(b, n)
		}
	})
	b.Run("hand-minseq", func(b *testing.B) {
		for b.Loop() {
			n := 0
			if err := l.ReadChain(ctx, chain, last, func(events.Record) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
			check(b, n)
		}
	})
	b.Run("jetstreamext", func(b *testing.B) {
		for b.Loop() {
			n := 0
			if err := readChainExt(ctx, l, chain, func(events.Record) error { n++; return nil }); err != nil {
				b.Fatal(err)
			}
			check(b, n)
		}
	})
}

// appendBatchExt is appendBatch written with jetstreamext.PublishMsgBatch;
// ackFirst keeps the library's default flow control (an ack of the first
// message before the rest are sent).
func (l *Log) appendBatchExt(ctx context.Context, msgs []events.Message, ackFirst bool) (uint64, error) {
	batch := make([]*nats.Msg, len(msgs))
	for i, m := range msgs {
		batch[i] = l.natsMsg(m)
		batch[i].Header.Set(jetstream.MsgIDHeader, m.ID)
		if m.ExpectSeq != nil {
			batch[i].Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(*m.ExpectSeq, 10))
		}
	}
	var opts []jetstreamext.PublishMsgBatchOpt
	if !ackFirst {
		opts = append(opts, jetstreamext.BatchFlowControl{})
	}
	ack, err := jetstreamext.PublishMsgBatch(ctx, l.js, batch, opts...)
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == codeBatchDuplicateMessage {
			return l.seqOfID(ctx, msgs[len(msgs)-1])
		}
		return 0, l.translate(err)
	}
	return ack.Sequence, nil
}

func BenchmarkBatch8(b *testing.B) {
	srv := testutil.RunServer(b)
	nc := testutil.Connect(b, srv.ClientURL())
	ctx := context.Background()
	l, err := OpenLog(ctx, nc, Config{})
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	batch := func() []events.Message {
		n++
		subj := events.Subject("agentreg", benchRoot, "agent"+strconv.Itoa(n))
		var msgs []events.Message
		for i := range 8 {
			var expect *uint64
			if i == 0 {
				expect = new(uint64)
			}
			msgs = append(msgs, events.Message{Subject: subj, Data: []byte(fmt.Sprintf("event %d of %d", i, n)), ID: ulid.Make().String(), Type: events.AgentCreated, ExpectSeq: expect})
		}
		return msgs
	}
	for _, c := range []struct {
		name string
		fn   func(context.Context, []events.Message) (uint64, error)
	}{
		{"hand", l.appendBatch},
		{"jetstreamext", func(ctx context.Context, msgs []events.Message) (uint64, error) {
			return l.appendBatchExt(ctx, msgs, false)
		}},
		{"jetstreamext-ackfirst", func(ctx context.Context, msgs []events.Message) (uint64, error) {
			return l.appendBatchExt(ctx, msgs, true)
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.fn(ctx, batch()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBatchExtKeepsCodes: jetstreamext.PublishMsgBatch returns the commit
// reply's error as *jetstream.APIError, so a wrong expected sequence
// (10071) still becomes events.ErrConflict and nothing is stored.
func TestBatchExtKeepsCodes(t *testing.T) {
	ctx := context.Background()
	srv := testutil.RunServer(t)
	l, err := OpenLog(ctx, testutil.Connect(t, srv.ClientURL()), Config{})
	if err != nil {
		t.Fatal(err)
	}
	subj := events.Subject("agentreg", benchRoot, "m")
	mk := func(expect *uint64) events.Message {
		return events.Message{Subject: subj, Data: []byte("x"), ID: ulid.Make().String(), Type: events.AgentCreated, ExpectSeq: expect}
	}
	seq, err := l.appendBatchExt(ctx, []events.Message{mk(new(uint64)), mk(nil), mk(nil)}, false)
	if err != nil || seq != 3 {
		t.Fatalf("first batch: seq %d, %v", seq, err)
	}
	_, err = l.appendBatchExt(ctx, []events.Message{mk(new(uint64)), mk(nil)}, false)
	if !errors.Is(err, events.ErrConflict) {
		t.Fatalf("conflicting batch: %v, want events.ErrConflict", err)
	}
	last, err := l.LastSeq(ctx, []string{subj})
	if err != nil || last != 3 {
		t.Fatalf("last seq %d, %v; want 3", last, err)
	}
}
