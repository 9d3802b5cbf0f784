package agent

import (
	"context"
	"crypto/sha256"
	"math"

	"github.com/oklog/ulid/v2"

	"github.com/agentreg/agentreg/events"
)

type ctxKey int

const (
	actorKey ctxKey = iota
	corrKey
	idemKey
	minSeqKey
)

// WithActor returns a context whose writes are recorded as made by
// principal (who asked: a user, a service, an agent's task ref).
func WithActor(ctx context.Context, principal string) context.Context {
	return context.WithValue(ctx, actorKey, principal)
}

// ActorFrom returns the principal set by WithActor, or def.
func ActorFrom(ctx context.Context, def string) string {
	if s, ok := ctx.Value(actorKey).(string); ok && s != "" {
		return s
	}
	return def
}

// WithCorrelation returns a context whose writes carry correlation id id.
func WithCorrelation(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, corrKey, id)
}

func correlationFrom(ctx context.Context) string {
	if s, ok := ctx.Value(corrKey).(string); ok && s != "" {
		return s
	}
	return ulid.Make().String()
}

// WithIdempotencyKey returns a context whose write is identified by key:
// the event id derives from the key, the root, the agent's path and the
// kind of write, so the same write retried with the same key, after any
// delay (past the server's dedupe window too), after other writes to the
// agent, from any process, is stored once and returns the original
// receipt (Receipt.Replayed set), or the original refusal if the stored
// event was not applied. A key names one write: reuse it only to retry
// that write. Keys cost one extra read of the agent's own subject per
// write (the look-up that finds an earlier copy).
func WithIdempotencyKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, idemKey, key)
}

func idempotencyKey(ctx context.Context) string {
	s, _ := ctx.Value(idemKey).(string)
	return s
}

// keyedID derives an event id from an idempotency key: a ULID-shaped
// string (26 Crockford base32 characters) made of the first 128 bits of
// SHA-256 over the root, path, event type and key.
func keyedID(root, path string, t events.Type, key string) string {
	h := sha256.New()
	for _, s := range []string{root, path, string(t), key} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var id ulid.ULID
	copy(id[:], h.Sum(nil))
	return id.String()
}

// LatestSeq, given to WithMinSeq, asks for a read that sees every event the
// stream holds when the read starts: one extra request for the stream's
// last sequence (whose cost does not grow with the stream), cold resolves
// included.
const LatestSeq uint64 = math.MaxUint64

// WithMinSeq returns a context whose reads (Resolve, View, StateHash,
// Snapshot) and writes see the log at least up to stream sequence seq: a
// receipt's Seq from a write made through any process. The read waits, up
// to the context's deadline (or the log's timeout), until this process has
// folded that far (a cold resolve reads the chain with seq as its
// minimum), without holding up other users of the root. Without it,
// Resolve of a loaded root answers from what this process has folded (its
// own writes always included), with no request to the server; View,
// StateHash and Snapshot default to LatestSeq.
func WithMinSeq(ctx context.Context, seq uint64) context.Context {
	return context.WithValue(ctx, minSeqKey, seq)
}

func minSeqFrom(ctx context.Context) uint64 {
	s, _ := ctx.Value(minSeqKey).(uint64)
	return s
}
