package faults_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

var (
	writerOnce sync.Once
	writerDir  string
	writerBin  string
	writerErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if writerDir != "" {
		os.RemoveAll(writerDir)
	}
	os.Exit(code)
}

// buildWriter builds faults/internal/writer once per test binary, when a
// test first needs it; TestMain removes it at the end.
func buildWriter(t *testing.T) string {
	t.Helper()
	writerOnce.Do(func() {
		writerDir, writerErr = os.MkdirTemp("", "faults-writer-")
		if writerErr != nil {
			return
		}
		writerBin = filepath.Join(writerDir, "writer")
		cmd := exec.Command("go", "build", "-o", writerBin, "github.com/agentreg/agentreg/faults/internal/writer")
		if out, err := cmd.CombinedOutput(); err != nil {
			writerErr = fmt.Errorf("go build writer: %w\n%s", err, out)
		}
	})
	require.NoError(t, writerErr)
	return writerBin
}

// writerProc is one run of the writer process.
type writerProc struct {
	cmd    *exec.Cmd
	lines  chan string // complete lines of its stdout; closed at EOF
	stderr *syncBuffer
}

func startWriter(t *testing.T, bin, url string, run int, seed uint64, resume string) *writerProc {
	t.Helper()
	w := &writerProc{lines: make(chan string, 1024), stderr: &syncBuffer{}}
	args := []string{"-url", url, "-run", strconv.Itoa(run), "-seed", strconv.FormatUint(seed, 10)}
	if resume != "" {
		args = append(args, "-resume", resume)
	}
	w.cmd = exec.Command(bin, args...)
	w.cmd.Stderr = w.stderr
	w.cmd.SysProcAttr = writerAttr()
	stdout, err := w.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, w.cmd.Start())
	go func() {
		defer close(w.lines)
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return // a line cut by the kill has no newline: never acknowledged
			}
			w.lines <- strings.TrimSuffix(line, "\n")
		}
	}()
	t.Cleanup(func() { _ = w.cmd.Process.Kill() })
	return w
}

