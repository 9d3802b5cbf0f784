package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// On a cluster the runtime reads a root's events from a replica of the
// stream (direct gets answered by any replica, an ordered consumer placed on
// any of them), and a follower applies a message a moment after the leader
// acknowledged it. Without care a daemon misses a write acknowledged through
// another daemon a millisecond earlier (a 404 for an agent just created),
// checks a write against a stale registry, or answers a write with a
// sequence that does not cover it. The helpers below ask the stream leader
// what a root holds and catch the registry up until it holds as much. On a
// single server the first catch-up is enough.

// codeNoMessage is JetStream's "no message found" error code.
const codeNoMessage = 10037

// leaderLastSeq returns the sequence of the newest message on any of the
// subjects (wildcards allowed) as the stream leader knows it, 0 if there is
// none. The plain (non-direct) message get is answered by the leader only.
func (d *Daemon) leaderLastSeq(ctx context.Context, subjects ...string) (uint64, error) {
	var last uint64
	for _, subj := range subjects {
		seq, err := d.leaderLastSeqOf(ctx, subj)
		if err != nil {
			return 0, err
		}
		last = max(last, seq)
	}
	return last, nil
}

func (d *Daemon) leaderLastSeqOf(ctx context.Context, subject string) (uint64, error) {
	req, err := json.Marshal(map[string]string{"last_by_subj": subject})
	if err != nil {
		return 0, err
	}
	subj := "$JS.API.STREAM.MSG.GET." + d.store.Config().Stream
	// While the stream has no leader (its leader's node just died) the
	// request is dropped, not refused: ask again every second, with a short
	// pause after a refusal, until a new leader answers or ctx ends.
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		msg, err := d.nc.RequestWithContext(actx, subj, req)
		cancel()
		retry := err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders))
		var resp struct {
			Message *struct {
				Seq uint64 `json:"seq"`
			} `json:"message"`
			Error *jetstream.APIError `json:"error"`
		}
		if err == nil {
			if err := json.Unmarshal(msg.Data, &resp); err != nil {
				return 0, fmt.Errorf("last message on %s from the stream leader: reply %.80q: %w", subject, msg.Data, err)
			}
			switch {
			case resp.Error != nil && resp.Error.ErrorCode == codeNoMessage:
				return 0, nil
			case resp.Error != nil && resp.Error.Code == 503: // JetStream temporarily unavailable
				retry, err = true, resp.Error
			case resp.Error != nil:
				return 0, fmt.Errorf("last message on %s from the stream leader: %w", subject, resp.Error)
			case resp.Message == nil:
				return 0, fmt.Errorf("last message on %s from the stream leader: reply %.80q holds no message", subject, msg.Data)
			default:
				return resp.Message.Seq, nil
			}
		}
		if !retry || ctx.Err() != nil {
			return 0, fmt.Errorf("last message on %s from the stream leader: %w", subject, err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t := time.NewTimer(50 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, fmt.Errorf("last message on %s from the stream leader: %w (last error: %v)", subject, ctx.Err(), err)
			case <-t.C:
			}
		}
	}
}

// registrySeq catches root's registry up (as far as the replica read
// allows) and returns the stream sequence it covers.
func (d *Daemon) registrySeq(ctx context.Context, root string) (uint64, error) {
	var seq uint64
	err := d.rt.View(ctx, root, func(reg *projector.Registry) error {
		seq = reg.Seq
		return nil
	})
	return seq, err
}

// catchUpTo catches root's registry up until it covers stream sequence
// target, polling while the replica it reads from lags, and returns the
// sequence it covers. Registries fold in stream order, so covering target
// means holding every event of the root up to target.
func (d *Daemon) catchUpTo(ctx context.Context, root string, target uint64) (uint64, error) {
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		seq, err := d.registrySeq(ctx, root)
		if err != nil || seq >= target {
			return seq, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return seq, fmt.Errorf("registry of root %.12s is at seq %d; the stream leader holds its events up to seq %d: %w",
				root, seq, target, ctx.Err())
		case <-t.C:
		}
	}
}

// syncRoot catches root's registry up to every event the leader holds for
// it, so that a write is checked against the newest registry.
func (d *Daemon) syncRoot(ctx context.Context, root string) error {
	if events.ValidateFingerprint(root) != nil {
		return nil // the runtime says what is wrong with it
	}
	target, err := d.leaderLastSeq(ctx, events.RootSubjects(d.cfg.Stream.Prefix, root)...)
	if err != nil {
		return err
	}
	_, err = d.catchUpTo(ctx, root, target)
	return err
}

// minSeq catches root's registry up to every event of the root up to
// stream sequence minSeq (the seq a write returned), so that the read that
// follows includes that write. A minSeq beyond the root's newest event
// asks for all of the root's events.
func (d *Daemon) minSeq(ctx context.Context, root string, minSeq uint64) error {
	if minSeq == 0 || events.ValidateFingerprint(root) != nil {
		return nil
	}
	seq, err := d.registrySeq(ctx, root)
	if err != nil || seq >= minSeq {
		return err
	}
	last, err := d.leaderLastSeq(ctx, events.RootSubjects(d.cfg.Stream.Prefix, root)...)
	if err != nil {
		return err
	}
	_, err = d.catchUpTo(ctx, root, min(minSeq, last))
	return err
}
