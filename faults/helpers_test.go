package faults_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

var (
	soak     = flag.Bool("faults.soak", false, "run the long soak variants (more kills, restarts and time)")
	seedFlag = flag.Uint64("faults.seed", 0, "seed of the randomised tests (0: from the clock); each test logs the one it used")
)

// seed returns the test's seed and logs it with the way to run it again.
func seed(t *testing.T) uint64 {
	t.Helper()
	s := *seedFlag
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -run '^%s$' -faults.seed=%d)", s, t.Name(), s)
	return s
}

// pick returns the soak value with -faults.soak, the default otherwise.
func pick[T any](def, soakValue T) T {
	if *soak {
		return soakValue
	}
	return def
}

// tWriter sends log lines of the code under test to t.Log, so they show
// only when a test fails.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// syncBuffer collects output a test inspects.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// capturingLogger logs to t.Log and to the returned buffer.
func capturingLogger(t testing.TB) (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	w := io.MultiWriter(tWriter{t}, buf)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// nCaps is how many fn capabilities (f00, f01, ...) the test root holds.
const nCaps = 16

func fnCap(i int) events.Capability {
	return events.Capability{Kind: events.KindFunc, Name: fmt.Sprintf("f%02d", i)}
}

// rootDef is the root the in-process tests write under: it holds fn
// capabilities f00..f15.
func rootDef(name string) events.RootDef {
	def := events.RootDef{Name: name, Primer: "You are a fault-injection target."}
	for i := range nCaps {
		def.Capabilities = append(def.Capabilities, fnCap(i))
	}
	return def
}

func task(name string) events.TaskDef {
	return events.TaskDef{Name: name, Input: events.Schema{Type: "object"}, Output: events.Schema{Type: "string"}}
}

// openRuntime opens a runtime on url with a symbolic catalog, closed in
// t.Cleanup.
func openRuntime(t *testing.T, url string, opts ...agent.Option) *agent.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]agent.Option{agent.WithNATSURL(url), agent.WithCatalog(agent.SymbolicCatalog()),
		agent.WithLogger(testLogger(t))}, opts...)
	rt, err := agent.Open(ctx, all...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt.Close() })
	return rt
}

// openLog opens the event log on a connection of the test's own, which
// reconnects forever.
func openLog(t *testing.T, url string, cfg natsstore.Config) *natsstore.Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc := testutil.Connect(t, url)
	l, err := natsstore.OpenLog(ctx, nc, cfg)
	require.NoError(t, err)
	return l
}

// logState is what the log holds for one root, read from its first event:
// every record, the number of times each event id and each correlation id
// occurs, and the registry a fresh fold of the records gives.
type logState struct {
	recs   []events.Record
	ids    map[string]int
	idSeq  map[string]uint64
	corrs  map[string]int
	events map[uint64]*events.Event // by stream sequence; nil for bytes that do not decode
	reg    *projector.Registry
	bound  uint64 // the newest sequence of the root when the read started
}

// readLog reads a root's records with natsstore.Log.ReadRoot and folds them
// into a fresh registry.
func readLog(ctx context.Context, l *natsstore.Log, root string) (*logState, error) {
	s := &logState{ids: map[string]int{}, idSeq: map[string]uint64{}, corrs: map[string]int{},
		events: map[uint64]*events.Event{}, reg: projector.New(root)}
	bound, err := l.ReadRoot(ctx, root, 1, func(r events.Record) error {
		s.recs = append(s.recs, r)
		s.reg.Apply(r)
		e, err := events.Decode(r.Data)
		if err != nil {
			s.events[r.Seq] = nil
			return nil
		}
		s.events[r.Seq] = e
		s.ids[e.ID]++
		s.idSeq[e.ID] = r.Seq
		s.corrs[e.Correlation]++
		return nil
	})
	s.bound = bound
	return s, err
}

func (s *logState) hash(t *testing.T) string {
	t.Helper()
	h, err := s.reg.StateHash()
	require.NoError(t, err)
	return h
}

// requireUniqueIDs fails unless every event id in the log occurs once.
func (s *logState) requireUniqueIDs(t *testing.T) {
	t.Helper()
	for id, n := range s.ids {
		require.Equal(t, 1, n, "event %s is stored %d times (seq of the last copy %d)", id, n, s.idSeq[id])
	}
}

