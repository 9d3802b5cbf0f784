package events

import "time"

// Record is one message as read from the log: its stream sequence, its
// subject, its bytes (which may be anything a publisher sent) and the time
// the stream stored it. The fold ignores Time; tools use it to pick a point
// in history.
type Record struct {
	Seq     uint64
	Subject string
	Data    []byte
	Time    time.Time
	// MsgID is the id the log deduplicates the message by (JetStream's
	// Nats-Msg-Id), where the read provides it; the fold does not use it.
	MsgID string
}

// Message is one encoded event ready to append.
type Message struct {
	Subject string
	Data    []byte
	ID      string // the event id: the log deduplicates retried appends by it
	Type    Type
	// ExpectSeq, when set, is the expected stream sequence of the last
	// message on Subject (0: the subject must be empty). A mismatch fails
	// the append with ErrConflict.
	ExpectSeq *uint64
}
