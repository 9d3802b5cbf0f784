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
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	inbox := l.nc.NewRespInbox()
	ch := make(chan *nats.Msg, 256)
	sub, err := l.nc.ChanSubscribe(inbox+".*", ch)
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
		if err := request(i, 1); err != nil {
			return fmt.Errorf("read %s: %w", subjects[i], err)
		}
	}
	var recs []events.Record
	pending := len(subjects)
	for pending > 0 {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-ctx.Done():
			return fmt.Errorf("read %v: %w", subjects, ctx.Err())
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
			if np, _ := strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64); np > 0 {
				last, _ := strconv.ParseUint(m.Header.Get(jetstream.LastSequenceHeader), 10, 64)
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
		seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return fmt.Errorf("read %s: direct get reply without a sequence", subjects[i])
		}
		ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
		recs = append(recs, events.Record{Seq: seq, Subject: m.Header.Get(jetstream.SubjectHeader), Data: m.Data, Time: ts})
	}
	slices.SortFunc(recs, func(a, b events.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}
