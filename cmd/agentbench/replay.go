package main

import (
	"context"
	"errors"
	"runtime/debug"
	"time"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
	"github.com/nats-io/nats.go/jetstream"
)

// --- replay ---

func (b *bench) replayFigure(ctx context.Context) error {
	filter := []string{"agentreg.>"}
	last, err := b.store.LastSeq(ctx, filter)
	if err != nil {
		return err
	}
	// Alternate raw and ours, three rounds each, and keep each one's best:
	// the machine's other work then weighs on both alike.
	var rawBest, ourBest float64
	violations := 0
	for range 3 {
		n, d, err := b.rawReplay(ctx, filter, last)
		if err != nil {
			return err
		}
		rawBest = max(rawBest, rate(n, d))
		n, d, v, err := b.foldReplay(ctx, filter, last)
		if err != nil {
			return err
		}
		ourBest, violations = max(ourBest, rate(n, d)), v
	}
	if violations > 0 {
		b.log.Warn("replay found violations in the generated history", "count", violations)
	}
	b.add(Figure{Name: "replay.fold_full_stream", Value: ourBest, Unit: "events/s", Baseline: rawBest, BaseName: "raw ordered consumer",
		Target: ">= 0.8 x raw", Met: met(ourBest >= 0.8*rawBest)})
	b.add(Figure{Name: "replay_vs_raw", Value: ourBest, Unit: "events/s", Baseline: rawBest, BaseName: "raw ordered consumer",
		Target: ">= 0.8 x raw", Met: met(ourBest >= 0.8*rawBest)})
	return nil
}

// rawReplay reads the messages with an ordered consumer and does nothing
// with them.
func (b *bench) rawReplay(ctx context.Context, filter []string, last uint64) (int, time.Duration, error) {
	start := time.Now()
	n := 0
	cons, err := b.js.OrderedConsumer(ctx, "AGENTREG", jetstream.OrderedConsumerConfig{FilterSubjects: filter})
	if err != nil {
		return 0, 0, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return 0, 0, err
	}
	defer it.Stop()
	for {
		m, err := it.Next()
		if err != nil {
			return 0, 0, err
		}
		n++
		meta, err := m.Metadata()
		if err != nil {
			return 0, 0, err
		}
		if meta.Sequence.Stream >= last {
			return n, time.Since(start), nil
		}
	}
}

// foldReplay reads the same messages through the log and folds every
// root's registry, with the garbage collector tuned as cmd/replay tunes it
// for a long replay (a batch job trades memory for speed).
func (b *bench) foldReplay(ctx context.Context, filter []string, last uint64) (int, time.Duration, int, error) {
	defer debug.SetGCPercent(debug.SetGCPercent(replayGCPercent))
	stop := errors.New("stop")
	start := time.Now()
	n := 0
	regs := map[string]*projector.Registry{}
	_, err := b.store.ReadSubjects(ctx, filter, 1, func(r events.Record) error {
		n++
		root, _, _ := events.ParseSubject("agentreg", r.Subject)
		reg := regs[root]
		if reg == nil {
			reg = projector.New(root)
			regs[root] = reg
		}
		reg.Apply(r)
		if r.Seq >= last {
			return stop
		}
		return nil
	})
	if err != nil && !errors.Is(err, stop) {
		return 0, 0, 0, err
	}
	d := time.Since(start)
	v := 0
	for _, r := range regs {
		v += len(r.Violations)
	}
	return n, d, v, nil
}

// replayGCPercent is the GOGC value of a long replay (cmd/replay's gcPercent).
const replayGCPercent = 400
