package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// --- history and cold resolve ---

func (b *bench) publishHistory(ctx context.Context, upTo int) error {
	const window = 1024
	pending := 0
	for b.gen.written < upTo {
		m := b.gen.next()
		msg := nats.NewMsg(m.Subject)
		msg.Data = m.Data
		msg.Header.Set(natsstore.HeaderType, string(m.Type))
		if _, err := b.js.PublishMsgAsync(msg, jetstream.WithMsgID(m.ID)); err != nil {
			return err
		}
		if pending++; pending == window {
			pending = 0
			select {
			case <-b.js.PublishAsyncComplete():
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (b *bench) historyFigures(ctx context.Context) error {
	if err := b.publishHistory(ctx, b.p.small); err != nil {
		return err
	}
	refs := b.gen.refs(b.p.resolves)
	if len(refs) < b.p.resolves {
		return fmt.Errorf("the first %d events hold only %d roots with an agent at depth %d; raise -small", b.p.small, len(refs), b.p.depth)
	}
	small, err := b.coldResolve(ctx, refs)
	if err != nil {
		return err
	}
	b.log.Info("publishing history", "events", b.p.events)
	if err := b.publishHistory(ctx, b.p.events); err != nil {
		return err
	}
	large, err := b.coldResolve(ctx, refs)
	if err != nil {
		return err
	}
	p50s, p50l := pct(small, 50), pct(large, 50)
	b.add(Figure{Name: fmt.Sprintf("resolve.cold_p50_at_%d", b.p.small), Value: ms(p50s), Unit: "ms"})
	b.add(Figure{Name: fmt.Sprintf("resolve.cold_p99_at_%d", b.p.small), Value: ms(pct(small, 99)), Unit: "ms"})
	b.add(Figure{Name: fmt.Sprintf("resolve.cold_p50_at_%d", b.p.events), Value: ms(p50l), Unit: "ms", Target: "<= 1 ms", Met: met(ms(p50l) <= 1)})
	b.add(Figure{Name: fmt.Sprintf("resolve.cold_p99_at_%d", b.p.events), Value: ms(pct(large, 99)), Unit: "ms"})
	b.add(Figure{Name: "resolve.cold_p50_growth", Value: ms(p50l), Unit: "ms", Baseline: ms(p50s), BaseName: fmt.Sprintf("p50 at %d events", b.p.small),
		Target: "<= 1.2", Met: met(ms(p50l)/ms(p50s) <= 1.2)})
	b.gen.forgetChains() // the history is written; nothing more goes on its subjects
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

// coldResolve opens a fresh runtime on a new connection, registers the
// refs' roots (start-up, not timed), and times each first resolve.
func (b *bench) coldResolve(ctx context.Context, refs []agent.TaskRef) ([]time.Duration, error) {
	nc, err := b.emb.Connect()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	l, err := natsstore.OpenLog(ctx, nc, natsstore.Config{})
	if err != nil {
		return nil, err
	}
	s, err := natsstore.OpenSnapshots(ctx, l)
	if err != nil {
		return nil, err
	}
	rt, err := agent.Open(ctx, agent.WithLog(l, s), agent.WithCatalog(b.gen.catalog()), agent.WithSnapshotEvery(0),
		agent.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return nil, err
	}
	defer rt.Close()
	for _, r := range refs {
		if _, err := rt.RegisterRoot(ctx, b.gen.rootDef(string(r.Root))); err != nil {
			return nil, err
		}
	}
	out := make([]time.Duration, 0, len(refs))
	for _, r := range refs {
		start := time.Now()
		t, err := rt.Resolve(ctx, r)
		d := time.Since(start)
		if err != nil {
			return nil, err
		}
		if len(t.Capabilities) != b.p.caps {
			return nil, fmt.Errorf("resolve %s: %d capabilities, want %d", r, len(t.Capabilities), b.p.caps)
		}
		out = append(out, d)
	}
	return out, nil
}
