// Command writer appends to an agentreg log in a loop, through
// agent.Runtime, until it is killed: the process faults.TestWriterKilled
// SIGKILLs at random points.
//
// It prints one line per fact, each written and flushed on its own:
//
//	root <fingerprint>          the root it writes under (registered or found)
//	ack <event id> <seq>        an event the log acknowledged, at its stream sequence
//	resend <event id> <seq>     the same append sent again, same ids, and what the log answered
//	intent <key> <op>           the write it makes next, under idempotency key <key> (op: JSON)
//	resumed <key> <seq> <replayed>  the killed run's last intent, sent again with its key, and its receipt
//	resumed <key> refused       the same, refused by the registry (as the original may have been)
//
// Every write carries an idempotency key and is announced by an intent
// line before it is made; a run given -resume (the last intent of the run
// killed before it) first makes that write again with the same key, as a
// client retrying after a crash does: it must be stored exactly once.
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
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
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
	resume := flag.String("resume", "", "an intent line's `<key> <op>` to make again first")
	flag.Parse()
	if err := write(*url, *run, *seed, *resend, *snapEvery, *resume); err != nil {
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

func (l *recLog) AppendEvent(ctx context.Context, m events.Message) (natsstore.Appended, error) {
	a, err := l.Log.AppendEvent(ctx, m)
	if err != nil {
		return a, err
	}
	if !a.Duplicate { // a copy stored before was acknowledged then
		l.out.line("ack %s %d", m.ID, a.Seq)
	}
	if l.resend > 0 && l.rng.IntN(l.resend) == 0 {
		again := m
		if l.rng.IntN(2) == 0 {
			// Without the expected sequence: only the dedupe by id protects.
			again.ExpectSeq = nil
		}
		a2, err := l.Log.AppendEvent(ctx, again)
		if err != nil {
			return a, fmt.Errorf("append of %s stored at seq %d, sent again with the same id: %w", m.ID, a.Seq, err)
		}
		if !a2.Duplicate {
			return a, fmt.Errorf("append of %s stored at seq %d, sent again with the same id: stored again at seq %d", m.ID, a.Seq, a2.Seq)
		}
		l.out.line("resend %s %d", m.ID, a2.Seq)
	}
	return a, nil
}

func write(url string, run int, seed uint64, resend int, snapEvery uint64, resume string) error {
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
	if resume != "" {
		key, js, _ := strings.Cut(resume, " ")
		var w op
		if err := json.Unmarshal([]byte(js), &w); err != nil {
			return fmt.Errorf("-resume %q: %w", resume, err)
		}
		rc, err := w.do(agent.WithIdempotencyKey(ctx, key), rt, root)
		switch {
		case err == nil:
			o.line("resumed %s %d %t", key, rc.Seq, rc.Replayed)
		case isRefusal(err):
			o.line("resumed %s refused", key)
		default:
			return fmt.Errorf("resume %s: %w", key, err)
		}
	}
	for i := 0; ; i++ {
		err := step(ctx, rt, root, rng, fmt.Sprintf("r%d_%d", run, i), o)
		// A conflict: an append of a killed run landed after this run read
		// the log. Read again and go on.
		if err != nil && !errors.Is(err, agent.ErrConflict) {
			return fmt.Errorf("write %d: %w", i, err)
		}
	}
}

// isRefusal reports a write the registry refused (the original of a
// resumed write may have been refused too, or the registry moved on).
func isRefusal(err error) bool {
	for _, r := range []error{agent.ErrConflict, agent.ErrEscalation, agent.ErrRetired, agent.ErrNotFound, agent.ErrExists} {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// op is one write, printed in an intent line and made again by -resume.
type op struct {
	Op     string `json:"op"` // create, grant, revoke, define
	Path   string `json:"path"`
	Name   string `json:"name,omitempty"`
	Caps   []int  `json:"caps,omitempty"`
	Cap    int    `json:"cap,omitempty"`
	Task   string `json:"task,omitempty"`
	Primer string `json:"primer,omitempty"`
}

func fn(c int) events.Capability {
	return events.Capability{Kind: events.KindFunc, Name: fmt.Sprintf("f%d", c)}
}

func (w op) do(ctx context.Context, rt *agent.Runtime, root agent.AgentRef) (agent.Receipt, error) {
	a := agent.AgentRef{Root: root.Root, Path: w.Path}
	switch w.Op {
	case "create":
		spec := agent.Spec{Name: w.Name, Primer: w.Primer}
		for _, c := range w.Caps {
			spec.Capabilities = append(spec.Capabilities, fn(c))
		}
		if w.Task != "" {
			spec.Tasks = []events.TaskDef{task(w.Task)}
		}
		_, rc, err := rt.Create(ctx, a, spec)
		return rc, err
	case "grant":
		return rt.Grant(ctx, a, fn(w.Cap))
	case "revoke":
		return rt.Revoke(ctx, a, events.KindFunc, fn(w.Cap).Name)
	case "define":
		_, rc, err := rt.DefineTask(ctx, a, task(w.Task))
		return rc, err
	}
	return agent.Receipt{}, fmt.Errorf("unknown op %q", w.Op)
}

// step makes one write chosen from the registry as it stands: create an
// agent (one event carrying its grants and task), grant a capability the
// parent holds, revoke one the agent holds, or define a task. It prints
// the write as an intent first, and makes it with name as its key.
func step(ctx context.Context, rt *agent.Runtime, root agent.AgentRef, rng *rand.Rand, name string, o *out) error {
	// The agents as they stand, through the library's value API.
	var live []string
	grants := map[string]map[string]bool{} // path -> capability keys held
	for page := (agent.AgentPage{}); ; {
		var err error
		page, err = rt.List(ctx, root.Root, agent.ListOptions{After: page.Next})
		if err != nil {
			return err
		}
		for _, a := range page.Agents {
			p := a.Ref.Path
			grants[p] = map[string]bool{}
			for _, g := range a.Granted {
				grants[p][g.Capability.Key()] = true
			}
			if !a.Retired && len(events.Ancestors(p)) < 3 {
				live = append(live, p)
			}
		}
		if page.Next == "" {
			break
		}
	}
	slices.Sort(live)
	held := func(path string, c int) bool {
		if path == "" {
			return true // the root holds every fn capability
		}
		return grants[path][fn(c).Key()]
	}
	w := choose(live, held, rng, name)
	js, err := json.Marshal(w)
	if err != nil {
		return err
	}
	o.line("intent %s %s", name, js)
	_, err = w.do(agent.WithIdempotencyKey(ctx, name), rt, root)
	return err
}

// choose picks one write from the agents as they stand (live: the
// agents not retired and less than three deep, sorted; held: whether an
// agent holds a capability).
func choose(live []string, held func(string, int) bool, rng *rand.Rand, name string) op {
	if len(live) == 0 || rng.IntN(3) == 0 {
		w := op{Op: "create", Name: name, Primer: "primer of " + name}
		if len(live) > 0 && rng.IntN(2) == 0 {
			w.Path = live[rng.IntN(len(live))]
		}
		for c := range Caps {
			if held(w.Path, c) && rng.IntN(3) == 0 {
				w.Caps = append(w.Caps, c)
			}
		}
		if rng.IntN(2) == 0 {
			w.Task = "t0"
		}
		return w
	}
	path := live[rng.IntN(len(live))]
	c := rng.IntN(Caps)
	switch {
	case held(path, c):
		return op{Op: "revoke", Path: path, Cap: c}
	case held(events.Parent(path), c):
		return op{Op: "grant", Path: path, Cap: c}
	}
	return op{Op: "define", Path: path, Task: fmt.Sprintf("t%d", c)}
}

func task(name string) events.TaskDef {
	return events.TaskDef{Name: name, Input: events.Schema{Type: "object"}, Output: events.Schema{Type: "string"}}
}
