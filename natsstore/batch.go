package natsstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/agentreg/agentreg/events"
)

// appendBatch publishes msgs as a JetStream atomic batch: each message
// carries Nats-Batch-Id and Nats-Batch-Sequence, the last one
// Nats-Batch-Commit; the server stores all of them or none.
func (l *Log) appendBatch(ctx context.Context, msgs []events.Message) (uint64, error) {
	batchID := ulid.Make().String()
	last := len(msgs) - 1
	for i, m := range msgs {
		msg := l.natsMsg(m)
		msg.Header.Set(jetstream.MsgIDHeader, m.ID)
		if m.ExpectSeq != nil {
			msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(*m.ExpectSeq, 10))
		}
		msg.Header.Set("Nats-Batch-Id", batchID)
		msg.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < last {
			if err := l.nc.PublishMsg(msg); err != nil {
				return 0, fmt.Errorf("append batch of %d (%s): publish %d: %w", len(msgs), msgs[0].Subject, i+1, err)
			}
			continue
		}
		msg.Header.Set("Nats-Batch-Commit", "1")
		resp, err := l.nc.RequestMsgWithContext(ctx, msg)
		if err != nil {
			return 0, fmt.Errorf("append batch of %d (%s): commit: %w", len(msgs), msgs[0].Subject, err)
		}
		var ack struct {
			Seq   uint64              `json:"seq"`
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return 0, fmt.Errorf("append batch of %d (%s): commit reply %q: %w", len(msgs), msgs[0].Subject, resp.Data, err)
		}
		if ack.Error != nil {
			if ack.Error.ErrorCode == codeBatchDuplicateMessage {
				// The batch was stored by an earlier attempt: atomic batches
				// are all-or-nothing, so its ids are all there.
				return l.seqOfID(ctx, msgs[last])
			}
			return 0, fmt.Errorf("append batch of %d (%s): %w", len(msgs), msgs[0].Subject, l.translate(ack.Error))
		}
		return ack.Seq, nil
	}
	return 0, nil
}