// agreeWith polls until the runtime's registry covers the same sequence as
// a fresh fold of the log (an append in flight when a writer died may land
// a moment later), then requires the same state hash. It returns the fold.
func agreeWith(t *testing.T, ctx context.Context, l *natsstore.Log, rt *agent.Runtime, root, who string) *logState {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := readLog(ctx, l, root)
		require.NoError(t, err)
		hash, seq, err := rt.StateHash(ctx, agent.RootID(root))
		require.NoError(t, err)
		if seq == s.reg.Seq {
			require.Equal(t, s.hash(t), hash, "%s: state hash at seq %d differs from a fresh fold of the log", who, seq)
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is at seq %d, a fresh fold of the log at seq %d, still after 30s", who, seq, s.reg.Seq)
		}
		waitBriefly(ctx)
	}
}

// waitBriefly is the pause between two polls of a condition with a
// deadline, or the backoff before a retry.
func waitBriefly(ctx context.Context) {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// eventually polls cond, in the test's goroutine, until it holds or the
// deadline passes.
func eventually(t *testing.T, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", fmt.Sprintf(format, args...), timeout)
		}
		waitBriefly(context.Background())
	}
}

// attempt is one write the load made, with its own correlation id: the
// events it stored can be counted in the log.
type attempt struct {
	corr   string
	what   string
	events int // events the write stores when it succeeds
	err    error
	resent int // times the write was sent again, same idempotency key, after an error
}

// load writes through one runtime in a loop, each write chosen from the
// registry as it stands: create an agent (one event carrying its grants
// and task), grant a capability the parent holds, revoke one the
// agent holds, define a task. Errors do not stop it: it backs off briefly
// and goes on, so that writes resume as soon as the log takes them again.
type load struct {
	rt      *agent.Runtime
	root    agent.AgentRef
	rng     *rand.Rand
	timeout time.Duration // per write

	mu       sync.Mutex
	attempts []attempt
	ok, errs atomic.Int64
	views    atomic.Int64 // reads that failed before a write could be chosen
	n        int
}

func newLoad(rt *agent.Runtime, root agent.AgentRef, seed uint64, timeout time.Duration) *load {
	return &load{rt: rt, root: root, rng: rand.New(rand.NewPCG(seed, 7)), timeout: timeout}
}

// run writes until ctx ends.
func (l *load) run(ctx context.Context) {
	for ctx.Err() == nil {
		if !l.step(ctx) {
			waitBriefly(ctx)
		}
	}
}

// step makes one attempt and reports whether it succeeded.
func (l *load) step(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	l.n++
	name := fmt.Sprintf("a%d", l.n)
	var what string
	var n int
	var do func(ctx context.Context) error
	err := inspect.View(ctx, l.rt, string(l.root.Root), func(reg *projector.Registry) error {
		what, n, do = chooseWrite(reg, l.rt, l.root, l.rng, name)
		return nil
	})
	if err != nil {
		l.views.Add(1)
		return false
	}
	corr := fmt.Sprintf("load-%d", l.n)
	// Every write carries an idempotency key. A write that failed for a
	// reason other than a refusal (a timeout, a lost reply, a server or
	// node that went away) is sent again with the same key, as a client
	// does, while the load goes on: it must be stored exactly once.
	wctx := agent.WithIdempotencyKey(agent.WithCorrelation(ctx, corr), corr)
	err = do(wctx)
	resent := 0
	for ; err != nil && resendable(err) && resent < maxResends && ctx.Err() == nil; resent++ {
		waitBriefly(ctx)
		err = do(wctx)
	}
	l.mu.Lock()
	l.attempts = append(l.attempts, attempt{corr: corr, what: what, events: n, err: err, resent: resent})
	l.mu.Unlock()
	if err != nil {
		l.errs.Add(1)
		return false
	}
	l.ok.Add(1)
	return true
}

// maxResends bounds how often one write is sent again.
const maxResends = 50

// resendable reports whether a failed write may have failed for a reason
// that sending it again can cure: not a refusal by the registry, not a
// full stream.
func resendable(err error) bool {
	for _, refusal := range []error{agent.ErrConflict, agent.ErrEscalation, agent.ErrRetired, agent.ErrNotFound,
		agent.ErrExists, agent.ErrMigrated, agent.ErrFull} {
		if errors.Is(err, refusal) {
			return false
		}
	}
	return true
}

// resends returns how many writes were sent again and how many of those
// succeeded in the end.
func resends(attempts []attempt) (sent, succeeded int) {
	for _, a := range attempts {
		if a.resent > 0 {
			sent++
			if a.err == nil {
				succeeded++
			}
		}
	}
	return sent, succeeded
}

// waitOK waits until the load has made n more successful writes than it
// had made when called, and returns how long that took.
func (l *load) waitOK(t *testing.T, n int64, timeout time.Duration, what string) time.Duration {
	t.Helper()
	start, from, errs := time.Now(), l.ok.Load(), l.errs.Load()
	for l.ok.Load() < from+n {
		if time.Since(start) > timeout {
			t.Fatalf("%s: the load made %d of %d writes within %v (%d errors, the last: %v)",
				what, l.ok.Load()-from, n, timeout, l.errs.Load()-errs, l.lastErr())
		}
		waitBriefly(context.Background())
	}
	return time.Since(start)
}

