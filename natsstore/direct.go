package natsstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentreg/agentreg/events"
)

// directBatch is how many messages one direct-get request asks for.
const directBatch = 1024

// ReadLiteral reads every message of a few literal subjects (an agent's
// ancestor chain): ReadChain with no minimum sequence.
func (l *Log) ReadLiteral(ctx context.Context, subjects []string, fn func(events.Record) error) error {
	return l.ReadChain(ctx, subjects, 0, fn)
}

// ReadChain reads every message of a few literal subjects (an agent's
// ancestor chain) with JetStream batched direct gets: one request per
// subject, all in flight at once, answered from the server's per-subject
// index, so the cost follows the messages on those subjects and not the
// size of the stream. fn sees the records in stream order.
//
// With minSeq > 0 (the sequence an append returned) the records include
// every message on those subjects up to at least minSeq, whichever replica
// answers: on a replicated stream a direct get may be answered by a
// replica a moment behind the leader. The server (2.15) has no request
// field for this (a 2.12 pre-release had min_last_seq; it was removed
// before 2.12.0 and is ignored if sent), so ReadChain proves it: one more
// direct get in the same flight asks for the last message of each subject
// (multi_last), whose end-of-batch reply carries the answering replica's
// last stream sequence; from a replica holding minSeq that is how far each
// subject must be read. A subject read that ends short of it came from a
// lagging replica and is asked again from where it stopped, and a replica
// behind minSeq is asked again, with a pause growing to 50ms, until ctx
// (or the log's Timeout) ends; then ReadChain fails naming minSeq. When no
// subject holds a message the stream leader is asked instead.
func (l *Log) ReadChain(ctx context.Context, subjects []string, minSeq uint64, fn func(events.Record) error) error {
	return l.readDirectMin(ctx, subjects, 1, 0, minSeq, fn)
}

// readDirect reads the messages matching each filter (literal or wildcard)
// from sequence from up to bound (0: no bound) with batched direct gets, one
// request stream per filter, no consumer: for short reads such as a
// registry's catch-up.
func (l *Log) readDirect(ctx context.Context, subjects []string, from, bound uint64, fn func(events.Record) error) error {
	return l.readDirectMin(ctx, subjects, from, bound, 0, fn)
}

// Headers of direct-get replies.
const (
	hdrStatus     = "Status"
	hdrNumPending = "Nats-Num-Pending"
	hdrUpToSeq    = "Nats-UpTo-Sequence"
)

// directReply is a direct-get reply classified by what the server set.
type directReply struct {
	status string // "" for a message, else the server's status (204, 404, 408...)
	desc   string
	rec    events.Record
}

