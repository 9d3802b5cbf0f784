package main

// --- agentd: start-up to the first answered request ---

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
)

// agentdStart is what one daemon start measured.
type agentdStart struct {
	start, first, total time.Duration
	heap                int64  // HeapInuse after the first answer minus before Start (after a GC each time)
	heapInuse           uint64 // HeapInuse after the first answer (the whole bench process)
	rss                 uint64 // the bench process's resident set after the first answer
}

// startDaemon starts a daemon on the bench's server (over TCP, as agentd
// runs beside an external server) and times it up to the first answered
// agentd.task.resolve of ref.
func (b *bench) startDaemon(ctx context.Context, stream natsstore.Config, ref agent.TaskRef) (agentdStart, error) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	body, err := json.Marshal(map[string]string{"ref": ref.String()})
	if err != nil {
		return agentdStart{}, err
	}
	var out agentdStart
	t0 := time.Now()
	d, err := daemon.Start(ctx, daemon.Config{Conn: natsstore.ConnectOptions{URL: b.emb.URL()}, Stream: stream,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return agentdStart{}, fmt.Errorf("start agentd: %w", err)
	}
	defer d.Close()
	out.start = time.Since(t0)
	t1 := time.Now()
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := b.nc.RequestWithContext(rctx, "agentd.task.resolve", body)
		cancel()
		if errors.Is(err, nats.ErrNoResponders) {
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			return agentdStart{}, fmt.Errorf("agentd.task.resolve: %w", err)
		}
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
			return agentdStart{}, fmt.Errorf("agentd.task.resolve %s: %s %s", ref, code, msg.Header.Get(micro.ErrorHeader))
		}
		var reply daemon.ResolveReply
		if err := json.Unmarshal(msg.Data, &reply); err != nil {
			return agentdStart{}, err
		}
		if len(reply.Capabilities) != b.p.caps {
			return agentdStart{}, fmt.Errorf("agentd.task.resolve %s: %d capabilities, want %d", ref, len(reply.Capabilities), b.p.caps)
		}
		break
	}
	out.first, out.total = time.Since(t1), time.Since(t0)
	runtime.GC()
	runtime.ReadMemStats(&after)
	out.heap, out.heapInuse = int64(after.HeapInuse)-int64(before.HeapInuse), after.HeapInuse
	out.rss = rss()
	return out, nil
}

// rss is the process's resident set size in bytes (Linux), 0 if unknown.
func rss() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// agentdFigures starts agentd on the bench's stream (the history's roots
// and everything the other phases wrote), then on a stream of its own
// holding -agentd-roots roots of -agentd-agents agents each.
func (b *bench) agentdFigures(ctx context.Context) error {
	refs := b.gen.refs(len(b.gen.roots))
	if len(refs) == 0 {
		return fmt.Errorf("agentd: no task ref in the history")
	}
	ref := refs[len(refs)/2]
	s, err := b.startDaemon(ctx, natsstore.Config{}, ref)
	if err != nil {
		return err
	}
	roots := len(b.gen.roots)
	b.add(Figure{Name: "agentd_start_10k_roots", Value: s.total.Seconds(), Unit: fmt.Sprintf("s, Start to 1st resolve, %d roots", roots),
		Target: "<= 1 s", Met: met(s.total <= time.Second)})
	b.add(Figure{Name: "agentd_start_10k_roots.start_ms", Value: ms(s.start), Unit: "ms in daemon.Start"})
	b.add(Figure{Name: "agentd_start_10k_roots.first_resolve_ms", Value: ms(s.first), Unit: "ms, Start's return to the answer"})
	b.add(Figure{Name: "agentd_start_10k_roots.heap_added_mib", Value: float64(s.heap) / (1 << 20), Unit: "MiB HeapInuse added (noisy)"})

	if b.p.agentdRoots == 0 {
		return nil
	}
	// A stream of its own: -agentd-roots roots of -agentd-agents agents.
	cfg := natsstore.Config{Prefix: "bench50", Stream: "BENCH50"}
	l, err := natsstore.OpenLog(ctx, b.nc, cfg)
	if err != nil {
		return err
	}
	g := newGenerator(b.p)
	g.prefix = cfg.Prefix
	start := time.Now()
	var mid agent.TaskRef
	const window = 1024
	var msgs []events.Message
	flush := func() error {
		_, err := l.AppendPipelined(ctx, msgs)
		msgs = msgs[:0]
		return err
	}
	for i := range b.p.agentdRoots {
		r := g.newRoot(fmt.Sprintf("agentd%d", i))
		for _, e := range r.wideV2(b.p.agentdAgents) {
			m := g.encode(e)
			zero := uint64(0)
			m.ExpectSeq = &zero
			msgs = append(msgs, m)
		}
		r.agents = nil // keep the generator small
		if i == b.p.agentdRoots/2 {
			mid = agent.TaskRef{Root: agent.RootID(r.fp), Path: "a0/a1", Task: "t0"}
		}
		if len(msgs) >= window {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	g = nil
	b.log.Info("agentd stream written", "roots", b.p.agentdRoots, "agents", b.p.agentdAgents, "took", time.Since(start).Round(time.Millisecond))
	s, err = b.startDaemon(ctx, cfg, mid)
	if err != nil {
		return err
	}
	name := fmt.Sprintf("agentd_start_%d_roots_x_%d", b.p.agentdRoots, b.p.agentdAgents)
	b.add(Figure{Name: name, Value: s.total.Seconds(), Unit: "s, Start to 1st resolve", Target: "<= 1 s", Met: met(s.total <= time.Second)})
	b.add(Figure{Name: name + ".heap_added_mib", Value: float64(s.heap) / (1 << 20), Unit: "MiB HeapInuse added (noisy)"})
	b.add(Figure{Name: name + ".process_heap_inuse_mib", Value: float64(s.heapInuse) / (1 << 20), Unit: "MiB HeapInuse, whole process"})
	b.add(Figure{Name: name + ".process_rss_mib", Value: float64(s.rss) / (1 << 20), Unit: "MiB RSS, whole process"})
	return nil
}
