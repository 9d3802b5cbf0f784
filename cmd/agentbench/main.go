// Command agentbench measures agentreg against raw JetStream on the same
// embedded server in the same run: appends, full replay, cold resolution at
// two stream sizes, writes and resolves on a small root against a root of
// 100k agents (growth), Runtime.Grant and Runtime.Create against the
// append and publish they make, creates across snapshot points, agentd's
// start-up to its first answer, snapshot restore and memory per agent. It
// prints a table and one JSON object per figure. One file per phase:
// append.go, resolve.go, replay.go, growth.go, writes.go, agentd.go,
// snapshot.go; generate.go makes the histories.
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
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/natsstore"
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
	growthSmall, growthAgents         int
	growthOps, writeOps               int
	snapCreates, snapEvery            int
	agentdRoots, agentdAgents         int
	loadClients, loadRequests         int
	loadRoots                         int
	phases                            string
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
	fs.IntVar(&p.creates, "creates", 1_000, "atomic batch creations measured (the v1 way of creating an agent)")
	fs.IntVar(&p.growthSmall, "growth-small", 10, "agents in the small root of the growth figures")
	fs.IntVar(&p.growthAgents, "growth-agents", 100_000, "agents in the large root of the growth figures")
	fs.IntVar(&p.growthOps, "growth-ops", 500, "creates, grants, warm and cold resolves timed at each growth size")
	fs.IntVar(&p.writeOps, "write-ops", 5_000, "Runtime.Grant and Runtime.Create calls (and as many baseline appends) per round")
	fs.IntVar(&p.snapCreates, "snap-creates", 2_000, "creates timed across snapshot points")
	fs.IntVar(&p.snapEvery, "snap-every", 100, "WithSnapshotEvery of the runtime whose creates cross snapshot points")
	fs.IntVar(&p.agentdRoots, "agentd-roots", 2_000, "roots in the stream of the second agentd start (0: skip it)")
	fs.IntVar(&p.agentdAgents, "agentd-agents", 50, "agents per root in the stream of the second agentd start")
	fs.IntVar(&p.loadClients, "load-clients", 200, "concurrent NATS clients of the agentd-load phase")
	fs.IntVar(&p.loadRequests, "load-requests", 10, "task.resolve, then agent.create, requests per client in the agentd-load phase")
	fs.IntVar(&p.loadRoots, "load-roots", 8, "roots the agentd-load phase resolves and creates in (writes to one root are serialised)")
	fs.StringVar(&p.phases, "phases", "", "comma-separated phases to run (default all): append, history, replay, growth, writes, snapcross, agentd, agentd-load, snapshot, memory; agentd-load alone needs no history")
	fs.StringVar(&p.dir, "dir", "", "data directory (default: a new temporary one, removed after)")
	fs.BoolVar(&p.jsonOnly, "json", false, "print only the JSON lines")
	fs.StringVar(&p.profile, "profile", "", "write a CPU profile of each phase into this directory (append.pprof, replay.pprof, ...)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if p.small >= p.events || p.roots < p.resolves || p.depth < 1 {
		return fmt.Errorf("need -small < -events, -roots >= -resolves, -depth >= 1")
	}
	if p.loadClients < 1 || p.loadRequests < 1 || p.loadRoots < 1 {
		return fmt.Errorf("need positive -load-clients, -load-requests and -load-roots")
	}
	if p.growthSmall < 2 || p.growthAgents < p.growthSmall || p.growthOps < 1 || p.writeOps < 1 || p.creates < 1 || p.snapCreates < 2 || (p.agentdRoots > 0 && p.agentdAgents < 2) {
		return fmt.Errorf("need -growth-agents >= -growth-small >= 2, -agentd-agents >= 2, and positive -growth-ops, -write-ops, -creates, -snap-creates")
	}
	b, err := newBench(ctx, p, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	steps := []struct {
		name string
		run  func(context.Context) error
	}{{"append", b.appendFigures}, {"history", b.historyFigures}, {"replay", b.replayFigure}, {"growth", b.growthFigures},
		{"writes", b.writeFigures}, {"snapcross", b.snapshotCrossing}, {"agentd", b.agentdFigures}, {"agentd-load", b.agentdLoadFigures},
		{"snapshot", b.snapshotFigure}, {"memory", b.memoryFigure}}
	want := map[string]bool{}
	for _, name := range strings.Split(p.phases, ",") {
		if name = strings.TrimSpace(name); name != "" {
			want[name] = true
		}
	}
	for _, step := range steps {
		delete(want, step.name)
	}
	for name := range want {
		return fmt.Errorf("-phases: no phase %q\nhint: agentbench -help lists them", name)
	}
	for _, step := range steps {
		if p.phases != "" && !strings.Contains(","+strings.ReplaceAll(p.phases, " ", "")+",", ","+step.name+",") {
			continue
		}
		b.log.Info("phase", "name", step.name)
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
	growth  []*growthRoot // the growth phase's roots: small, large
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
	if b.emb, err = natsstore.StartEmbedded(natsstore.EmbeddedOptions{Dir: dir, Host: "127.0.0.1", Port: -1}); err != nil {
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
	b.log.Info("agentbench", "dir", dir, "url", b.emb.URL(), "events", p.events, "roots", p.roots, "depth", p.depth, "cpus", runtime.NumCPU())
	return b, nil
}

// openRuntime opens a runtime on the bench's log with the generator's
// catalog; snapEvery 0 takes no snapshots.
func (b *bench) openRuntime(ctx context.Context, snapEvery uint64) (*agent.Runtime, error) {
	return agent.Open(ctx, agent.WithLog(b.store, b.snaps), agent.WithCatalog(b.gen.catalog()), agent.WithSnapshotEvery(snapEvery),
		agent.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
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
