package main

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/snapshot"
)

// --- snapshot restore ---

func (b *bench) snapshotFigure(ctx context.Context) error {
	big := b.gen.bigRoot(b.p.bigAgents)
	reg := projector.New(big.fp)
	seq := uint64(0)
	for _, e := range big.all() {
		m := b.gen.encode(e)
		seq++
		reg.Apply(events.Record{Seq: seq, Subject: m.Subject, Data: m.Data})
	}
	if len(reg.Agents) != b.p.bigAgents || len(reg.Violations) > 0 {
		return fmt.Errorf("big root: %d agents, %d violations", len(reg.Agents), len(reg.Violations))
	}
	h, body, err := snapshot.Capture(reg, time.Now())
	if err != nil {
		return err
	}
	if err := b.snaps.Put(ctx, h, body); err != nil {
		return err
	}
	const rounds = 5
	var decode, restore time.Duration
	for range rounds {
		start := time.Now()
		if _, err := projector.Unmarshal(body); err != nil {
			return err
		}
		decode += time.Since(start)
		start = time.Now()
		hs, err := b.snaps.List(ctx, big.fp)
		if err != nil {
			return err
		}
		got, err := b.snaps.Body(ctx, hs[0])
		if err != nil {
			return err
		}
		if _, err := snapshot.Open(hs[0], got); err != nil {
			return err
		}
		restore += time.Since(start)
	}
	mb := float64(len(body)) / (1 << 20)
	b.add(Figure{Name: fmt.Sprintf("snapshot.restore_%d_agents", b.p.bigAgents), Value: mb * rounds / restore.Seconds(), Unit: "MiB/s",
		Baseline: mb * rounds / decode.Seconds(), BaseName: fmt.Sprintf("in-memory decode of the same %.1f MiB", mb),
		Target: ">= 0.5 x decode", Met: met(decode.Seconds() >= 0.5*restore.Seconds())})
	return nil
}

// --- memory ---

func (b *bench) memoryFigure(context.Context) error {
	big := b.gen.bigRoot(b.p.memAgents)
	evs := big.all()
	recs := make([]events.Record, len(evs))
	for i, e := range evs {
		m := b.gen.encode(e)
		recs[i] = events.Record{Seq: uint64(i + 1), Subject: m.Subject, Data: m.Data}
	}
	evs = nil
	reg := projector.New(big.fp)
	for _, r := range recs {
		reg.Apply(r)
	}
	recs = nil
	if len(reg.Agents) != b.p.memAgents || len(reg.Violations) > 0 {
		return fmt.Errorf("memory root: %d agents, %d violations", len(reg.Agents), len(reg.Violations))
	}
	// The registry's share of the heap: live heap with it, minus without it.
	var with, without runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&with)
	runtime.KeepAlive(reg)
	reg = nil
	runtime.GC()
	runtime.ReadMemStats(&without)
	after, before := with, without
	per := float64(after.HeapAlloc-before.HeapAlloc) / float64(b.p.memAgents)
	b.add(Figure{Name: fmt.Sprintf("memory.per_agent_%d_agents", b.p.memAgents), Value: per, Unit: "bytes/agent",
		Target: "<= 2048", Met: met(per <= 2048)})
	return nil
}
