package natsstore

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/agentreg/agentreg/events"
)

// LastStreamSeq returns the stream's last sequence, 0 if it is empty. It
// asks the stream (its leader, on a cluster) for its state without a
// subject filter: one request whose cost does not grow with the stream, the
// number of subjects or the size of any root.
func (l *Log) LastStreamSeq(ctx context.Context) (uint64, error) {
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s: last sequence: %w", l.cfg.Stream, err)
	}
	return info.State.LastSeq, nil
}

// Follower is a running Follow; Stop ends it.
type Follower struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// Stop stops the follower and waits until fn is no longer called.
func (f *Follower) Stop() {
	f.cancel()
	<-f.done
}

// Follow calls fn, in stream order, for every message of the log with
// sequence > after, as it arrives, through one ordered pull consumer on
// the whole event prefix (pull.go). fn runs on one goroutine and must not
// block for long: every later message waits for it. The consumer
// recreates itself after a server restart, a reconnect or a cluster leader
// change and resumes after the last message delivered; errors it meets on
// the way are logged on lg.
//
// Each record's sequence, time and pending count come from the reply
// subject the server delivered the message with (its $JS.ACK subject),
// never from headers: a publisher's forged Nats-Sequence or Status header
// neither moves a record nor turns it into a status (pull.go).
func (l *Log) Follow(ctx context.Context, after uint64, lg *slog.Logger, fn func(r events.Record, pending uint64)) (*Follower, error) {
	p, err := l.newPuller([]string{l.cfg.Prefix + ".>"}, after+1, followLinger, lg)
	if err != nil {
		return nil, fmt.Errorf("follow stream %s after seq %d: %w", l.cfg.Stream, after, err)
	}
	if err := p.create(ctx); err != nil {
		p.close()
		return nil, fmt.Errorf("follow stream %s after seq %d: %w", l.cfg.Stream, after, err)
	}
	fctx, cancel := context.WithCancel(context.Background())
	f := &Follower{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer p.close()
		err := p.run(fctx, func(r events.Record, pending uint64) error {
			fn(r, pending)
			return nil
		})
		if err != nil && fctx.Err() == nil {
			lg.Warn("follower stopped", "stream", l.cfg.Stream, "err", err)
		}
	}()
	return f, nil
}

// StoredID returns the stream sequence of the message stored on subject
// with id as its Nats-Msg-Id (the event id), false if the subject holds
// none. It reads the subject's messages (a literal subject: one agent's
// events), so it finds a message however long ago it was stored and
// however many came after it: what makes a retried write exactly-once
// after the server's dedupe window.
func (l *Log) StoredID(ctx context.Context, subject, id string) (uint64, bool, error) {
	var seq uint64
	err := l.ReadLiteral(ctx, []string{subject}, func(r events.Record) error {
		if seq == 0 && r.MsgID == id {
			seq = r.Seq
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("look up event %s on %s: %w", id, subject, err)
	}
	return seq, seq != 0, nil
}