// TestWriterKilled SIGKILLs a writer process at random points, 20 times,
// restarting it each time. After each kill: every event the writer printed
// as acknowledged is in the stream exactly once, at the sequence printed
// (also those it sent twice with the same ids), no event id occurs twice,
// and a fresh fold of the log, a runtime in this process that followed
// along, and a fresh runtime restored from the writer's snapshots have the
// same state hash.
func TestWriterKilled(t *testing.T) {
	ctx := context.Background()
	s := seed(t)
	rng := rand.New(rand.NewPCG(s, 1))
	kills := pick(20, 100)
	maxAcks := pick(30, 200) // acknowledged events a run may reach before its kill
	bin := buildWriter(t)
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	l := openLog(t, url, natsstore.Config{})
	live := openRuntime(t, url)

	start := time.Now()
	acked := map[string]uint64{} // event id -> sequence, over all runs
	var root string
	resends, restored, atStart := 0, 0, 0
	var last *logState
	type intent struct {
		run  int
		line string // "<key> <op>"
	}
	var lastIntent intent       // the newest intent line of the runs so far
	resumed := map[uint64]int{} // seq -> run that resumed a write found stored there
	nResumed, nReplayed, nRefused := 0, 0, 0
	for run := 1; run <= kills; run++ {
		target := 1 + rng.IntN(maxAcks)
		if run%10 == 5 {
			target = 0 // killed while it starts: connecting, opening, registering, restoring
			atStart++
		}
		resume := lastIntent
		w := startWriter(t, bin, url, run, s+uint64(run), resume.line)
		got := 0
		fail := func(format string, args ...any) {
			t.Helper()
			_ = w.cmd.Process.Kill()
			t.Fatalf("run %d: %s\nwriter stderr:\n%s", run, fmt.Sprintf(format, args...), w.stderr.String())
		}
		handle := func(line string) {
			f := strings.Fields(line)
			switch {
			case len(f) == 2 && f[0] == "root":
				if root != "" && f[1] != root {
					fail("root %s, earlier runs wrote under %s", f[1], root)
				}
				root = f[1]
			case len(f) >= 3 && f[0] == "intent": // intent <key> <op JSON, may hold spaces>
				lastIntent = intent{run: run, line: strings.SplitN(line, " ", 3)[1] + " " + strings.SplitN(line, " ", 3)[2]}
			case len(f) == 3 && f[0] == "resumed" && f[2] == "refused":
				nResumed++
				nRefused++
			case len(f) == 4 && f[0] == "resumed":
				seq, err := strconv.ParseUint(f[2], 10, 64)
				if err != nil || !strings.HasPrefix(resume.line, f[1]+" ") {
					fail("bad line %q (resuming %q)", line, resume.line)
				}
				nResumed++
				if f[3] == "true" {
					nReplayed++
					resumed[seq] = resume.run
				} else if lastIntent == resume {
					// Stored now, by this run: a later run resuming the
					// same intent (this one printed none yet) must find
					// this run's event.
					lastIntent.run = run
				}
			case len(f) == 3 && (f[0] == "ack" || f[0] == "resend"):
				seq, err := strconv.ParseUint(f[2], 10, 64)
				if err != nil {
					fail("bad line %q", line)
				}
				if f[0] == "ack" {
					if _, dup := acked[f[1]]; dup {
						fail("event %s acknowledged twice", f[1])
					}
					acked[f[1]] = seq
					got++
					return
				}
				resends++
				if acked[f[1]] != seq {
					fail("event %s acknowledged at seq %d, sent again with the same id: answered seq %d", f[1], acked[f[1]], seq)
				}
			default:
				fail("unexpected line %q", line)
			}
		}
		deadline := time.After(30 * time.Second)
		for got < target {
			select {
			case line, ok := <-w.lines:
				if !ok {
					fail("the writer exited by itself after %d acknowledged events", got)
				}
				handle(line)
			case <-deadline:
				fail("%d acknowledged events after 30s, waiting for %d", got, target)
			}
		}
		// The kill's timing: up to 5 ms after the target, so that it falls
		// anywhere in the writer's loop (an append in flight, a re-send, a
		// catch-up, a snapshot), not only right after a printed line; up to
		// 50 ms after the start for a kill while it starts.
		if target > 0 {
			time.Sleep(time.Duration(rng.IntN(5000)) * time.Microsecond)
		} else {
			time.Sleep(time.Duration(rng.IntN(50)) * time.Millisecond)
		}
		require.NoError(t, w.cmd.Process.Signal(syscall.SIGKILL))
		for line := range w.lines { // what it printed before it died
			handle(line)
		}
		err := w.cmd.Wait()
		if ws, ok := w.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			fail("the writer was not killed by SIGKILL but ended with %v", err)
		}
		if root == "" {
			continue // killed before it found its root: nothing to check yet
		}
		// The followers and the log agree (polling: an append sent just
		// before the kill may land a moment later).
		st := agreeWith(t, ctx, l, live, root, fmt.Sprintf("run %d: the live runtime", run))
		st.requireUniqueIDs(t)
		require.Empty(t, st.reg.Violations, "run %d: the writer's events all apply", run)
		for id, seq := range acked {
			require.Equal(t, 1, st.ids[id], "run %d: acknowledged event %s in the log", run, id)
			require.Equal(t, seq, st.idSeq[id], "run %d: acknowledged event %s: sequence", run, id)
		}
		for seq, by := range resumed {
			e := st.events[seq]
			require.NotNil(t, e, "run %d: a resumed write answered seq %d, which holds no event", run, seq)
			require.Equal(t, fmt.Sprintf("writer:%d", by), e.Actor,
				"run %d: the write run %d announced last, resumed and answered as stored before at seq %d, must be run %d's own event", run, by, seq, by)
		}
		lg, logs := capturingLogger(t)
		fresh := openRuntime(t, url, agent.WithLogger(lg), agent.WithSnapshotEvery(0))
		hash, seq, err := fresh.StateHash(ctx, agent.RootID(root))
		require.NoError(t, err)
		if seq == st.reg.Seq {
			require.Equal(t, st.hash(t), hash, "run %d: a fresh runtime (snapshot and tail) differs from a full fold at seq %d", run, seq)
		} else { // something landed since: read the log again
			agreeWith(t, ctx, l, fresh, root, fmt.Sprintf("run %d: a fresh runtime", run))
		}
		if _, ok := fresh.RestoredFrom(agent.RootID(root)); ok {
			restored++
		}
		require.NotContains(t, logs.String(), "snapshot skipped", "run %d: a snapshot the writer stored before its kill is bad", run)
		require.NoError(t, fresh.Close())
		last = st
		t.Logf("run %d killed after %d acknowledged events (target %d): %d events in the log, all checked", run, got, target, len(st.recs))
	}
	require.NotNil(t, last, "no run got as far as registering its root")
	t.Logf("%d runs resumed their killed predecessor's last write with its idempotency key: %d found it stored (answered with the original), %d refused, the rest stored it now",
		nResumed, nReplayed, nRefused)
	require.Positive(t, nResumed, "no run resumed a write")
	t.Logf("%d kills survived (%d while starting) in %v: %d acknowledged events checked after each kill, %d sent twice with the same ids, "+
		"%d events in the log (%d stored but killed before acknowledged), %d agents; a fresh runtime restored from a snapshot after %d kills",
		kills, atStart, time.Since(start).Round(time.Millisecond), len(acked), resends, len(last.recs), len(last.recs)-len(acked),
		len(last.reg.Agents), restored)
}