func (l *load) lastErr() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.attempts) - 1; i >= 0; i-- {
		if l.attempts[i].err != nil {
			return l.attempts[i].err
		}
	}
	return nil
}

func (l *load) snapshot() []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]attempt(nil), l.attempts...)
}

// chooseWrite picks a write from the registry as it stands and returns
// what it is, how many events it stores, and the call that makes it.
func chooseWrite(reg *projector.Registry, rt *agent.Runtime, root agent.AgentRef, rng *rand.Rand, name string) (string, int, func(context.Context) error) {
	var live []string
	for _, p := range reg.Paths() {
		if !reg.Agents[p].Retired && len(events.Ancestors(p)) < 3 {
			live = append(live, p)
		}
	}
	held := func(path string, c int) bool {
		if path == "" {
			return true
		}
		_, ok := reg.Agents[path].Capabilities[fnCap(c).Key()]
		return ok
	}
	if len(live) == 0 || rng.IntN(3) == 0 {
		parent := root
		if len(live) > 0 && rng.IntN(2) == 0 {
			parent = agent.AgentRef{Root: root.Root, Path: live[rng.IntN(len(live))]}
		}
		spec := agent.Spec{Name: name, Primer: "primer of " + name}
		for c := range nCaps {
			if held(parent.Path, c) && rng.IntN(6) == 0 {
				spec.Capabilities = append(spec.Capabilities, fnCap(c))
			}
		}
		if rng.IntN(2) == 0 {
			spec.Tasks = []events.TaskDef{task("t0")}
		}
		child := parent.Child(name)
		return "create " + child.Path, 1, func(ctx context.Context) error { // one event: creation carries grants and tasks
			_, _, err := rt.Create(ctx, parent, spec)
			return err
		}
	}
	a := agent.AgentRef{Root: root.Root, Path: live[rng.IntN(len(live))]}
	c := rng.IntN(nCaps)
	switch {
	case held(a.Path, c):
		return fmt.Sprintf("revoke %s from %s", fnCap(c).Name, a.Path), 1, func(ctx context.Context) error {
			return errOf(rt.Revoke(ctx, a, events.KindFunc, fnCap(c).Name))
		}
	case held(events.Parent(a.Path), c):
		return fmt.Sprintf("grant %s to %s", fnCap(c).Name, a.Path), 1, func(ctx context.Context) error {
			return errOf(rt.Grant(ctx, a, fnCap(c)))
		}
	default:
		name := fmt.Sprintf("t%d", c)
		return fmt.Sprintf("define %s on %s", name, a.Path), 1, func(ctx context.Context) error {
			_, _, err := rt.DefineTask(ctx, a, task(name))
			return err
		}
	}
}

// checkAttempts requires that every write that succeeded stored all its
// events exactly once, that every write that failed stored all or none of
// them, and that the fold applied every event of a write that succeeded
// (a violation may only come from a write that reported an error). It
// returns how many failed writes were stored nonetheless.
func checkAttempts(t *testing.T, s *logState, attempts []attempt) (storedAfterError int) {
	t.Helper()
	failed := map[string]bool{}
	for _, a := range attempts {
		got := s.corrs[a.corr]
		if a.err == nil {
			require.Equal(t, a.events, got, "%s (%s) succeeded: its events in the log", a.what, a.corr)
			continue
		}
		failed[a.corr] = true
		if strings.Contains(a.err.Error(), "the write stands") {
			// The append was acknowledged; reading it back failed.
			require.Equal(t, a.events, got, "%s (%s) was stored, then reading it back failed (%v): its events in the log", a.what, a.corr, a.err)
		}
		if got != 0 {
			require.Equal(t, a.events, got, "%s (%s) failed (%v): stored in part", a.what, a.corr, a.err)
			storedAfterError++
		}
		t.Logf("failed write %s (%s), %d of %d events stored: %v", a.what, a.corr, got, a.events, a.err)
	}
	for _, v := range s.reg.Violations {
		e := s.events[v.Seq]
		require.NotNil(t, e, "violation at seq %d: %s", v.Seq, v.Reason)
		require.True(t, failed[e.Correlation], "event %s at seq %d of a write that succeeded (%s) was not applied: %s",
			e.ID, v.Seq, e.Correlation, v.Reason)
	}
	return storedAfterError
}

// errOf drops a write's receipt: for assertions on the error alone.
func errOf[T any](_ T, err error) error { return err }
