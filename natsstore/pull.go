package natsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/agentreg/agentreg/events"
)

// An ordered pull consumer of our own, for the follower and long reads.
//
// nats.go's consumers (jetstream.OrderedConsumer, Consume, Messages) tell
// a status message from a stored one by its headers: an empty body with a
// Status header (the first value) is a status. A publisher can store such
// a message (Status: 404, 408, 409 "Consumer Deleted", 100...): the client
// drops it, then sees a gap in consumer sequences and recreates its
// consumer from the same stream sequence, meets the same message again,
// and so on for ever: one forged message blinds every follower and every
// long read (TestForgedHeadersBlindNoReader).
//
// Here a reply is a stored message only when it comes with the consumer's
// ack subject as its reply ($JS.ACK.<stream>.<consumer>.<delivered>.
// <stream seq>.<consumer seq>.<time>.<pending>...). The server sets that
// subject when it delivers a message (a publisher's reply subject is where
// its publish ack goes, never stored), and the stream sequence, time and
// pending count are taken from it (nats.Msg.Metadata parses m.Reply and
// nothing else). Server status messages (heartbeats, an expired pull
// request) carry no reply.

const (
	pullBatch     = 512
	pullExpires   = 5 * time.Second
	pullHeartbeat = time.Second
	// pullSilence without any reply (message, heartbeat or status) means
	// the consumer or its server is gone: recreate it.
	pullSilence = 3 * pullHeartbeat
	// followLinger is how long the server keeps a follower's consumer
	// after it stops pulling (a process that died).
	followLinger = 30 * time.Second
)

// errStopPull ends a pull loop from its callback without an error.
var errStopPull = errors.New("stop pulling")

// puller reads filters in stream order from a start sequence with
// ephemeral pull consumers, recreating its consumer (from the sequence
// after the last one delivered) after a gap in consumer sequences, a
// silence, a reconnect or a consumer the server lost.
type puller struct {
	l       *Log
	filters []string
	next    uint64 // the next stream sequence wanted
	linger  time.Duration
	lg      *slog.Logger

	inbox    string
	q        *replyQueue
	sub      *nats.Subscription
	status   chan nats.Status
	consumer string
	serial   int
	gen      int    // pull request generation (reply subject inbox.<gen>)
	cseq     uint64 // the last consumer sequence delivered
	left     int    // messages the current pull request may still deliver
}

func (l *Log) newPuller(filters []string, from uint64, linger time.Duration, lg *slog.Logger) (*puller, error) {
	p := &puller{l: l, filters: filters, next: max(from, 1), linger: linger, lg: lg,
		inbox: l.nc.NewRespInbox(), q: newReplyQueue()}
	var err error
	p.sub, err = l.nc.Subscribe(p.inbox+".*", p.q.push)
	if err != nil {
		return nil, err
	}
	p.status = l.nc.StatusChanged(nats.CONNECTED)
	return p, nil
}

func (p *puller) close() {
	_ = p.sub.Unsubscribe()
	p.l.nc.RemoveStatusListener(p.status)
}

// create makes a new consumer starting at p.next.
func (p *puller) create(ctx context.Context) error {
	p.serial++
	name := nuid.Next() + "_" + strconv.Itoa(p.serial)
	cfg := jetstream.ConsumerConfig{
		Name:              name,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       p.next,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: p.linger,
		Replicas:          1,
		MemoryStorage:     true,
	}
	// One filter goes in the create request's subject, where permissions
	// can confine it (docs/permissions.md).
	if len(p.filters) == 1 {
		cfg.FilterSubject = p.filters[0]
	} else {
		cfg.FilterSubjects = p.filters
	}
	cctx, cancel := withTimeout(ctx, p.l.cfg.Timeout)
	defer cancel()
	if _, err := p.l.js.CreateConsumer(cctx, p.l.cfg.Stream, cfg); err != nil {
		return fmt.Errorf("consumer on %v from seq %d: %w", p.filters, p.next, err)
	}
	p.consumer, p.cseq, p.left = name, 0, 0
	return p.pull()
}

