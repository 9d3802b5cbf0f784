package natsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentreg/agentreg/events"
)

// Headers every event message carries besides its body, so that an
// operator reading the stream with `nats stream view` sees what it is.
const (
	HeaderType    = "Agentreg-Type"
	HeaderVersion = "Agentreg-Version"
)

// JetStream API error codes translated at this boundary.
const (
	codeWrongLastSeq          = 10071 // wrong last sequence: {seq}
	codeWrongLastSeqConstant  = 10164 // wrong last sequence (replicated streams)
	codeBatchDuplicateMessage = 10201 // atomic batch holds an already stored Nats-Msg-Id
	codeStoreFailed           = 10077 // storing failed: {err}, among them the stream's limits
	codeInsufficientResources = 10023 // the server's JetStream storage limit is reached
	codeStorageExceeded       = 10047 // insufficient storage resources available
)

// ErrFull: the stream (its max_bytes) or the server's JetStream storage
// has no room for an append. Nothing of the append was stored and no
// stored event was dropped (the stream discards new messages, never old
// ones); reads go on.
var ErrFull = errors.New("event log full")

// Config names the stream and buckets and sets their limits. The zero value
// of each field takes the default shown.
type Config struct {
	Prefix         string        // subject prefix; default "agentreg"
	Stream         string        // stream name; default "AGENTREG"
	SnapshotBucket string        // object store for snapshot bodies; default "AGENTREG_SNAPSHOTS"
	SnapshotIndex  string        // KV bucket indexing snapshots per root; default "AGENTREG_SNAPINDEX"
	Replicas       int           // stream and bucket replicas; default 1 (use 3 on a cluster)
	Duplicates     time.Duration // dedupe window for retried appends; default 2m
	MaxBytes       int64         // stream size limit; default unlimited (-1). Full: appends fail, nothing is dropped
	Timeout        time.Duration // per-request timeout when ctx has no deadline; default 10s
	// AllowDeletes creates the stream with message deletes and purges
	// allowed. By default OpenLog creates it with both denied (deny_delete,
	// deny_purge): an event log never loses an event, and the server
	// refuses `nats stream rmm` and `nats stream purge` whatever the
	// caller's permissions. For tests that tamper with a stream; a
	// deployment leaves it false. It applies only when the stream is
	// created.
	AllowDeletes bool
	// Logger receives OpenLog's warnings (an existing stream that allows
	// deletes or purges); default slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = "agentreg"
	}
	if c.Stream == "" {
		c.Stream = "AGENTREG"
	}
	if c.SnapshotBucket == "" {
		c.SnapshotBucket = c.Stream + "_SNAPSHOTS"
	}
	if c.SnapshotIndex == "" {
		c.SnapshotIndex = c.Stream + "_SNAPINDEX"
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Duplicates == 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = -1
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Log is the event log on a JetStream stream: append with optimistic
// concurrency per agent subject, atomic multi-event append, and reads of a
// root's subtree. It is safe for concurrent use.
type Log struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	cfg    Config
}

