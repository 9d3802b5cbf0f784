package security_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/testutil"
)

// forgery is a message a writer with publish rights on a root's subjects
// can store: headers the server sets on the replies it sends (status,
// sequence, subject, time, pending counts), written by the publisher.
type forgery struct {
	name string
	hdr  nats.Header
	body []byte
}

func forgeries() []forgery {
	h := func(kv ...string) nats.Header {
		out := nats.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	var out []forgery
	for _, body := range [][]byte{nil, []byte("forged body")} {
		kind := "empty"
		if body != nil {
			kind = "body"
		}
		for _, f := range []forgery{
			{name: "404", hdr: h("Status", "404", "Description", "No Messages")},
			{name: "204-EOB", hdr: h("Status", "204", "Description", "EOB", "Nats-Num-Pending", "0", "Nats-Last-Sequence", "1")},
			{name: "204-pending", hdr: h("Status", "204", "Description", "EOB", "Nats-Num-Pending", "100000", "Nats-Last-Sequence", "999999",
				"Nats-UpTo-Sequence", "1")},
			{name: "seq-low", hdr: h("Nats-Sequence", "1", "Nats-Subject", "agentreg.elsewhere", "Nats-Time-Stamp", "2000-01-01T00:00:00Z")},
			{name: "seq-high", hdr: h("Nats-Sequence", "999999999", "Nats-Num-Pending", "0", "Nats-Last-Sequence", "999999999",
				"Nats-Time-Stamp", "2999-01-01T00:00:00Z")},
			{name: "503", hdr: h("Status", "503")},
			{name: "408", hdr: h("Status", "408", "Description", "Request Timeout")},
			{name: "409-deleted", hdr: h("Status", "409", "Description", "Consumer Deleted")},
			{name: "100-heartbeat", hdr: h("Status", "100", "Description", "Idle Heartbeat")},
		} {
			f.name += "/" + kind
			f.body = body
			out = append(out, f)
		}
	}
	return out
}

// logBuffer is a slog destination the test reads back.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	t   *testing.T
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.t.Log(strings.TrimRight(string(p), "\n"))
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func forgedRootDef() events.RootDef {
	return events.RootDef{Name: "forged-headers", Primer: "You are attacked with forged headers.",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}, {Kind: events.KindModule, Name: "io"}}}
}

var replayBinDir string

var buildReplayOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "agentreg-replay-bin-")
	if err != nil {
		return "", err
	}
	replayBinDir = dir
	bin := filepath.Join(dir, "replay")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/agentreg/agentreg/cmd/replay").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build replay: %v: %s", err, out)
	}
	return bin, nil
})

// runReplay runs the built replay binary and returns stdout and the exit
// code.
func runReplay(t *testing.T, args ...string) (string, int) {
	t.Helper()
	bin, err := buildReplayOnce()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	t.Logf("replay %s: exit %d, stderr: %s", strings.Join(args, " "), code, e.String())
	return o.String(), code
}

// A writer with publish rights on one root's subjects stores messages
// carrying every header the server sets on what it sends readers (Status,
// Description, Nats-Num-Pending, Nats-Last-Sequence, Nats-Sequence,
// Nats-Subject, Nats-Time-Stamp), with and without a body, on the root's
// subject, an agent's subject and a new one. Later legitimate writes
// (create, grant, revoke) are seen by every reader: the writing runtime,
// a fresh runtime's load, a cold resolve, agentd (which follows the stream
// throughout), replay events/registry and replay audit (which reports each
// forged message by its sequence). "long" puts more than 4,096 other
// messages first, so that replay's reads go through an ordered consumer
// rather than direct gets.
func TestForgedHeadersBlindNoReader(t *testing.T) {
	t.Cleanup(func() {
		if replayBinDir != "" {
			_ = os.RemoveAll(replayBinDir)
		}
	})
	for _, tc := range []struct {
		name   string
		filler int
	}{{"short", 0}, {"long", 4200}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.filler > 0 && testing.Short() {
				t.Skip("fills the stream")
			}
			forgedHeaders(t, tc.filler)
		})
	}
}

