// Command agentbench measures agentreg against raw JetStream on the same
// embedded server in the same run: appends, full replay, cold resolution at
// two stream sizes, snapshot restore and memory per agent. It prints a table
// and one JSON object per figure.
//
//	go run ./cmd/agentbench                 # 1M events over 10k roots
//	go run ./cmd/agentbench -events 100000  # a quicker run
//
// It imports the NATS client directly: the raw baselines are measured with
// it, beside the library, on the same connection type.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/snapshot"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "agentbench:", err)
		os.Exit(1)
	}
}

// Figure is one measurement, next to its raw JetStream baseline.
type Figure struct {
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline,omitempty"`
	BaseName string  `json:"baseline_name,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"`
	Target   string  `json:"target,omitempty"`
	Met      *bool   `json:"met,omitempty"`
}

type params struct {
	events, roots, depth, caps, tasks int
	small, resolves, bigAgents        int
	memAgents, appends, creates       int
	pipelined                         int
	dir                               string
	profile                           string
	jsonOnly                          bool
}

// Run runs the benchmark.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var p params
	fs := flag.NewFlagSet("agentbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&p.events, "events", 1_000_000, "events in the stream for the large figures")
	fs.IntVar(&p.roots, "roots", 10_000, "roots the history is spread over")
	fs.IntVar(&p.depth, "depth", 3, "depth of the agent trees")
	fs.IntVar(&p.caps, "caps", 5, "capabilities per agent")
	fs.IntVar(&p.tasks, "tasks", 2, "tasks per agent")
	fs.IntVar(&p.small, "small", 10_000, "events in the stream for the small cold-resolve figure")
	fs.IntVar(&p.resolves, "resolves", 100, "distinct task refs resolved cold")
	fs.IntVar(&p.bigAgents, "big-agents", 10_000, "agents in the root whose snapshot is restored")
	fs.IntVar(&p.memAgents, "mem-agents", 100_000, "agents in the registry whose memory is measured")
	fs.IntVar(&p.appends, "appends", 5_000, "sequential appends measured")
	fs.IntVar(&p.pipelined, "pipelined", 50_000, "pipelined appends measured")
	fs.IntVar(&p.creates, "creates", 1_000, "atomic agent creations measured")
	fs.StringVar(&p.dir, "dir", "", "data directory (default: a new temporary one, removed after)")
	fs.BoolVar(&p.jsonOnly, "json", false, "print only the JSON lines")
	fs.StringVar(&p.profile, "profile", "", "write a CPU profile of each phase into this directory (append.pprof, replay.pprof, ...)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if p.small >= p.events || p.roots < p.resolves || p.depth < 1 {
		return fmt.Errorf("need -small < -events, -roots >= -resolves, -depth >= 1")
	}
	b, err := newBench(ctx, p, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	steps := []struct {
		name string
		run  func(context.Context) error
	}{{"append", b.appendFigures}, {"history", b.historyFigures}, {"replay", b.replayFigure}, {"snapshot", b.snapshotFigure}, {"memory", b.memoryFigure}}
	for _, step := range steps {
		stop, err := b.startProfile(step.name)
		if err != nil {
			return err
		}
		err = step.run(ctx)
		stop()
		if err != nil {
			return err
		}
	}
	return b.report(stdout)
}

type bench struct {
	p       params
	log     *slog.Logger
	emb     *natsstore.Embedded
	nc      *nats.Conn
	js      jetstream.JetStream
	store   *natsstore.Log
	snaps   *natsstore.Snapshots
	figures []Figure
	cleanup func()
	gen     *generator
	started time.Time
}

func newBench(ctx context.Context, p params, stderr io.Writer) (*bench, error) {
	b := &bench{p: p, log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})), cleanup: func() {}, started: time.Now()}
	dir := p.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "agentbench-")
		if err != nil {
			return nil, err
		}
		dir, b.cleanup = tmp, func() { os.RemoveAll(tmp) }
	}
	var err error
	if b.emb, err = natsstore.StartEmbedded(natsstore.EmbeddedOptions{Dir: dir, NoListen: true}); err != nil {
		return nil, err
	}
	if b.nc, err = b.emb.Connect(); err != nil {
		return nil, err
	}
	if b.js, err = jetstream.New(b.nc, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		return nil, err
	}
	if b.store, err = natsstore.OpenLog(ctx, b.nc, natsstore.Config{}); err != nil {
		return nil, err
	}
	if b.snaps, err = natsstore.OpenSnapshots(ctx, b.store); err != nil {
		return nil, err
	}
	// The raw baselines publish to a stream with the same settings.
	if _, err = b.js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Storage: jetstream.FileStorage,
		Duplicates: 2 * time.Minute, Discard: jetstream.DiscardNew, AllowDirect: true, AllowAtomicPublish: true}); err != nil {
		return nil, err
	}
	b.gen = newGenerator(p)
	b.log.Info("agentbench", "dir", dir, "events", p.events, "roots", p.roots, "depth", p.depth, "cpus", runtime.NumCPU())
	return b, nil
}