// OpenLog creates the stream if it does not exist, or checks that an
// existing one has the settings the log relies on.
//
// A stream it creates denies message deletes and purges (unless
// cfg.AllowDeletes): the server refuses them to every user, and a stream's
// deny_delete and deny_purge cannot be turned off by editing it. An
// existing stream that allows them is still opened, with a warning on
// cfg.Logger: OpenLog never changes a stream, that is the operator's
// decision (docs/permissions.md).
func OpenLog(ctx context.Context, nc *nats.Conn, cfg Config) (*Log, error) {
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	want := jetstream.StreamConfig{
		Name:               cfg.Stream,
		Description:        "agentreg event log: one subject per agent, " + cfg.Prefix + ".<root>.<path>",
		Subjects:           []string{cfg.Prefix + ".>"},
		Storage:            jetstream.FileStorage,
		Replicas:           cfg.Replicas,
		Duplicates:         cfg.Duplicates,
		MaxBytes:           cfg.MaxBytes,
		Discard:            jetstream.DiscardNew,
		AllowDirect:        true,
		AllowAtomicPublish: true,
		DenyDelete:         !cfg.AllowDeletes,
		DenyPurge:          !cfg.AllowDeletes,
	}
	ctx, cancel := withTimeout(ctx, cfg.Timeout)
	defer cancel()
	stream, err := js.Stream(ctx, cfg.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		stream, err = js.CreateStream(ctx, want)
		if err != nil {
			return nil, fmt.Errorf("create stream %s: %w", cfg.Stream, err)
		}
	case err != nil:
		return nil, fmt.Errorf("look up stream %s: %w", cfg.Stream, err)
	default:
		got := stream.CachedInfo().Config
		if err := checkStream(got, want); err != nil {
			return nil, err
		}
		if (!got.DenyDelete || !got.DenyPurge) && !cfg.AllowDeletes {
			cfg.Logger.Warn("stream allows deleting or purging events: a deleted event silently changes what the registry says from the next load on, "+
				"and every later event of that agent fails its hash chain; deletes and purges cannot be denied by editing the stream, "+
				"see docs/permissions.md to recreate it with them denied",
				"stream", got.Name, "deny_delete", got.DenyDelete, "deny_purge", got.DenyPurge)
		}
	}
	return &Log{nc: nc, js: js, stream: stream, cfg: cfg}, nil
}

// ErrNoStream: the stream does not exist (a reader does not create it).
var ErrNoStream = errors.New("stream not found")

// ExistingLog opens the log on a stream that must exist already, and never
// changes it: for tools that only read.
func ExistingLog(ctx context.Context, nc *nats.Conn, cfg Config) (*Log, error) {
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	ctx, cancel := withTimeout(ctx, cfg.Timeout)
	defer cancel()
	stream, err := js.Stream(ctx, cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s: %w; is this the right server, data directory or --stream?", cfg.Stream, ErrNoStream)
	}
	if err != nil {
		return nil, fmt.Errorf("look up stream %s: %w", cfg.Stream, err)
	}
	return &Log{nc: nc, js: js, stream: stream, cfg: cfg}, nil
}

// Subjects lists the stream's subjects matching filter that hold messages,
// sorted.
func (l *Log) Subjects(ctx context.Context, filter string) ([]string, error) {
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	info, err := l.stream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("list subjects %s: %w", filter, err)
	}
	out := make([]string, 0, len(info.State.Subjects))
	for s := range info.State.Subjects {
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// StreamState returns the stream's current state (counts, first and last
// sequence, and the sequences of deleted messages).
func (l *Log) StreamState(ctx context.Context) (jetstream.StreamState, error) {
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	info, err := l.stream.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		return jetstream.StreamState{}, fmt.Errorf("stream %s info: %w", l.cfg.Stream, err)
	}
	return info.State, nil
}

// checkStream reports the first setting of an existing stream that the log
// cannot work with. It does not change the stream: that is the operator's
// decision.
func checkStream(got, want jetstream.StreamConfig) error {
	fix := "; change it with `nats stream edit " + got.Name + "` or point agentreg at another stream"
	if !slices.Contains(got.Subjects, want.Subjects[0]) {
		return fmt.Errorf("stream %s exists with subjects %v, which do not include %q%s", got.Name, got.Subjects, want.Subjects[0], fix)
	}
	if !got.AllowAtomicPublish {
		return fmt.Errorf("stream %s exists without allow_atomic (atomic batch publish)%s", got.Name, fix)
	}
	if !got.AllowDirect {
		return fmt.Errorf("stream %s exists without allow_direct%s", got.Name, fix)
	}
	if got.Discard != jetstream.DiscardNew || got.MaxAge != 0 || got.MaxMsgs > 0 || got.MaxMsgsPerSubject > 0 {
		return fmt.Errorf("stream %s would drop old events (discard=%s max_age=%s max_msgs=%d max_msgs_per_subject=%d): an event log must keep them%s",
			got.Name, got.Discard, got.MaxAge, got.MaxMsgs, got.MaxMsgsPerSubject, fix)
	}
	return nil
}