func forgedHeaders(t *testing.T, filler int) {
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	ctx = agent.WithActor(ctx, "user:alice")

	nc := testutil.Connect(t, url)
	rt, err := agent.Open(ctx, agent.WithNATSURL(url), agent.WithLogger(testLogger(t)), agent.WithCatalog(agent.SymbolicCatalog()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt.Close() })
	if filler > 0 {
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		for i := range filler {
			_, err := js.PublishAsync("agentreg.filler", []byte(fmt.Sprint(i)))
			require.NoError(t, err)
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal("filler not acknowledged")
		}
	}
	root, err := rt.RegisterRoot(ctx, forgedRootDef())
	require.NoError(t, err)
	c1, _, err := rt.Create(ctx, root, agent.Spec{Name: "c1", Primer: "Solve.",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math", Include: []string{"sin", "cos"}}}, Tasks: []events.TaskDef{solveTask()}})
	require.NoError(t, err)

	// agentd follows the stream from before the forgery and has the root
	// loaded.
	logs := &logBuffer{t: t}
	d, err := daemon.Start(ctx, daemon.Config{Conn: natsstore.ConnectOptions{URL: url},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	var view daemon.AgentView
	call(t, nc, "agent.describe", daemon.ReadRequest{Root: string(root.Root), Path: "c1"}, &view)

	subjects := []string{
		events.Subject("agentreg", string(root.Root), ""),
		events.Subject("agentreg", string(root.Root), "c1"),
		events.Subject("agentreg", string(root.Root), "c1/ghost"),
	}
	forged := map[uint64]string{}
	for _, subj := range subjects {
		for _, f := range forgeries() {
			seq := testutil.PublishRaw(t, nc, subj, f.body, f.hdr)
			forged[seq] = f.name + " on " + subj
		}
		// Each subject's last message (until a legit write follows) claims
		// a low sequence: a reader taking the first Nats-Sequence as the
		// subject's last would stop its reads there.
		seq := testutil.PublishRaw(t, nc, subj, []byte("last"), nats.Header{"Nats-Sequence": {"1"}, "Nats-Num-Pending": {"0"}})
		forged[seq] = "last seq-low on " + subj
	}
	forgedSeqs := slices.Sorted(mapKeys(forged))
	t.Logf("forged messages at seqs %d..%d", forgedSeqs[0], forgedSeqs[len(forgedSeqs)-1])

	// Legitimate writes after the forgery.
	c2, rcCreate, err := rt.Create(ctx, root, agent.Spec{Name: "c2", Primer: "Read and write.",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "io", Include: []string{"read"}}}})
	require.NoError(t, err)
	rcGrant, err := rt.Grant(ctx, c1, events.Capability{Kind: events.KindModule, Name: "io", Include: []string{"read", "write"}})
	require.NoError(t, err)
	rcRevoke, err := rt.Revoke(ctx, c1, events.KindModule, "math")
	require.NoError(t, err)
	legit := []uint64{rcCreate.Seq, rcGrant.Seq, rcRevoke.Seq}
	last := rcRevoke.Seq
	require.Greater(t, rcCreate.Seq, forgedSeqs[len(forgedSeqs)-1])
	// agentd's writes to the root work too.
	var wrote struct {
		Seq uint64 `json:"seq"`
	}
	call(t, nc, "agent.grant", map[string]any{"root": root.Root, "path": "c2", "cap": events.Capability{Kind: events.KindModule, Name: "math", Include: []string{"pi"}}}, &wrote)
	require.Greater(t, wrote.Seq, last)
	legit = append(legit, wrote.Seq)
	last = wrote.Seq
	// A forged message after them, the newest of the root's subtree, claims
	// seq 1: a reader bounding its read by the subtree's last sequence as
	// the first Nats-Sequence header says would stop before the revoke.
	trailing := testutil.PublishRaw(t, nc, subjects[2], []byte("trailing"), nats.Header{"Nats-Sequence": {"1"}, "Nats-Num-Pending": {"0"}})
	forged[trailing] = "trailing seq-low on " + subjects[2]
	forgedSeqs = append(forgedSeqs, trailing)

	// checkRegistry asserts what every reader must see.
	checkRegistry := func(who string, reg *projector.Registry) {
		t.Helper()
		require.GreaterOrEqual(t, reg.Seq, last, "%s: registry stops before the revoke", who)
		require.Contains(t, reg.Agents, c2.Path, "%s: c2 (created after the forgery)", who)
		a := reg.Agents["c1"]
		require.NotNil(t, a, who)
		require.Contains(t, a.Capabilities, "module:io", "%s: the grant after the forgery", who)
		require.NotContains(t, a.Capabilities, "module:math", "%s: the revoke after the forgery", who)
		eff, err := reg.Effective("c1")
		require.NoError(t, err)
		require.Len(t, eff, 1, who)
		require.Equal(t, "io", eff[0].Capability.Name, who)
		var viol []uint64
		for _, v := range reg.Violations {
			viol = append(viol, v.Seq)
		}
		for _, seq := range forgedSeqs {
			require.Contains(t, viol, seq, "%s: forged message %s is a violation", who, forged[seq])
		}
		for _, seq := range legit {
			require.NotContains(t, viol, seq, who)
		}
		require.NotContains(t, reg.Agents, "c1/ghost", who)
	}

	// 1. The writing runtime (loaded before, kept current by its follower).
	require.NoError(t, inspect.View(ctx, rt, string(root.Root), func(reg *projector.Registry) error {
		checkRegistry("writer", reg)
		return nil
	}))
	wantHash, _, err := rt.StateHash(ctx, root.Root)
	require.NoError(t, err)

	// 2. A fresh runtime: load (snapshot, if any, plus tail) and catch-up.
	rt2, err := agent.Open(ctx, agent.WithNATSURL(url), agent.WithLogger(testLogger(t)), agent.WithCatalog(agent.SymbolicCatalog()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt2.Close() })
	require.NoError(t, inspect.View(ctx, rt2, string(root.Root), func(reg *projector.Registry) error {
		checkRegistry("fresh runtime", reg)
		return nil
	}))
	hash, _, err := rt2.StateHash(ctx, root.Root)
	require.NoError(t, err)
	require.Equal(t, wantHash, hash)

	// A fresh runtime that does not follow (reads the log on each View).
	rt3, err := agent.Open(ctx, agent.WithNATSURL(url), agent.WithFollow(false), agent.WithLogger(testLogger(t)), agent.WithCatalog(agent.SymbolicCatalog()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt3.Close() })
	require.NoError(t, inspect.View(ctx, rt3, string(root.Root), func(reg *projector.Registry) error {
		checkRegistry("runtime without follower", reg)
		return nil
	}))

	// 3. A cold resolve (the chain's literal subjects, direct gets).
	rt4, err := agent.Open(ctx, agent.WithNATSURL(url), agent.WithLogger(testLogger(t)), agent.WithCatalog(agent.SymbolicCatalog()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt4.Close() })
	ref := agent.TaskRef{Root: root.Root, Path: "c1", Task: "solve"}
	var task *agent.Task
	for _, r := range []*agent.Runtime{rt4, rt3} {
		_, err := r.RegisterRoot(ctx, forgedRootDef())
		require.NoError(t, err)
		task, err = r.Resolve(agent.WithMinSeq(ctx, last), ref)
		require.NoError(t, err)
		require.GreaterOrEqual(t, task.Seq, last)
		require.Len(t, task.Capabilities, 1, "cold resolve: %+v", task.Capabilities)
		require.Equal(t, "io", task.Capabilities[0].Ref.Name)
	}
	task, err = rt4.Resolve(ctx, ref) // no minimum: still past the forgery
	require.NoError(t, err)
	require.Len(t, task.Capabilities, 1)
	require.Equal(t, "io", task.Capabilities[0].Ref.Name)

	// 4. agentd, over NATS.
	call(t, nc, "agent.describe", daemon.ReadRequest{Root: string(root.Root), Path: "c1", MinSeq: last}, &view)
	require.GreaterOrEqual(t, view.Seq, last)
	require.Len(t, view.Effective, 1, "agentd describe: %+v", view.Effective)
	require.Equal(t, "io", view.Effective[0].Effective.Name)
	call(t, nc, "agent.describe", daemon.ReadRequest{Root: string(root.Root), Path: "c2", MinSeq: last}, &view)
	var res daemon.ResolveReply
	call(t, nc, "task.resolve", daemon.ResolveRequest{Ref: ref.String(), MinSeq: last}, &res)
	require.Len(t, res.Capabilities, 1, "agentd resolve: %+v", res.Capabilities)
	require.Equal(t, "io", res.Capabilities[0].Effective.Name)
	// ...and agentd logged each forged message as a violation, with its sequence.
	require.Eventually(t, func() bool {
		out := logs.String()
		for _, seq := range forgedSeqs {
			if !strings.Contains(out, fmt.Sprintf("seq=%d ", seq)) {
				return false
			}
		}
		return true
	}, 10*time.Second, 50*time.Millisecond, "agentd logs every forged message's violation")
	require.Contains(t, logs.String(), "level=WARN msg=\"event not applied: violation\"")

	// 5. replay events, registry and audit (the built binary).
	out, code := runReplay(t, "events", "--nats-url", url, "--root", string(root.Root), "--json")
	require.Equal(t, 0, code)
	var seen []uint64
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var ev struct {
			Seq     uint64 `json:"seq"`
			Subject string `json:"subject"`
		}
		require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
		seen = append(seen, ev.Seq)
	}
	for _, seq := range append(slices.Clone(legit), forgedSeqs...) {
		require.Contains(t, seen, seq, "replay events shows seq %d", seq)
	}

	out, code = runReplay(t, "registry", "--nats-url", url, "--root", string(root.Root), "--json")
	require.Equal(t, 0, code)
	var reg struct {
		Seq    uint64 `json:"seq"`
		Hash   string `json:"state_hash"`
		Agents []struct {
			Path      string `json:"path"`
			Effective []struct {
				Capability events.Capability `json:"effective"`
			} `json:"effective"`
		} `json:"agents"`
		Violations []projector.Violation `json:"violations"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &reg), out)
	require.GreaterOrEqual(t, reg.Seq, last)
	found := false
	for _, a := range reg.Agents {
		if a.Path == "c1" {
			found = true
			require.Len(t, a.Effective, 1, "replay registry c1: %+v", a.Effective)
			require.Equal(t, "io", a.Effective[0].Capability.Name)
		}
	}
	require.True(t, found, "replay registry lists c1")
	hash, _, err = rt.StateHash(ctx, root.Root)
	require.NoError(t, err)
	require.Equal(t, hash, reg.Hash, "replay's registry is the runtime's")

	out, code = runReplay(t, "audit", "--nats-url", url, "--root", string(root.Root), "--json")
	require.Equal(t, 1, code, "audit is not clean")
	var rep struct {
		Events   int `json:"events"`
		Problems []struct {
			Seq  uint64 `json:"seq"`
			Kind string `json:"kind"`
		} `json:"problems"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	problems := map[uint64]string{}
	for _, p := range rep.Problems {
		problems[p.Seq] = p.Kind
	}
	for _, seq := range forgedSeqs {
		require.Contains(t, problems, seq, "audit reports forged %s", forged[seq])
	}
	for _, seq := range legit {
		require.NotContains(t, problems, seq, "audit: legit seq %d applied", seq)
	}
	require.Len(t, rep.Problems, len(forgedSeqs), "audit: only the forged messages: %+v", rep.Problems)

	// The stream itself: nothing of it was lost.
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stream, err := js.Stream(ctx, "AGENTREG")
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, trailing, info.State.LastSeq)
	require.Zero(t, info.State.NumDeleted)
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// agentd logs at WARN each stream sequence its follower never receives (a
// deleted message), with the sequence, on a stream created without
// deny_delete (natsstore.Config.AllowDeletes, as a stream made before
// deletes were denied would be). Opening such a stream warns too.
func TestAgentdLogsDeletedSequences(t *testing.T) {
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rt, err := agent.Open(ctx, agent.WithNATSURL(url), agent.WithLogger(testLogger(t)), agent.WithCatalog(agent.SymbolicCatalog()),
		agent.WithStream(natsstore.Config{AllowDeletes: true}))
	require.NoError(t, err)
	t.Cleanup(func() { _ = rt.Close() })
	root, err := rt.RegisterRoot(ctx, forgedRootDef()) // seq 1
	require.NoError(t, err)
	var seqs []uint64
	for _, name := range []string{"a", "b", "c"} { // seqs 2, 3, 4
		_, rc, err := rt.Create(ctx, root, agent.Spec{Name: name, Primer: "p"})
		require.NoError(t, err)
		seqs = append(seqs, rc.Seq)
	}
	require.Equal(t, []uint64{2, 3, 4}, seqs)
	nc := testutil.Connect(t, url)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stream, err := js.Stream(ctx, "AGENTREG")
	require.NoError(t, err)
	require.NoError(t, stream.DeleteMsg(ctx, 3)) // agent b's creation

	logs := &logBuffer{t: t}
	d, err := daemon.Start(ctx, daemon.Config{Conn: natsstore.ConnectOptions{URL: url},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	require.Contains(t, logs.String(), "level=WARN msg=\"stream allows deleting or purging events")

	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "level=WARN msg=\"stream sequences missing: deleted or purged messages\"")
	}, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, logs.String(), "seq=3 through_seq=3 count=1 next_seq=4")

	// Later messages arrive in order: no gap where nothing was deleted.
	for _, name := range []string{"d", "e"} { // seqs 5, 6
		_, _, err := rt.Create(ctx, root, agent.Spec{Name: name, Primer: "p"})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return d.Runtime().FollowPosition() >= 6 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, 1, strings.Count(logs.String(), "stream sequences missing"), "no gap where nothing was deleted")
}
