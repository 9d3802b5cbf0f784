package main

// --- writes through the runtime against the append and publish they make ---

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
)

// writeFigures measures sequential Runtime.Grant on a small loaded root
// against natsstore.Log.Append of the same kind of event (the same headers:
// Nats-Msg-Id, expected last subject sequence, Agentreg-Type and -Version),
// and Runtime.Create against the raw publish of the one message it makes,
// with the same headers. Rounds alternate; each side keeps its best.
func (b *bench) writeFigures(ctx context.Context) error {
	const rounds, agents = 3, 16
	n, cn := b.p.writeOps, b.p.writeOps

	rt, err := b.openRuntime(ctx, 0)
	if err != nil {
		return err
	}
	defer rt.Close()
	rtRoot := b.gen.newRoot("bench-writes")
	ref, err := rt.RegisterRoot(ctx, rtRoot.def)
	if err != nil {
		return err
	}
	targets := make([]agent.AgentRef, agents)
	for i := range targets {
		if targets[i], _, err = rt.Create(ctx, ref, rtRoot.spec(fmt.Sprintf("target%d", i))); err != nil {
			return err
		}
	}

	// The baseline's agents, on a root of their own, and its events encoded
	// ahead in their hash chains (the timed loop only appends).
	base := b.gen.newRoot("bench-writes-base")
	baseAgents := make([]*genAgent, agents)
	subjSeq := map[string]uint64{}
	first := []events.Message{b.gen.encode(base.registered())}
	for i := range baseAgents {
		baseAgents[i] = base.agent(fmt.Sprintf("target%d", i), "")
		first = append(first, b.gen.encode(baseAgents[i].createdV2Event()))
	}
	for _, m := range first {
		seq, err := b.store.Append(ctx, []events.Message{m})
		if err != nil {
			return err
		}
		subjSeq[m.Subject] = seq
	}
	grants := make([][]events.Message, rounds)
	for r := range grants {
		grants[r] = make([]events.Message, n)
		for i := range n {
			grants[r][i] = b.gen.encode(baseAgents[i%agents].grantEvent("", i))
		}
	}
	var grantBest, appendBest float64
	for r := range rounds {
		start := time.Now()
		for i := range n {
			if _, err := rt.Grant(ctx, targets[i%agents], events.Capability{Kind: events.KindModule, Name: fmt.Sprintf("m%d", i%b.p.caps)}, agent.Replace()); err != nil {
				return err
			}
		}
		grantBest = max(grantBest, rate(n, time.Since(start)))

		start = time.Now()
		for i := range n {
			m := grants[r][i]
			exp := subjSeq[m.Subject]
			m.ExpectSeq = &exp
			seq, err := b.store.Append(ctx, []events.Message{m})
			if err != nil {
				return err
			}
			subjSeq[m.Subject] = seq
		}
		appendBest = max(appendBest, rate(n, time.Since(start)))
	}
	b.add(Figure{Name: "grant_vs_append", Value: grantBest, Unit: "events/s", Baseline: appendBest,
		BaseName: "Log.Append, same headers", Target: ">= 0.8 x baseline", Met: met(grantBest >= 0.8*appendBest)})

	// Create against the raw publish of the same single message: a v2
	// AgentCreated with the same primer, grants and tasks, to a new agent
	// subject of the baseline's root in the same stream (so the runtime's
	// follower receives both alike).
	raws := make([][]events.Message, rounds)
	for r := range raws {
		raws[r] = make([]events.Message, cn)
		for i := range cn {
			raws[r][i] = b.gen.encode(base.agent(fmt.Sprintf("raw%d_%d", r, i), "").createdV2Event())
		}
	}
	version := strconv.Itoa(int(events.SchemaVersion))
	var createBest, rawBest float64
	for r := range rounds {
		start := time.Now()
		for i := range cn {
			msg := nats.NewMsg(raws[r][i].Subject)
			msg.Data = raws[r][i].Data
			msg.Header.Set(natsstore.HeaderType, string(events.AgentCreated))
			msg.Header.Set(natsstore.HeaderVersion, version)
			if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(raws[r][i].ID), jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
				return err
			}
		}
		rawBest = max(rawBest, rate(cn, time.Since(start)))

		start = time.Now()
		for i := range cn {
			if _, _, err := rt.Create(ctx, ref, rtRoot.spec(fmt.Sprintf("c%d_%d", r, i))); err != nil {
				return err
			}
		}
		createBest = max(createBest, rate(cn, time.Since(start)))
	}
	b.add(Figure{Name: "create_vs_raw", Value: createBest, Unit: "agents/s", Baseline: rawBest,
		BaseName: "raw publish, same msg and headers", Target: ">= 0.7 x raw", Met: met(createBest >= 0.7*rawBest)})
	return nil
}

