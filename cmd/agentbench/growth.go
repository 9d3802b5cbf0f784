package main

// --- growth: writes and resolves on a small root and a 100k-agent root ---

import (
	"context"
	"fmt"
	"time"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/projector"
)

// growthRoot is one of the two roots the growth figures compare.
type growthRoot struct {
	n      int
	gr     *genRoot
	ref    agent.AgentRef
	tops   []agent.AgentRef // agents directly under the root
	deep   []agent.AgentRef // agents at depth 2
	refs   []agent.TaskRef  // task refs of agents at depth 2, in a fixed order
	loaded time.Duration    // how long the warm runtime took to load it
}

// appendWide writes a root with n agents (wideV2: one v2 AgentCreated per
// agent, hash chains right) with pipelined appends, window messages in
// flight, each with its subject's expected sequence 0 (a new subject).
func (b *bench) appendWide(ctx context.Context, r *genRoot, n int) error {
	const window = 1024
	evs := r.wideV2(n)
	msgs := make([]events.Message, 0, window)
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		_, err := b.store.AppendPipelined(ctx, msgs)
		msgs = msgs[:0]
		return err
	}
	for i, e := range evs {
		m := b.gen.encode(e)
		zero := uint64(0)
		m.ExpectSeq = &zero
		msgs = append(msgs, m)
		evs[i] = nil
		if i == 0 || len(msgs) == window { // the root's registration first, alone
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

func (b *bench) newGrowthRoot(ctx context.Context, name string, n int) (*growthRoot, error) {
	g := &growthRoot{n: n, gr: b.gen.newRoot(name)}
	start := time.Now()
	if err := b.appendWide(ctx, g.gr, n); err != nil {
		return nil, fmt.Errorf("write the %d-agent root: %w", n, err)
	}
	b.log.Info("growth root written", "agents", n, "took", time.Since(start).Round(time.Millisecond))
	g.ref = agent.AgentRef{Root: agent.RootID(g.gr.fp)}
	for _, a := range g.gr.agents {
		ref := agent.AgentRef{Root: agent.RootID(g.gr.fp), Path: a.path}
		if a.depth == 1 {
			g.tops = append(g.tops, ref)
		} else {
			g.deep = append(g.deep, ref)
		}
	}
	// Refs spread over the root: at most a few hundred distinct agents.
	step := max(1, len(g.deep)/(b.p.growthOps))
	for i := 0; i < len(g.deep) && len(g.refs) < 2*b.p.growthOps; i += step {
		for t := range b.p.tasks {
			g.refs = append(g.refs, agent.TaskRef{Root: agent.RootID(g.gr.fp), Path: g.deep[i].Path, Task: fmt.Sprintf("t%d", t)})
		}
	}
	if len(g.refs) == 0 || len(g.tops) == 0 {
		return nil, fmt.Errorf("growth root of %d agents: no agent at depth 2", n)
	}
	return g, nil
}

// growthFigures compares a root of -growth-small agents with one of
// -growth-agents: warm Create and Grant latency, warm and cold resolve
// latency. Each operation alternates between the two roots so that the
// machine's other work weighs on both alike.
func (b *bench) growthFigures(ctx context.Context) error {
	small, err := b.newGrowthRoot(ctx, "growth-small", b.p.growthSmall)
	if err != nil {
		return err
	}
	big, err := b.newGrowthRoot(ctx, "growth-big", b.p.growthAgents)
	if err != nil {
		return err
	}
	sizes := []*growthRoot{small, big}
	ops := b.p.growthOps

	// Cold resolves first, while neither root is loaded anywhere: a fresh
	// runtime per batch, each root registered (not timed); only Resolve is
	// timed.
	cold := [2][]time.Duration{}
	const batch = 50
	for off := 0; off < ops; off += batch {
		for _, si := range order(off / batch) {
			g := sizes[si]
			rt, err := b.openRuntime(ctx, 0)
			if err != nil {
				return err
			}
			if _, err := rt.RegisterRoot(ctx, g.gr.def); err != nil {
				return err
			}
			for i := off; i < min(off+batch, ops); i++ {
				ref := g.refs[i%len(g.refs)]
				start := time.Now()
				t, err := rt.Resolve(ctx, ref)
				d := time.Since(start)
				if err != nil {
					return fmt.Errorf("cold resolve at %d agents: %w", g.n, err)
				}
				if len(t.Capabilities) != b.p.caps {
					return fmt.Errorf("cold resolve %s: %d capabilities, want %d", ref, len(t.Capabilities), b.p.caps)
				}
				cold[si] = append(cold[si], d)
			}
			if err := rt.Close(); err != nil {
				return err
			}
		}
	}

	// The warm runtime: both roots registered and loaded (not timed, but
	// reported).
	rt, err := b.openRuntime(ctx, 0)
	if err != nil {
		return err
	}
	defer rt.Close()
	for _, g := range sizes {
		if g.ref, err = rt.RegisterRoot(ctx, g.gr.def); err != nil {
			return err
		}
		start := time.Now()
		agents := 0
		if err := inspect.View(ctx, rt, string(agent.RootID(g.gr.fp)), func(r *projector.Registry) error { agents = len(r.Agents); return nil }); err != nil {
			return err
		}
		g.loaded = time.Since(start)
		if agents != g.n {
			return fmt.Errorf("growth root loaded with %d agents, want %d", agents, g.n)
		}
	}

	// Warm resolves. A resolution is cached until the root's next event;
	// an untimed grant before each block of distinct refs makes every
	// timed resolve a real one (drain, chain walk, catalog), on both roots.
	warm := [2][]time.Duration{}
	block := len(small.refs)
	for off := 0; off < ops; off += block {
		for _, si := range order(off / block) {
			g := sizes[si]
			if _, err := rt.Grant(ctx, g.tops[0], events.Capability{Kind: events.KindModule, Name: "m0"}, agent.Replace()); err != nil {
				return err
			}
			for i := off; i < min(off+block, ops); i++ {
				ref := g.refs[i%len(g.refs)]
				start := time.Now()
				t, err := rt.Resolve(ctx, ref)
				d := time.Since(start)
				if err != nil {
					return fmt.Errorf("warm resolve at %d agents: %w", g.n, err)
				}
				if len(t.Capabilities) != b.p.caps {
					return fmt.Errorf("warm resolve %s: %d capabilities, want %d", ref, len(t.Capabilities), b.p.caps)
				}
				warm[si] = append(warm[si], d)
			}
		}
	}

	// Grants to existing agents (depth 1 and 2), then creates under the
	// root and under an existing agent, alternating between the roots, in
	// turn first (the follower may still be handing over the other root's
	// write when the second one starts).
	grant := [2][]time.Duration{}
	for i := range ops {
		for _, si := range order(i) {
			g := sizes[si]
			a := g.deep[(i*7919)%len(g.deep)]
			if i%2 == 0 {
				a = g.tops[(i*7919)%len(g.tops)]
			}
			start := time.Now()
			if _, err := rt.Grant(ctx, a, events.Capability{Kind: events.KindModule, Name: fmt.Sprintf("m%d", i%b.p.caps)}, agent.Replace()); err != nil {
				return fmt.Errorf("grant at %d agents: %w", g.n, err)
			}
			grant[si] = append(grant[si], time.Since(start))
		}
	}
	create := [2][]time.Duration{}
	for i := range ops {
		for _, si := range order(i) {
			g := sizes[si]
			parent := g.ref
			if i%2 == 1 {
				parent = g.tops[(i*31)%len(g.tops)]
			}
			spec := g.gr.spec(fmt.Sprintf("g%d", i))
			start := time.Now()
			if _, _, err := rt.Create(ctx, parent, spec); err != nil {
				return fmt.Errorf("create at %d agents: %w", g.n, err)
			}
			create[si] = append(create[si], time.Since(start))
		}
	}

	for _, g := range sizes {
		b.add(Figure{Name: fmt.Sprintf("growth.load_ms_at_%d", g.n), Value: ms(g.loaded), Unit: "ms"})
	}
	for _, k := range []struct {
		name string
		ds   [2][]time.Duration
	}{{"create", create}, {"grant", grant}, {"warm_resolve", warm}, {"cold_resolve", cold}} {
		for si, g := range sizes {
			b.add(Figure{Name: fmt.Sprintf("%s_p50_ms_at_%d", k.name, g.n), Value: ms(pct(k.ds[si], 50)), Unit: "ms"})
			b.add(Figure{Name: fmt.Sprintf("%s_p99_ms_at_%d", k.name, g.n), Value: ms(pct(k.ds[si], 99)), Unit: "ms"})
		}
		growth := ms(pct(k.ds[1], 50)) / ms(pct(k.ds[0], 50))
		b.add(Figure{Name: k.name + "_growth", Value: growth, Unit: fmt.Sprintf("p50 at %d / p50 at %d", big.n, small.n),
			Target: "<= 1.3", Met: met(growth <= 1.3)})
	}
	warm50, cold50 := ms(pct(warm[1], 50)), ms(pct(cold[1], 50))
	b.add(Figure{Name: "warm_resolve_p50_ms", Value: warm50, Unit: fmt.Sprintf("ms at %d agents", big.n), Target: "<= cold_resolve_p50_ms", Met: met(warm50 <= cold50)})
	b.add(Figure{Name: "cold_resolve_p50_ms", Value: cold50, Unit: fmt.Sprintf("ms at %d agents", big.n), Target: "<= 1 ms", Met: met(cold50 <= 1)})
	b.growth = sizes
	return nil
}

// order is the order of the two growth roots in round i: each goes first
// in every other round.
func order(i int) [2]int {
	if i%2 == 0 {
		return [2]int{0, 1}
	}
	return [2]int{1, 0}
}
