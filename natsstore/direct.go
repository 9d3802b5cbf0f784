package natsstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentreg/agentreg/events"
)

// directBatch is how many messages one direct-get request asks for.
const directBatch = 1024

// ReadLiteral reads every message of a few literal subjects (an agent's
// ancestor chain) with JetStream batched direct gets: one request per
// subject, all in flight at once, answered from the server's per-subject
// index, so the cost follows the messages on those subjects and not the
// size of the stream. fn sees the records in stream order.
func (l *Log) ReadLiteral(ctx context.Context, subjects []string, fn func(events.Record) error) error {
	return l.readDirect(ctx, subjects, 1, 0, fn)
}

// readDirect reads the messages matching each filter (literal or wildcard)
// from sequence from up to bound (0: no bound) with batched direct gets, one
// request stream per filter, no consumer: for short reads such as a
// registry's catch-up.
func (l *Log) readDirect(ctx context.Context, subjects []string, from, bound uint64, fn func(events.Record) error) error {
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	inbox := l.nc.NewRespInbox()
	// A synchronous subscription buffers whole batches (the default pending
	// limits are far above one batch); a small channel would drop them.
	sub, err := l.nc.SubscribeSync(inbox + ".*")
	if err != nil {
		return fmt.Errorf("read %v: %w", subjects, err)
	}
	defer sub.Unsubscribe()
	api := "$JS.API.DIRECT.GET." + l.cfg.Stream
	request := func(i int, from uint64) error {
		req, _ := json.Marshal(struct {
			Seq     uint64 `json:"seq"`
			NextFor string `json:"next_by_subj"`
			Batch   int    `json:"batch"`
		}{from, subjects[i], directBatch})
		return l.nc.PublishRequest(api, inbox+"."+strconv.Itoa(i), req)
	}
	for i := range subjects {
		if err := request(i, from); err != nil {
			return fmt.Errorf("read %s: %w", subjects[i], err)
		}
	}
	var recs []events.Record
	pending := len(subjects)
	for pending > 0 {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return fmt.Errorf("read %v: %w", subjects, err)
		}
		i, err := strconv.Atoi(m.Subject[len(inbox)+1:])
		if err != nil || i < 0 || i >= len(subjects) {
			continue
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "404": // no message on this subject
			pending--
			continue
		case "204": // end of batch
			last, _ := strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64)
			if np, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64); np > 0 && (bound == 0 || last < bound) {
				if err := request(i, last+1); err != nil {
					return fmt.Errorf("read %s: %w", subjects[i], err)
				}
				continue
			}
			pending--
			continue
		default:
			return fmt.Errorf("read %s: direct get answered %s %s", subjects[i], status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(serverHeader(m.Header, jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return fmt.Errorf("read %s: direct get reply without a sequence", subjects[i])
		}
		ts, err := time.Parse(time.RFC3339Nano, serverHeader(m.Header, jetstream.TimeStampHeaer))
		if err != nil {
			return fmt.Errorf("read %s: direct get reply at seq %d without a valid time stamp: %w", subjects[i], seq, err)
		}
		if bound != 0 && seq > bound {
			continue
		}
		recs = append(recs, events.Record{Seq: seq, Subject: serverHeader(m.Header, jetstream.SubjectHeader), Data: m.Data, Time: ts})
	}
	slices.SortFunc(recs, func(a, b events.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// serverHeader returns the value the server set for a direct-get header.
// The server appends its Nats-Sequence, Nats-Subject and Nats-Time-Stamp
// after the headers the message was published with, so a publisher's forged
// copy comes first and the server's is the last one.
func serverHeader(h nats.Header, key string) string {
	vs := h.Values(key)
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}