// classify tells a stored message from a status reply. Every stored
// message the server sends carries the Nats-Sequence, Nats-Subject and
// Nats-Time-Stamp it appends after the publisher's headers; a status reply
// (an inline "NATS/1.0 204 EOB" status line, which the server strips from
// published messages) carries none. A publisher's own Status, Description,
// Nats-Sequence, Nats-Subject or Nats-Time-Stamp headers therefore neither
// turn a message into a status nor change its sequence, subject or time.
func classify(m *nats.Msg) (directReply, error) {
	if len(m.Header.Values(jetstream.SequenceHeader)) == 0 {
		vs := m.Header.Values(hdrStatus)
		if len(vs) == 0 {
			return directReply{}, fmt.Errorf("direct get reply with neither a message nor a status")
		}
		return directReply{status: vs[len(vs)-1], desc: serverHeader(m.Header, "Description")}, nil
	}
	seq, err := strconv.ParseUint(serverHeader(m.Header, jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return directReply{}, fmt.Errorf("direct get reply without a valid sequence")
	}
	ts, err := time.Parse(time.RFC3339Nano, serverHeader(m.Header, jetstream.TimeStampHeaer))
	if err != nil {
		return directReply{}, fmt.Errorf("direct get reply at seq %d without a valid time stamp: %w", seq, err)
	}
	return directReply{rec: events.Record{Seq: seq, Subject: serverHeader(m.Header, jetstream.SubjectHeader), Data: m.Data, Time: ts,
		MsgID: m.Header.Get(jetstream.MsgIDHeader)}}, nil
}

// readDirectMin is readDirect that, with minSeq > 0, reads each subject at
// least as far as a replica holding stream sequence minSeq has it (see
// ReadChain).
func (l *Log) readDirectMin(ctx context.Context, subjects []string, from, bound, minSeq uint64, fn func(events.Record) error) error {
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	inbox := l.nc.NewRespInbox()
	q := newReplyQueue()
	// Not a synchronous subscription: its NextMsg turns any message with an
	// empty body and a Status 503 header into nats.ErrNoResponders and
	// drops it, and a publisher can store such a message.
	sub, err := l.nc.Subscribe(inbox+".*", q.push)
	if err != nil {
		return fmt.Errorf("read %v: %w", subjects, err)
	}
	defer sub.Unsubscribe()
	api := "$JS.API.DIRECT.GET." + l.cfg.Stream
	// Each request stream answers on its own token; a request asked again
	// (after a lagging replica) gets a new generation, so late replies to
	// the earlier one are recognised and dropped.
	gen := make([]int, len(subjects))
	request := func(i int, from uint64) error {
		gen[i]++
		req, _ := json.Marshal(struct {
			Seq     uint64 `json:"seq"`
			NextFor string `json:"next_by_subj"`
			Batch   int    `json:"batch"`
		}{from, subjects[i], directBatch})
		return l.nc.PublishRequest(api, inbox+"."+strconv.Itoa(i)+"-"+strconv.Itoa(gen[i]), req)
	}
	next := make([]uint64, len(subjects)) // the next sequence to read per subject
	for i := range subjects {
		next[i] = from
		if err := request(i, from); err != nil {
			return fmt.Errorf("read %s: %w", subjects[i], err)
		}
	}
	pending := len(subjects)

	// With minSeq: target[i] is the sequence subject i must be read up to,
	// known once a replica holding minSeq has said (known).
	var (
		target   = make([]uint64, len(subjects))
		ended    = make([]bool, len(subjects)) // a read that ended before targets were known
		tries    = make([]int, len(subjects))
		known    bool
		lastGen  int
		mtries   int
		newest   uint64 // the newest stream sequence a replica reported
		multiKey = func() string { return inbox + ".m-" + strconv.Itoa(lastGen) }
	)
	multi := func() error {
		lastGen++
		req, _ := json.Marshal(struct {
			MultiLast []string `json:"multi_last"`
		}{subjects})
		return l.nc.PublishRequest(api, multiKey(), req)
	}
	pause := func(n int) error {
		t := time.NewTimer(min(time.Millisecond<<min(n, 6), 50*time.Millisecond))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	lagErr := func(err error) error {
		return fmt.Errorf("read %v with min seq %d: no replica of stream %s answered holding seq %d (newest seen %d): %w",
			subjects, minSeq, l.cfg.Stream, minSeq, newest, err)
	}
	// finish: subject i's request stream ended. With minSeq it is done
	// only when it reached its target.
	finish := func(i int) error {
		if minSeq == 0 {
			pending--
			return nil
		}
		if !known {
			ended[i] = true
			return nil
		}
		if next[i] > target[i] {
			pending--
			return nil
		}
		// Answered by a replica that lacks messages another one holding
		// minSeq has: ask again from where it stopped.
		tries[i]++
		if err := pause(tries[i]); err != nil {
			return lagErr(err)
		}
		return request(i, next[i])
	}
	if minSeq > 0 {
		if err := multi(); err != nil {
			return fmt.Errorf("read %v: %w", subjects, err)
		}
		pending++
	}
	setTargets := func(t []uint64) error {
		copy(target, t)
		known = true
		pending--
		for i := range subjects {
			if ended[i] {
				ended[i] = false
				if err := finish(i); err != nil {
					return err
				}
			}
		}
		return nil
	}

	var recs []events.Record
	for pending > 0 {
		m, err := q.next(ctx)
		if err != nil {
			if minSeq > 0 && ctx.Err() != nil {
				return lagErr(err)
			}
			return fmt.Errorf("read %v: %w", subjects, err)
		}
		if minSeq > 0 && len(m.Subject) > len(inbox)+3 && m.Subject[len(inbox)+1] == 'm' {
			if m.Subject != multiKey() || known {
				continue
			}
			r, err := classify(m)
			if err != nil {
				return fmt.Errorf("read %v: last messages: %w", subjects, err)
			}
			switch r.status {
			case "": // the last message of one subject on that replica
				if j := slices.Index(subjects, r.rec.Subject); j >= 0 {
					target[j] = r.rec.Seq
				}
				continue
			case "204": // end: the replica's last stream sequence
				upTo, _ := strconv.ParseUint(m.Header.Get(hdrUpToSeq), 10, 64)
				newest = max(newest, upTo)
				if upTo >= minSeq {
					if err := setTargets(target); err != nil {
						return err
					}
					continue
				}
			case "404": // no message on any subject on that replica
				t, ok, err := l.leaderTargets(ctx, subjects, minSeq)
				if err != nil {
					return fmt.Errorf("read %v with min seq %d: %w", subjects, minSeq, err)
				}
				if ok {
					if err := setTargets(t); err != nil {
						return err
					}
					continue
				}
			default:
				return fmt.Errorf("read %v: last messages: direct get answered %s %s", subjects, r.status, r.desc)
			}
			// A replica behind minSeq: ask again.
			clear(target)
			mtries++
			if err := pause(mtries); err != nil {
				return lagErr(err)
			}
			if err := multi(); err != nil {
				return fmt.Errorf("read %v: %w", subjects, err)
			}
			continue
		}
		var i, g int
		if _, err := fmt.Sscanf(m.Subject[len(inbox)+1:], "%d-%d", &i, &g); err != nil || i < 0 || i >= len(subjects) || g != gen[i] {
			continue
		}
		r, err := classify(m)
		if err != nil {
			return fmt.Errorf("read %s: %w", subjects[i], err)
		}
		switch r.status {
		case "":
		case "404": // no message on this subject from next[i]
			if err := finish(i); err != nil {
				return err
			}
			continue
		case "204": // end of batch
			if np, _ := strconv.ParseUint(m.Header.Get(hdrNumPending), 10, 64); np > 0 && (bound == 0 || next[i] <= bound) {
				if err := request(i, next[i]); err != nil {
					return fmt.Errorf("read %s: %w", subjects[i], err)
				}
				continue
			}
			if err := finish(i); err != nil {
				return err
			}
			continue
		case "503":
			return fmt.Errorf("read %s: %w", subjects[i], nats.ErrNoResponders)
		default:
			return fmt.Errorf("read %s: direct get answered %s %s", subjects[i], r.status, r.desc)
		}
		if r.rec.Seq < next[i] {
			continue // not what was asked for
		}
		next[i] = r.rec.Seq + 1
		if bound != 0 && r.rec.Seq > bound {
			continue
		}
		recs = append(recs, r.rec)
	}
	slices.SortFunc(recs, func(a, b events.Record) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// replyQueue holds the replies to a read's requests, in arrival order,
// without limit (the subscription's pending limits still apply).
type replyQueue struct {
	mu    sync.Mutex
	msgs  []*nats.Msg
	ready chan struct{}
}

func newReplyQueue() *replyQueue { return &replyQueue{ready: make(chan struct{}, 1)} }

func (q *replyQueue) push(m *nats.Msg) {
	q.mu.Lock()
	q.msgs = append(q.msgs, m)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop returns the oldest reply, false if there is none now.
func (q *replyQueue) pop() (*nats.Msg, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.msgs) == 0 {
		return nil, false
	}
	m := q.msgs[0]
	q.msgs[0] = nil
	q.msgs = q.msgs[1:]
	return m, true
}

func (q *replyQueue) next(ctx context.Context) (*nats.Msg, error) {
	for {
		q.mu.Lock()
		if len(q.msgs) > 0 {
			m := q.msgs[0]
			q.msgs[0] = nil
			q.msgs = q.msgs[1:]
			q.mu.Unlock()
			return m, nil
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// leaderTargets asks the stream leader (the plain message get and stream
// info are answered by the leader only) for the last sequence of each
// subject; ok is false while the leader does not hold minSeq.
func (l *Log) leaderTargets(ctx context.Context, subjects []string, minSeq uint64) ([]uint64, bool, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("stream %s info from the leader: %w", l.cfg.Stream, err)
	}
	if info.State.LastSeq < minSeq {
		return nil, false, nil
	}
	target := make([]uint64, len(subjects))
	for i, s := range subjects {
		req, _ := json.Marshal(struct {
			LastFor string `json:"last_by_subj"`
		}{s})
		msg, err := l.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+l.cfg.Stream, req)
		if err != nil {
			return nil, false, fmt.Errorf("last message on %s from the stream leader: %w", s, err)
		}
		var resp struct {
			Message *struct {
				Seq uint64 `json:"seq"`
			} `json:"message"`
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return nil, false, fmt.Errorf("last message on %s from the stream leader: reply %.80q: %w", s, msg.Data, err)
		}
		switch {
		case resp.Error != nil && resp.Error.ErrorCode == codeNoMessageFound:
		case resp.Error != nil:
			return nil, false, fmt.Errorf("last message on %s from the stream leader: %w", s, resp.Error)
		case resp.Message == nil:
			return nil, false, errors.New("last message on " + s + " from the stream leader: reply holds no message")
		default:
			target[i] = resp.Message.Seq
		}
	}
	return target, true, nil
}

// codeNoMessageFound is JetStream's "no message found" error code.
const codeNoMessageFound = 10037

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