// pull asks the consumer for the next batch.
func (p *puller) pull() error {
	p.gen++
	p.left = pullBatch
	req, _ := json.Marshal(struct {
		Batch     int           `json:"batch"`
		Expires   time.Duration `json:"expires"`
		Heartbeat time.Duration `json:"idle_heartbeat"`
	}{pullBatch, pullExpires, pullHeartbeat})
	return p.l.nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+p.l.cfg.Stream+"."+p.consumer,
		p.inbox+"."+strconv.Itoa(p.gen), req)
}

// recreate replaces the consumer, retrying until ctx ends.
func (p *puller) recreate(ctx context.Context, why string) error {
	for try := 0; ; try++ {
		err := p.create(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.lg.Warn("consumer: recreate", "stream", p.l.cfg.Stream, "why", why, "from_seq", p.next, "err", err)
		t := time.NewTimer(min(100*time.Millisecond<<min(try, 4), 2*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// run calls fn for each message in stream order until ctx ends or fn
// returns an error (errStopPull: nil). The consumer must have been
// created.
func (p *puller) run(ctx context.Context, fn func(r events.Record, pending uint64) error) error {
	tick := time.NewTicker(pullHeartbeat)
	defer tick.Stop()
	heard := time.Now()
	for {
		m, ok := p.q.pop()
		if !ok {
			why := ""
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-p.q.ready:
			case <-p.status:
				why = "reconnected"
			case <-tick.C:
				if time.Since(heard) > pullSilence {
					why = "no heartbeat"
				}
			}
			if why != "" {
				if err := p.recreate(ctx, why); err != nil {
					return err
				}
				heard = time.Now()
			}
			continue
		}
		heard = time.Now()
		if !strings.HasPrefix(m.Reply, "$JS.ACK.") {
			// A status from the server: it has no reply subject, and comes
			// on the reply subject of the request it answers.
			if m.Subject != p.inbox+"."+strconv.Itoa(p.gen) {
				continue // about an earlier request or consumer
			}
			switch st := m.Header.Get("Status"); {
			case st == "100": // idle heartbeat
			case st == "409" && !strings.Contains(strings.ToLower(m.Header.Get("Description")), "batch completed") &&
				!strings.Contains(strings.ToLower(m.Header.Get("Description")), "exceeded maxwaiting"):
				// Consumer deleted, leadership change, server shutdown...
				if err := p.recreate(ctx, "status 409 "+m.Header.Get("Description")); err != nil {
					return err
				}
			default: // 408 the request expired, 404 nothing more now: ask again
				if err := p.pull(); err != nil {
					return fmt.Errorf("pull from %v: %w", p.filters, err)
				}
			}
			continue
		}
		meta, err := m.Metadata()
		if err != nil || meta.Consumer != p.consumer {
			continue
		}
		if meta.Sequence.Consumer != p.cseq+1 {
			// A message lost on the way: start again after the last one.
			if err := p.recreate(ctx, fmt.Sprintf("consumer sequence %d after %d", meta.Sequence.Consumer, p.cseq)); err != nil {
				return err
			}
			continue
		}
		p.cseq = meta.Sequence.Consumer
		p.left--
		if meta.Sequence.Stream >= p.next {
			p.next = meta.Sequence.Stream + 1
			err := fn(events.Record{Seq: meta.Sequence.Stream, Subject: m.Subject, Data: m.Data, Time: meta.Timestamp,
				MsgID: m.Header.Get(jetstream.MsgIDHeader)}, meta.NumPending)
			if errors.Is(err, errStopPull) {
				return nil
			}
			if err != nil {
				return err
			}
		}
		if p.left == 0 {
			if err := p.pull(); err != nil {
				return fmt.Errorf("pull from %v: %w", p.filters, err)
			}
		}
	}
}
