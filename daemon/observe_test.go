package daemon_test

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/testutil"
)

// logBuffer keeps the log lines of the code under test (and sends them to
// t.Log).
type logBuffer struct {
	t   testing.TB
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.t.Log(strings.TrimRight(string(p), "\n"))
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestFollowerStoppedLogged: a follower that receives nothing while the
// stream grows is logged at WARN, with the sequences and the roots behind,
// and shown by agentreg_follower_stalled.
func TestFollowerStoppedLogged(t *testing.T) {
	srv := testutil.RunServer(t)
	logs := &logBuffer{t: t}
	d := startDaemon(t, srv, func(cfg *daemon.Config) {
		cfg.Logger = logs.logger()
		cfg.FollowerLagThreshold, cfg.FollowerLagFor, cfg.FollowerCheck = 1, 200*time.Millisecond, 50*time.Millisecond
	})
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "a"})
	time.Sleep(400 * time.Millisecond) // longer than FollowerLagFor: a follower that keeps up is not reported
	require.NotContains(t, logs.String(), "follower stopped")

	require.NoError(t, d.Runtime().Close()) // stops the follower
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other, err := agent.Open(ctx, agent.WithNATSURL(srv.ClientURL()), agent.WithCatalog(agent.SymbolicCatalog()), agent.WithLogger(testLogger(t)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	ref, err := other.RegisterRoot(ctx, architect())
	require.NoError(t, err)
	_, rc, err := other.Create(ctx, ref, agent.Spec{Name: "b"})
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `level=WARN msg="follower stopped: it received nothing while the stream grew`)
	}, 10*time.Second, 20*time.Millisecond)
	line := regexp.MustCompile(`.*follower stopped.*`).FindString(logs.String())
	require.Contains(t, line, "stream_last_seq="+itoa(rc.Seq))
	require.Contains(t, line, "followed_seq="+itoa(rc.Seq-1))
	require.Contains(t, line, "roots_behind=[architect@"+root.Root[:12]+"]")
	_, body := httpGet(t, d, "/metrics")
	require.Contains(t, body, "agentreg_follower_stalled 1")
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestOperatorMetrics: replays, snapshots, reconnects and per-root series
// only for the top roots asked for.
func TestOperatorMetrics(t *testing.T) {
	srv := testutil.RunServer(t)
	logs := &logBuffer{t: t}
	d := startDaemon(t, srv, func(cfg *daemon.Config) {
		cfg.Logger, cfg.SnapshotEvery, cfg.MetricsTopRoots = logs.logger(), 2, 1
	})
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	req := daemon.CreateRequest{Root: root.Root, Name: "a", IdempotencyKey: "k1", Tasks: []events.TaskDef{solveTask("solve")}}
	first := c.create(req)
	again := c.create(req)
	require.True(t, again.Replayed)
	require.Equal(t, first.Seq, again.Seq)
	for _, n := range []string{"b", "c", "d"} {
		c.create(daemon.CreateRequest{Root: root.Root, Name: n})
	}
	small := architect()
	small.Name = "small"
	c.registerRoot(small, "")

	metric := func() string { _, body := httpGet(t, d, "/metrics"); return body }
	require.Eventually(t, func() bool {
		return !strings.Contains(metric(), `agentreg_snapshots_total{result="taken"} 0`)
	}, 10*time.Second, 20*time.Millisecond, "a background snapshot is counted")
	body := metric()
	require.Contains(t, body, `agentreg_idempotent_replays_total{endpoint="agent_create"} 1`)
	require.Contains(t, body, "agentreg_loaded_roots 2")
	require.Contains(t, body, `agentreg_root_events{name="architect",root="`+root.Root+`"} 5`)
	require.Equal(t, 1, strings.Count(body, "agentreg_root_events{"), "only the top root has a series")

	// The server restarts: the connection is lost and re-established.
	srv = testutil.Restart(t, srv)
	require.Eventually(t, func() bool {
		b := metric()
		return strings.Contains(b, "agentreg_nats_disconnects_total 1") && strings.Contains(b, "agentreg_nats_reconnects_total 1")
	}, 20*time.Second, 50*time.Millisecond)
	require.Contains(t, logs.String(), `level=WARN msg="NATS connection lost; reconnecting"`)
	require.Contains(t, logs.String(), `level=INFO msg="NATS connection re-established"`)
	require.Eventually(t, func() bool {
		code, _ := httpGet(t, d, "/healthz")
		return code == 200
	}, 20*time.Second, 50*time.Millisecond, "ready again after the restart")
}

// TestViolationLogged: an event the fold refuses is logged at WARN once,
// with the root's fingerprint and name and the stream sequence.
func TestViolationLogged(t *testing.T) {
	srv := testutil.RunServer(t)
	logs := &logBuffer{t: t}
	d := startDaemon(t, srv, func(cfg *daemon.Config) { cfg.Logger = logs.logger() })
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "a"})
	seq := testutil.PublishRaw(t, c.nc, "agentreg."+root.Root+".a", []byte("not msgpack"), nil)
	want := `level=WARN msg="event not applied: violation" component=agentd root=` + root.Root + ` root_name=architect seq=` + itoa(seq) + " "
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), want) }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(1200 * time.Millisecond) // two more polls: logged once
	require.Equal(t, 1, strings.Count(logs.String(), want))
}