// startProfile starts a CPU profile of a phase when -profile is set.
func (b *bench) startProfile(name string) (func(), error) {
	if b.p.profile == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(b.p.profile, 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(b.p.profile, name+".pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func (b *bench) close() {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.emb != nil {
		_ = b.emb.Close()
	}
	b.cleanup()
}

func (b *bench) add(f Figure) {
	if f.Baseline != 0 && f.Ratio == 0 {
		f.Ratio = f.Value / f.Baseline
	}
	b.figures = append(b.figures, f)
	b.log.Info("figure", "name", f.Name, "value", round(f.Value), "unit", f.Unit, "baseline", round(f.Baseline), "ratio", round(f.Ratio))
}

func round(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }

func met(ok bool) *bool { return &ok }

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

// --- appends ---

func (b *bench) appendFigures(ctx context.Context) error {
	root := b.gen.benchRoot()
	if _, err := b.store.Append(ctx, []events.Message{b.gen.encode(root.registered())}); err != nil {
		return err
	}
	payload := b.gen.encode(root.agent("warm", "").grantEvent("", 0)).Data
	n, pn := b.p.appends, b.p.pipelined
	const rounds, window = 3, 512

	// Agents to append to: created first, then events encoded ahead (each
	// in its agent's hash chain), so the timed loops only append.
	agents := make([]*genAgent, 64)
	subjSeq := map[string]uint64{}
	for i := range agents {
		agents[i] = root.agent(fmt.Sprintf("seq%d", i), "")
		for _, m := range b.gen.encodeAll(agents[i].create()) {
			seq, err := b.store.Append(ctx, []events.Message{m})
			if err != nil {
				return err
			}
			subjSeq[m.Subject] = seq
		}
	}
	encodeStart := time.Now()
	seqMsgs := make([][]events.Message, rounds)
	for r := range seqMsgs {
		seqMsgs[r] = make([]events.Message, n)
		for i := range n {
			seqMsgs[r][i] = b.gen.encode(agents[i%64].grantEvent("", i))
		}
	}
	encodeD := time.Since(encodeStart)
	pipeMsgs := make([][]events.Message, rounds)
	for r := range pipeMsgs {
		pipeMsgs[r] = make([]events.Message, pn)
		for i := range pn {
			m := b.gen.encode(root.agent(fmt.Sprintf("pipe%d_%d", r, i), "").createdEvent())
			zero := uint64(0)
			m.ExpectSeq = &zero
			pipeMsgs[r][i] = m
		}
	}

	// Sequential single-event appends with optimistic concurrency, and the
	// raw sync publish of the same bytes, alternating; each keeps its best.
	var rawBest, rawHBest, ourBest float64
	for r := range rounds {
		start := time.Now()
		for i := range n {
			if _, err := b.js.Publish(ctx, "raw.seq."+strconv.Itoa(i%64), payload); err != nil {
				return err
			}
		}
		rawBest = max(rawBest, rate(n, time.Since(start)))

		// The raw publish carrying the headers an append needs (dedupe id,
		// expected subject sequence, type, version): the server's checks.
		rawSeq := map[string]uint64{}
		start = time.Now()
		for i := range n {
			subj := "raw.seqh" + strconv.Itoa(r) + "." + strconv.Itoa(i%64)
			msg := nats.NewMsg(subj)
			msg.Data = payload
			msg.Header.Set(natsstore.HeaderType, "CapabilityGranted")
			msg.Header.Set(natsstore.HeaderVersion, "1")
			ack, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(seqMsgs[r][i].ID+"h"), jetstream.WithExpectLastSequencePerSubject(rawSeq[subj]))
			if err != nil {
				return err
			}
			rawSeq[subj] = ack.Sequence
		}
		rawHBest = max(rawHBest, rate(n, time.Since(start)))

		start = time.Now()
		for i := range n {
			m := seqMsgs[r][i]
			exp := subjSeq[m.Subject]
			m.ExpectSeq = &exp
			seq, err := b.store.Append(ctx, []events.Message{m})
			if err != nil {
				return err
			}
			subjSeq[m.Subject] = seq
		}
		ourBest = max(ourBest, rate(n, time.Since(start)))
	}
	b.add(Figure{Name: "append.sequential_occ", Value: ourBest, Unit: "events/s", Baseline: rawBest, BaseName: "raw sync publish",
		Target: ">= 0.8 x raw", Met: met(ourBest >= 0.8*rawBest)})
	b.add(Figure{Name: "append.sequential_occ_vs_same_headers", Value: ourBest, Unit: "events/s", Baseline: rawHBest, BaseName: "raw sync publish with the same headers"})
	b.add(Figure{Name: "encode.event", Value: float64(encodeD.Nanoseconds()) / float64(rounds*n) / 1000, Unit: "µs/event"})

	seqRaw := rawBest

	// Pipelined appends to distinct agents, against raw async publish.
	rawBest, rawHBest, ourBest = 0, 0, 0
	for r := range rounds {
		start := time.Now()
		for off := 0; off < pn; off += window {
			for i := off; i < min(off+window, pn); i++ {
				if _, err := b.js.PublishAsync("raw.pipe."+strconv.Itoa(r)+"."+strconv.Itoa(i), payload); err != nil {
					return err
				}
			}
			select {
			case <-b.js.PublishAsyncComplete():
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		rawBest = max(rawBest, rate(pn, time.Since(start)))

		start = time.Now()
		for off := 0; off < pn; off += window {
			for i := off; i < min(off+window, pn); i++ {
				msg := nats.NewMsg("raw.pipeh." + strconv.Itoa(r) + "." + strconv.Itoa(i))
				msg.Data = payload
				msg.Header.Set(natsstore.HeaderType, "AgentCreated")
				msg.Header.Set(natsstore.HeaderVersion, "1")
				if _, err := b.js.PublishMsgAsync(msg, jetstream.WithMsgID(pipeMsgs[r][i].ID+"h"), jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
					return err
				}
			}
			select {
			case <-b.js.PublishAsyncComplete():
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		rawHBest = max(rawHBest, rate(pn, time.Since(start)))

		start = time.Now()
		for off := 0; off < pn; off += window {
			if _, err := b.store.AppendPipelined(ctx, pipeMsgs[r][off:min(off+window, pn)]); err != nil {
				return err
			}
		}
		ourBest = max(ourBest, rate(pn, time.Since(start)))
	}
	b.add(Figure{Name: "append.pipelined_occ", Value: ourBest, Unit: "events/s", Baseline: rawBest, BaseName: "raw async publish",
		Target: ">= 0.7 x raw", Met: met(ourBest >= 0.7*rawBest)})
	b.add(Figure{Name: "append.pipelined_occ_vs_same_headers", Value: ourBest, Unit: "events/s", Baseline: rawHBest, BaseName: "raw async publish with the same headers"})

	// The same through the runtime, on a root of its own with a handful of
	// agents: Grant catches the registry up and checks it before writing,
	// and folds the write after.
	rtRoot := b.gen.newRoot("bench-runtime")
	rt, err := agent.Open(ctx, agent.WithLog(b.store, b.snaps), agent.WithCatalog(agent.SymbolicCatalog()), agent.WithSnapshotEvery(0),
		agent.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return err
	}
	ref, err := rt.RegisterRoot(ctx, rtRoot.def)
	if err != nil {
		return err
	}
	target, err := rt.Create(ctx, ref, rtRoot.spec("target"))
	if err != nil {
		return err
	}
	rn := min(n, 1000)
	start := time.Now()
	for i := range rn {
		if err := rt.Grant(ctx, target, events.Capability{Kind: events.KindModule, Name: fmt.Sprintf("m%d", i%b.p.caps)}); err != nil {
			return err
		}
	}
	b.add(Figure{Name: "append.sequential_runtime_grant", Value: rate(rn, time.Since(start)), Unit: "events/s", Baseline: seqRaw, BaseName: "raw sync publish"})

	// Atomic agent creation: create + grants + tasks in one batch.
	cn := b.p.creates
	batches := make([][]events.Message, cn)
	for i := range batches {
		batches[i] = b.gen.encodeAll(root.agent(fmt.Sprintf("atomic%d", i), "").create())
		zero := uint64(0)
		batches[i][0].ExpectSeq = &zero
	}
	start = time.Now()
	for i := range cn {
		if err := rawBatch(ctx, b.nc, "raw.batch."+strconv.Itoa(i), batches[i]); err != nil {
			return err
		}
	}
	rawC := time.Since(start)
	start = time.Now()
	for i := range cn {
		if _, err := b.store.Append(ctx, batches[i]); err != nil {
			return err
		}
	}
	ourC := time.Since(start)
	per := len(batches[0])
	b.add(Figure{Name: "append.atomic_create", Value: rate(cn, ourC), Unit: "agents/s", Baseline: rate(cn, rawC), BaseName: fmt.Sprintf("raw atomic batch of %d", per),
		Target: ">= 0.5 x raw", Met: met(rate(cn, ourC) >= 0.5*rate(cn, rawC))})

	// The same through the runtime (validation and catch-up included).
	rc := min(cn, 300)
	start = time.Now()
	for i := range rc {
		if _, err := rt.Create(ctx, ref, rtRoot.spec(fmt.Sprintf("rt%d", i))); err != nil {
			return err
		}
	}
	b.add(Figure{Name: "append.runtime_create", Value: rate(rc, time.Since(start)), Unit: "agents/s", Baseline: rate(cn, rawC), BaseName: fmt.Sprintf("raw atomic batch of %d", per)})
	return rt.Close()
}

// rawBatch publishes msgs as a JetStream atomic batch with only the batch
// headers: the baseline for an atomic creation.
func rawBatch(ctx context.Context, nc *nats.Conn, subject string, msgs []events.Message) error {
	id := ulid.Make().String()
	for i, m := range msgs {
		msg := nats.NewMsg(subject)
		msg.Data = m.Data
		msg.Header.Set("Nats-Batch-Id", id)
		msg.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := nc.PublishMsg(msg); err != nil {
				return err
			}
			continue
		}
		msg.Header.Set("Nats-Batch-Commit", "1")
		resp, err := nc.RequestMsgWithContext(ctx, msg)
		if err != nil {
			return err
		}
		if strings.Contains(string(resp.Data), `"error"`) {
			return fmt.Errorf("raw batch: %s", resp.Data)
		}
	}
	return nil
}

// --- history: replay and cold resolve ---

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
		if _, err := rt.RegisterRoot(ctx, b.gen.rootDef(r.Root)); err != nil {
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

// --- report ---

func (b *bench) report(w io.Writer) error {
	if !b.p.jsonOnly {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "figure\tvalue\tunit\tbaseline\tratio\ttarget\tmet\n")
		for _, f := range b.figures {
			base, ratio, m := "", "", ""
			if f.Baseline != 0 {
				base = fmt.Sprintf("%.1f (%s)", f.Baseline, f.BaseName)
				ratio = fmt.Sprintf("%.2f", f.Ratio)
			}
			if f.Met != nil {
				m = map[bool]string{true: "yes", false: "NO"}[*f.Met]
			}
			fmt.Fprintf(tw, "%s\t%.3f\t%s\t%s\t%s\t%s\t%s\n", f.Name, f.Value, f.Unit, base, ratio, f.Target, m)
		}
		tw.Flush()
		fmt.Fprintf(w, "\n%d events, %d roots, depth %d, %d caps and %d tasks per agent; %d CPUs; %s total\n\n",
			b.p.events, b.p.roots, b.p.depth, b.p.caps, b.p.tasks, runtime.NumCPU(), time.Since(b.started).Round(time.Second))
	}
	enc := json.NewEncoder(w)
	for _, f := range b.figures {
		if err := enc.Encode(f); err != nil {
			return err
		}
	}
	return nil
}