// Config returns the configuration with defaults filled.
func (l *Log) Config() Config { return l.cfg }

// JetStream returns the JetStream context the log uses.
func (l *Log) JetStream() jetstream.JetStream { return l.js }

// Append stores msgs: one message with a plain publish, several as one
// JetStream atomic batch (all stored or none). It returns the stream
// sequence of the last message. A message whose ExpectSeq does not match its
// subject fails the append with events.ErrConflict; a retried append of the
// same event ids is stored once.
func (l *Log) Append(ctx context.Context, msgs []events.Message) (uint64, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	if len(msgs) == 1 {
		a, err := l.AppendEvent(ctx, msgs[0])
		return a.Seq, err
	}
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	return l.appendBatch(ctx, msgs)
}

// Appended is what a single append reached.
type Appended struct {
	Seq uint64
	// Stored before: the message id was already on its subject (an
	// earlier attempt stored it, or another process with the same id
	// did); Seq is that copy's, and the stored bytes may differ from m's.
	Duplicate bool
}

// AppendEvent stores one message with its id as Nats-Msg-Id and, when set,
// its expected last subject sequence, and says whether it stored it now or
// found it stored before. A message whose expected sequence does not match
// fails with events.ErrConflict, unless its id is on its subject already
// (the server checks the expected sequence before its dedupe window, so a
// retry of an append whose ack was lost reports a conflict).
func (l *Log) AppendEvent(ctx context.Context, m events.Message) (Appended, error) {
	// The JetStream client applies its own timeout when ctx has none.
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(m.ID)}
	if m.ExpectSeq != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*m.ExpectSeq))
	}
	ack, err := l.js.PublishMsg(ctx, l.natsMsg(m), opts...)
	if err != nil {
		err = l.translate(err)
		if errors.Is(err, events.ErrConflict) {
			if seq, ok := l.storedAsLast(ctx, m); ok {
				return Appended{Seq: seq, Duplicate: true}, nil
			}
		}
		return Appended{}, fmt.Errorf("append %s %s to %s: %w", m.Type, m.ID, m.Subject, err)
	}
	return Appended{Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// AppendPipelined appends each message as its own single-event append
// (with its own optimistic concurrency check and dedupe id), sending them
// all before waiting for any acknowledgement: many agents written at the
// cost of one round trip. It returns each message's stream sequence; on
// failure the error of the first failed message (others may be stored).
func (l *Log) AppendPipelined(ctx context.Context, msgs []events.Message) ([]uint64, error) {
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(m.ID)}
		if m.ExpectSeq != nil {
			opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*m.ExpectSeq))
		}
		f, err := l.js.PublishMsgAsync(l.natsMsg(m), opts...)
		if err != nil {
			return nil, fmt.Errorf("append %s %s to %s: %w", m.Type, m.ID, m.Subject, err)
		}
		futures[i] = f
	}
	seqs := make([]uint64, len(msgs))
	var first error
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			seqs[i] = ack.Sequence
		case err := <-f.Err():
			err = l.translate(err)
			if errors.Is(err, events.ErrConflict) {
				if seq, ok := l.storedAsLast(ctx, msgs[i]); ok {
					seqs[i] = seq
					continue
				}
			}
			if first == nil {
				first = fmt.Errorf("append %s %s to %s: %w", msgs[i].Type, msgs[i].ID, msgs[i].Subject, err)
			}
		case <-ctx.Done():
			return seqs, fmt.Errorf("append %d messages: %w", len(msgs), ctx.Err())
		}
	}
	return seqs, first
}

