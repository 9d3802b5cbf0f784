// Command writer appends to an agentreg log in a loop, through
// agent.Runtime, until it is killed: the process faults.TestWriterKilled
// SIGKILLs at random points.
//
// It prints one line per fact, each written and flushed on its own:
//
//	root <fingerprint>          the root it writes under (registered or found)
//	ack <event id> <seq>        an event the log acknowledged, at its stream sequence
//	resend <event id> <seq>     the same append sent again, same ids, and what the log answered
//
// Some appends are sent a second time with the same event ids straight
// through natsstore.Log.Append (with and without the expected subject
// sequence), as a client does when it lost an acknowledgement: the log must
// answer with the sequence the events are stored at and store nothing new.
//
//	writer -url nats://127.0.0.1:4222 -run 3 -seed 42
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
)

// Caps is how many fn capabilities the root holds (f0..f7).
const Caps = 8

// RootDef is the root the writer writes under.
func RootDef() events.RootDef {
	def := events.RootDef{Name: "faults_writer", Primer: "You are written to until killed."}
	for i := range Caps {
		def.Capabilities = append(def.Capabilities, events.Capability{Kind: events.KindFunc, Name: fmt.Sprintf("f%d", i)})
	}
	return def
}

func main() {
	url := flag.String("url", "", "NATS URL of the server holding the log")
	run := flag.Int("run", 0, "run number: names the agents this run creates")
	seed := flag.Uint64("seed", 1, "seed of the random choices")
	resend := flag.Int("resend", 3, "send one append in N a second time with the same ids (0: never)")
	snapEvery := flag.Uint64("snapshot-every", 25, "take a snapshot every N folded events")
	flag.Parse()
	if err := write(*url, *run, *seed, *resend, *snapEvery); err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		os.Exit(1)
	}
}

// out writes one line at a time and flushes it, so that a kill loses at
// most the line being written.
type out struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *out) line(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, format+"\n", args...)
	if err := o.w.Flush(); err != nil {
		os.Exit(2) // the test stopped reading
	}
}

// recLog is the runtime's log: it reports each acknowledged append and
// sometimes sends it again with the same event ids.
type recLog struct {
	*natsstore.Log
	out    *out
	rng    *rand.Rand
	resend int
}

func (l *recLog) Append(ctx context.Context, msgs []events.Message) (uint64, error) {
	seq, err := l.Log.Append(ctx, msgs)
	if err != nil {
		return seq, err
	}
	// An atomic batch is stored at consecutive sequences; seq is its last.
	first := seq - uint64(len(msgs)-1)
	for i, m := range msgs {
		l.out.line("ack %s %d", m.ID, first+uint64(i))
	}
	if l.resend > 0 && l.rng.IntN(l.resend) == 0 {
		again := msgs
		if l.rng.IntN(2) == 0 {
			// Without the expected sequence: only the dedupe by id protects.
			again = make([]events.Message, len(msgs))
			copy(again, msgs)
			again[0].ExpectSeq = nil
		}
		seq2, err := l.Log.Append(ctx, again)
		if err != nil {
			return seq, fmt.Errorf("append of %s stored at seq %d, sent again with the same ids: %w", msgs[0].ID, seq, err)
		}
		l.out.line("resend %s %d", msgs[len(msgs)-1].ID, seq2)
	}
	return seq, nil
}

func write(url string, run int, seed uint64, resend int, snapEvery uint64) error {
	ctx := context.Background()
	o := &out{w: bufio.NewWriter(os.Stdout)}
	nc, err := natsstore.Connect(url)
	if err != nil {
		return err
	}
	defer nc.Close()
	l, err := natsstore.OpenLog(ctx, nc, natsstore.Config{})
	if err != nil {
		return err
	}
	snaps, err := natsstore.OpenSnapshots(ctx, l)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, uint64(run)))
	rl := &recLog{Log: l, out: o, rng: rng, resend: resend}
	rt, err := agent.Open(ctx, agent.WithLog(rl, snaps), agent.WithCatalog(agent.SymbolicCatalog()),
		agent.WithSnapshotEvery(snapEvery), agent.WithDefaultActor(fmt.Sprintf("writer:%d", run)),
		agent.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return err
	}
	defer rt.Close()
	root, err := rt.RegisterRoot(ctx, RootDef())
	if err != nil {
		return err
	}
	o.line("root %s", root.Root)
	for i := 0; ; i++ {
		err := step(ctx, rt, root, rng, fmt.Sprintf("r%d_%d", run, i))
		// A conflict: an append of a killed run landed after this run read
		// the log. Read again and go on.
		if err != nil && !errors.Is(err, agent.ErrConflict) {
			return fmt.Errorf("write %d: %w", i, err)
		}
	}
}

// step makes one write chosen from the registry as it stands: create an
// agent (an atomic batch of its creation, grants and task), grant a
// capability the parent holds, revoke one the agent holds, or define a task.
func step(ctx context.Context, rt *agent.Runtime, root agent.AgentRef, rng *rand.Rand, name string) error {
	var do func() error
	err := rt.View(ctx, root.Root, func(reg *projector.Registry) error {
		var live []string
		for _, p := range reg.Paths() {
			if a := reg.Agents[p]; !a.Retired && len(events.Ancestors(p)) < 3 {
				live = append(live, p)
			}
		}
		held := func(path string, c int) bool {
			key := events.Capability{Kind: events.KindFunc, Name: fmt.Sprintf("f%d", c)}.Key()
			if path == "" {
				return true // the root holds every fn capability
			}
			_, ok := reg.Agents[path].Capabilities[key]
			return ok
		}
		fn := func(c int) events.Capability {
			return events.Capability{Kind: events.KindFunc, Name: fmt.Sprintf("f%d", c)}
		}
		if len(live) == 0 || rng.IntN(3) == 0 {
			parent := root
			if len(live) > 0 && rng.IntN(2) == 0 {
				parent = agent.AgentRef{Root: root.Root, Path: live[rng.IntN(len(live))]}
			}
			spec := agent.Spec{Name: name, Primer: "primer of " + name}
			for c := range Caps {
				if held(parent.Path, c) && rng.IntN(3) == 0 {
					spec.Capabilities = append(spec.Capabilities, fn(c))
				}
			}
			if rng.IntN(2) == 0 {
				spec.Tasks = []events.TaskDef{task("t0")}
			}
			do = func() error { _, _, err := rt.Create(ctx, parent, spec); return err }
			return nil
		}
		a := agent.AgentRef{Root: root.Root, Path: live[rng.IntN(len(live))]}
		c := rng.IntN(Caps)
		switch {
		case held(a.Path, c):
			do = func() error { return errOf(rt.Revoke(ctx, a, events.KindFunc, fn(c).Name)) }
		case held(events.Parent(a.Path), c):
			do = func() error { return errOf(rt.Grant(ctx, a, fn(c))) }
		default:
			do = func() error { _, _, err := rt.DefineTask(ctx, a, task(fmt.Sprintf("t%d", c))); return err }
		}
		return nil
	})
	if err != nil {
		return err
	}
	return do()
}

func task(name string) events.TaskDef {
	return events.TaskDef{Name: name, Input: events.Schema{Type: "object"}, Output: events.Schema{Type: "string"}}
}

// errOf drops a write's receipt.
func errOf[T any](_ T, err error) error { return err }