// snapshotCrossing times every Create of a run that crosses several
// snapshot points: a root growing from nothing under a runtime that
// snapshots every -snap-every events (the policy's interval then grows
// with the root), and the 100k-agent root loaded without a snapshot, whose
// first (full) snapshot is built while the creates run. Two controls run
// beside them: the raw publish of the same messages, and creates on a
// growing root without snapshots.
func (b *bench) snapshotCrossing(ctx context.Context) error {
	n := b.p.snapCreates
	var sched schedStats
	run := func(rt *agent.Runtime, root agent.AgentRef, gr *genRoot, prefix string) ([]time.Duration, error) {
		out := make([]time.Duration, 0, n)
		w := watchSched()
		defer func() { sched = w.since() }()
		var under agent.AgentRef
		for i := range n {
			parent := root
			if i%2 == 1 && under.Path != "" {
				parent = under
			}
			start := time.Now()
			a, _, err := rt.Create(ctx, parent, gr.spec(fmt.Sprintf("%s%d", prefix, i)))
			out = append(out, time.Since(start))
			if err != nil {
				return nil, err
			}
			if i == 0 {
				under = a
			}
		}
		return out, nil
	}
	report := func(name string, ds []time.Duration, snaps int, target bool) {
		p50, worst := pct(ds, 50), slices.Max(ds)
		f := Figure{Name: name, Value: float64(worst) / float64(p50), Unit: fmt.Sprintf("worst / p50 over %d creates, %d snapshots", len(ds), snaps)}
		if target {
			f.Target, f.Met = "<= 5", met(f.Value <= 5)
		}
		b.add(f)
		b.add(Figure{Name: name + ".p50_ms", Value: ms(p50), Unit: "ms"})
		b.add(Figure{Name: name + ".p99_ms", Value: ms(pct(ds, 99)), Unit: "ms"})
		b.add(Figure{Name: name + ".worst_ms", Value: ms(worst), Unit: "ms"})
		b.add(Figure{Name: name + ".sched_latency_max_ms", Value: ms(sched.latMax), Unit: fmt.Sprintf("ms runnable, not running (p99.9 %.3f ms)", ms(sched.lat999))})
		b.add(Figure{Name: name + ".gc_pause_max_ms", Value: ms(sched.pauseMax), Unit: fmt.Sprintf("ms, %d stop-the-world pauses", sched.pauses)})
	}
	snapshots := func(fp string) (int, error) {
		hs, err := b.snaps.List(ctx, fp)
		return len(hs), err
	}

	// The control: the raw publish of the same kind of message (a v2
	// AgentCreated with the same headers, to a new agent subject of a root
	// of its own in the same stream), timed one by one. What the server and
	// the machine do to the worst case without any runtime.
	rawRoot := b.gen.newRoot("bench-raw-worst")
	if _, err := b.store.Append(ctx, []events.Message{b.gen.encode(rawRoot.registered())}); err != nil {
		return err
	}
	msgs := make([]events.Message, n)
	for i := range msgs {
		msgs[i] = b.gen.encode(rawRoot.agent(fmt.Sprintf("r%d", i), "").createdV2Event())
	}
	version := strconv.Itoa(int(events.SchemaVersion))
	ds := make([]time.Duration, 0, n)
	w := watchSched()
	for _, m := range msgs {
		msg := nats.NewMsg(m.Subject)
		msg.Data = m.Data
		msg.Header.Set(natsstore.HeaderType, string(m.Type))
		msg.Header.Set(natsstore.HeaderVersion, version)
		start := time.Now()
		_, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(m.ID), jetstream.WithExpectLastSequencePerSubject(0))
		ds = append(ds, time.Since(start))
		if err != nil {
			return err
		}
	}
	sched = w.since()
	report("create_worst_over_p50_raw_publish", ds, 0, false)

	// A growing root.
	rt, err := b.openRuntime(ctx, uint64(b.p.snapEvery))
	if err != nil {
		return err
	}
	gr := b.gen.newRoot("bench-snapshots")
	ref, err := rt.RegisterRoot(ctx, gr.def)
	if err != nil {
		return err
	}
	ds, err = run(rt, ref, gr, "s")
	if err != nil {
		return fmt.Errorf("creates across snapshots: %w", err)
	}
	if err := rt.Close(); err != nil { // waits for the snapshot under way
		return err
	}
	count, err := snapshots(gr.fp)
	if err != nil {
		return err
	}
	report("create_worst_over_p50", ds, count, true)

	// The same on a growing root without snapshots: what the machine, the
	// garbage collector and the server add to the worst case anyway.
	if rt, err = b.openRuntime(ctx, 0); err != nil {
		return err
	}
	gr = b.gen.newRoot("bench-no-snapshots")
	if ref, err = rt.RegisterRoot(ctx, gr.def); err != nil {
		return err
	}
	if ds, err = run(rt, ref, gr, "n"); err != nil {
		return fmt.Errorf("creates without snapshots: %w", err)
	}
	if err := rt.Close(); err != nil {
		return err
	}
	report("create_worst_over_p50_no_snapshots", ds, 0, false)

	// The 100k-agent root, loaded from the log: its first snapshot (of the
	// whole root) is built in the background during the creates.
	if len(b.growth) < 2 {
		return nil
	}
	big := b.growth[1]
	rt, err = b.openRuntime(ctx, uint64(b.p.snapEvery))
	if err != nil {
		return err
	}
	if ref, err = rt.RegisterRoot(ctx, big.gr.def); err != nil {
		return err
	}
	// Load it first (not timed): the load folds the whole root.
	if err := inspect.View(ctx, rt, string(agent.RootID(big.gr.fp)), func(*projector.Registry) error { return nil }); err != nil {
		return err
	}
	ds, err = run(rt, ref, big.gr, "snap")
	if err != nil {
		return fmt.Errorf("creates across the %d-agent root's snapshot: %w", big.n, err)
	}
	if err := rt.Close(); err != nil {
		return err
	}
	if count, err = snapshots(big.gr.fp); err != nil {
		return err
	}
	report(fmt.Sprintf("create_worst_over_p50_at_%d", big.n), ds, count, false)
	return nil
}