func (l *Log) natsMsg(m events.Message) *nats.Msg {
	msg := nats.NewMsg(m.Subject)
	msg.Data = m.Data
	msg.Header.Set(HeaderType, string(m.Type))
	msg.Header.Set(HeaderVersion, strconv.Itoa(int(events.SchemaVersion)))
	return msg
}

// storedAsLast reports whether m is stored on its subject: a retried
// append whose first attempt was stored (its ack lost) finds the subject
// moved on, by its own message or by later ones, and must not report a
// conflict for its own write.
func (l *Log) storedAsLast(ctx context.Context, m events.Message) (uint64, bool) {
	seq, ok, err := l.StoredID(ctx, m.Subject, m.ID)
	if err != nil {
		return 0, false
	}
	return seq, ok
}

// seqOfID finds the sequence of an already stored message on m's subject
// (a batch stored by an earlier attempt).
func (l *Log) seqOfID(ctx context.Context, m events.Message) (uint64, error) {
	seq, ok, err := l.StoredID(ctx, m.Subject, m.ID)
	if err != nil {
		return 0, fmt.Errorf("append %s: batch was stored before; look up its sequence: %w", m.ID, err)
	}
	if !ok {
		return 0, fmt.Errorf("append %s: the server reports the batch stored, yet %s does not hold it", m.ID, m.Subject)
	}
	return seq, nil
}

// translate maps JetStream errors to the domain's sentinels: a wrong
// expected sequence to events.ErrConflict, a full stream or server to
// ErrFull with the limit and what to do.
func (l *Log) translate(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case codeWrongLastSeq, codeWrongLastSeqConstant:
			return fmt.Errorf("%w (%s)", events.ErrConflict, apiErr.Description)
		case codeStoreFailed:
			if strings.HasPrefix(apiErr.Description, "maximum ") { // bytes, messages, messages per subject
				limit := "max_bytes unlimited"
				if mb := l.stream.CachedInfo().Config.MaxBytes; mb > 0 {
					limit = fmt.Sprintf("max_bytes %d", mb)
				}
				return fmt.Errorf("stream %s is full (%s, %s): nothing of this append was stored and no event was dropped; "+
					"raise the limit with `nats stream edit %s --max-bytes` (natsstore.Config.MaxBytes applies only when the stream is created) "+
					"or move to a new stream: %w", l.cfg.Stream, apiErr.Description, limit, l.cfg.Stream, ErrFull)
			}
		case codeInsufficientResources, codeStorageExceeded:
			return fmt.Errorf("the NATS server's JetStream storage is full (%s) while appending to stream %s: nothing of this append was stored; "+
				"free disk space or raise the server's jetstream max_file_store (or the account's storage limit): %w",
				apiErr.Description, l.cfg.Stream, ErrFull)
		}
	}
	return err
}

// LastRootSeq returns the stream sequence of the newest message in root's
// subtree, 0 if it has none. Two direct gets, independent of stream size.
func (l *Log) LastRootSeq(ctx context.Context, root string) (uint64, error) {
	return l.LastSeq(ctx, events.RootSubjects(l.cfg.Prefix, root))
}

// LastSeq returns the stream sequence of the newest message on any of the
// subjects (wildcards allowed), 0 if none. One last-by-subject direct get
// per subject, all in flight at once; each reply is classified and read by
// the values the server set (lastBySubject), never by headers a publisher
// wrote.
func (l *Log) LastSeq(ctx context.Context, subjects []string) (uint64, error) {
	ctx, cancel := withTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	type result struct {
		seq uint64
		err error
	}
	results := make(chan result, len(subjects))
	for _, s := range subjects {
		go func() {
			seq, err := l.lastBySubject(ctx, s)
			results <- result{seq, err}
		}()
	}
	var last uint64
	var first error
	for range subjects {
		r := <-results
		if r.err != nil && first == nil {
			first = r.err
		}
		last = max(last, r.seq)
	}
	return last, first
}

// lastBySubject returns the stream sequence of the newest message on
// subject (wildcards allowed), 0 if there is none, with one direct get.
//
// nats.go's Stream.GetLastMsgForSubject is not used: it reads the reply's
// Nats-Sequence with Header.Get, the first value, which is the publisher's
// when it stored a message with a forged Nats-Sequence header (the server
// appends its own after the publisher's), and its synchronous request turns
// a stored empty message with a Status: 503 header into ErrNoResponders.
// Here the reply arrives on a callback subscription and is classified by
// the server-set headers only (classify: a message carries the server's
// Nats-Sequence, a status reply has none).
func (l *Log) lastBySubject(ctx context.Context, subject string) (uint64, error) {
	inbox := l.nc.NewRespInbox()
	q := newReplyQueue()
	sub, err := l.nc.Subscribe(inbox, q.push)
	if err != nil {
		return 0, fmt.Errorf("last message on %s: %w", subject, err)
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	if err := l.nc.PublishRequest("$JS.API.DIRECT.GET."+l.cfg.Stream, inbox, req); err != nil {
		return 0, fmt.Errorf("last message on %s: %w", subject, err)
	}
	m, err := q.next(ctx)
	if err != nil {
		return 0, fmt.Errorf("last message on %s: %w", subject, err)
	}
	r, err := classify(m)
	if err != nil {
		return 0, fmt.Errorf("last message on %s: %w", subject, err)
	}
	switch r.status {
	case "":
		return r.rec.Seq, nil
	case "404":
		return 0, nil
	case "503":
		return 0, fmt.Errorf("last message on %s: %w", subject, nats.ErrNoResponders)
	default:
		return 0, fmt.Errorf("last message on %s: direct get answered %s %s", subject, r.status, r.desc)
	}
}

// ReadRoot calls fn, in stream order, for every message of root's subtree
// with sequence >= from, up to the newest one present when ReadRoot
// started. It returns that bound (0 if the subtree is empty). Only the
// root's subjects are read, not the rest of the stream.
func (l *Log) ReadRoot(ctx context.Context, root string, from uint64, fn func(events.Record) error) (uint64, error) {
	return l.ReadSubjects(ctx, events.RootSubjects(l.cfg.Prefix, root), from, fn)
}

// directReadMax is the span of stream sequences below which a read uses
// direct gets rather than an ordered consumer.
const directReadMax = 4096

// ReadSubjects is ReadRoot for any set of subject filters, for instance the
// literal subjects of one agent's ancestor chain.
func (l *Log) ReadSubjects(ctx context.Context, subjects []string, from uint64, fn func(events.Record) error) (uint64, error) {
	bound, err := l.LastSeq(ctx, subjects)
	if err != nil {
		return 0, err
	}
	return l.readSubjects(ctx, subjects, from, bound, fn)
}

// ReadRootUpTo is ReadRoot with a known bound (for instance the sequence
// an append just returned): it saves looking the bound up.
func (l *Log) ReadRootUpTo(ctx context.Context, root string, from, bound uint64, fn func(events.Record) error) error {
	_, err := l.readSubjects(ctx, events.RootSubjects(l.cfg.Prefix, root), from, bound, fn)
	return err
}

func (l *Log) readSubjects(ctx context.Context, subjects []string, from, bound uint64, fn func(events.Record) error) (uint64, error) {
	if bound == 0 || bound < from {
		return bound, nil
	}
	if from == 0 {
		from = 1
	}
	if bound-from < directReadMax {
		// A short read (a catch-up): batched direct gets, no consumer to
		// create and delete on the server.
		return bound, l.readDirect(ctx, subjects, from, bound, fn)
	}
	// A long read (a full replay): an ordered consumer. The server serves a
	// consumer with several filters far more slowly than one with a single
	// filter when they cover many subjects (a root's two filters over 2000
	// agents' subjects: 2.4 s for 8500 events, against 72 ms with one), so
	// literal subjects (a root's own, with its registration and migrations:
	// a few events) are read with direct gets and merged in stream order
	// into what the consumer delivers for the one wildcard filter.
	var literal, wild []string
	for _, s := range subjects {
		if strings.ContainsAny(s, "*>") {
			wild = append(wild, s)
		} else {
			literal = append(literal, s)
		}
	}
	if len(wild) != 1 || len(literal) == 0 {
		return l.consume(ctx, subjects, from, bound, fn)
	}
	var side []events.Record
	if err := l.readDirect(ctx, literal, from, bound, func(r events.Record) error {
		side = append(side, r)
		return nil
	}); err != nil {
		return 0, err
	}
	wildLast, err := l.LastSeq(ctx, wild)
	if err != nil {
		return 0, err
	}
	last := bound
	if wildLast >= from {
		last, err = l.consume(ctx, wild, from, min(wildLast, bound), func(r events.Record) error {
			for len(side) > 0 && side[0].Seq < r.Seq {
				if err := fn(side[0]); err != nil {
					return err
				}
				side = side[1:]
			}
			return fn(r)
		})
		if err != nil {
			return 0, err
		}
	}
	for _, r := range side {
		if err := fn(r); err != nil {
			return 0, err
		}
	}
	return max(bound, last), nil
}

// consumerLinger is how long the server keeps a long read's consumer after
// the read stops pulling.
const consumerLinger = 3 * time.Second

// consume reads the messages matching subjects from sequence from up to
// at least bound (a sequence that exists) with an ordered pull consumer
// (pull.go: records are classified and sequenced by the server's reply
// subject, not by headers a publisher could forge). A consumer that
// delivers nothing for the log's Timeout fails the read rather than wait
// forever.
func (l *Log) consume(ctx context.Context, subjects []string, from, bound uint64, fn func(events.Record) error) (uint64, error) {
	// An ephemeral consumer outlives the read on the server until its
	// inactivity threshold: a process loading many roots would otherwise
	// pile them up to the server's consumer limit. The server removes this
	// one a few seconds after the read stops pulling. (Deleting it
	// explicitly would take a permission to delete any consumer of the
	// stream, agentd's follower's included, which a writer or reader must
	// not have.)
	p, err := l.newPuller(subjects, from, consumerLinger, slog.New(slog.DiscardHandler))
	if err != nil {
		return 0, fmt.Errorf("read %v from seq %d: %w", subjects, from, err)
	}
	defer p.close()
	if err := p.create(ctx); err != nil {
		return 0, fmt.Errorf("read %v from seq %d: %w", subjects, from, err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// No message for the log's Timeout: fail rather than wait for ever.
	var (
		last     uint64
		progress = make(chan struct{}, 1)
		stalled  atomic.Bool
	)
	go func() {
		t := time.NewTimer(l.cfg.Timeout)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-progress:
				t.Reset(l.cfg.Timeout)
			case <-t.C:
				stalled.Store(true)
				cancel()
				return
			}
		}
	}()
	err = p.run(rctx, func(r events.Record, pending uint64) error {
		select {
		case progress <- struct{}{}:
		default:
		}
		last = r.Seq
		if err := fn(r); err != nil {
			return err
		}
		// Pending 0: nothing more matches right now (also covers a bound
		// message deleted after it was looked up).
		if r.Seq >= bound || pending == 0 {
			return errStopPull
		}
		return nil
	})
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("read %v: %w", subjects, ctx.Err())
		}
		if stalled.Load() {
			return 0, fmt.Errorf("read %v from seq %d up to seq %d: no message for %v (is the stream's server reachable?): %w",
				subjects, from, bound, l.cfg.Timeout, nats.ErrTimeout)
		}
		return 0, err
	}
	return max(bound, last), nil
}

func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
