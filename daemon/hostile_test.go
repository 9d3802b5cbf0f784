package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

// Tests of agentd under a client that sends what it should not: huge
// errors, requests that wait, sequences that will not come.

// failing is an executor whose every call fails with err.
func failing(err error) agent.Executor {
	return agent.ExecutorFunc(func(context.Context, *agent.Call) (any, error) { return nil, err })
}

// TestLongErrorIsCut: an error of megabytes (a validation error can be)
// is answered, its description cut to a few KiB saying so, not dropped
// by the client library while the caller waits for its timeout.
func TestLongErrorIsCut(t *testing.T) {
	srv := testutil.RunServer(t)
	long := strings.Repeat("arguments do not match; ", 100_000) // 2.4 MB, over max_payload
	d := startDaemon(t, srv, func(cfg *daemon.Config) {
		cfg.Executor = failing(fmt.Errorf("the model refused: %s: %w", long, agent.ErrInvalidArgs))
		cfg.RequestTimeout = 3 * time.Second
	})
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "s", Tasks: []events.TaskDef{solveTask("solve")}})
	code, desc := c.fail("task.invoke", daemon.InvokeRequest{Ref: root.Root + "/s#solve", Args: map[string]any{"equation": "x"}})
	require.Equal(t, "400", code, desc)
	require.Contains(t, desc, "the model refused: arguments do not match")
	require.Regexp(t, `\[\d+ more bytes cut: agentd sends at most 4096 bytes of an error`, desc)
	require.Less(t, len(desc), 4096+200)
}

// TestReplyOverMaxPayloadAnswers500: an answer the server's max_payload
// cannot carry becomes a short 500 saying so.
func TestReplyOverMaxPayloadAnswers500(t *testing.T) {
	opts := testutil.ServerOptions(t.TempDir())
	opts.MaxPayload = 3000 // under the 4 KiB an error description may hold
	srv := testutil.RunServerWithOptions(t, opts)
	d := startDaemon(t, srv, func(cfg *daemon.Config) {
		cfg.Executor = failing(fmt.Errorf("%s: %w", strings.Repeat("e", 10_000), agent.ErrInvalidArgs))
	})
	c := newClient(t, d.URL())
	root := c.registerRoot(events.RootDef{Name: "small"}, "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "s", Tasks: []events.TaskDef{solveTask("solve")}})
	code, desc := c.fail("task.invoke", daemon.InvokeRequest{Ref: root.Root + "/s#solve", Args: map[string]any{"equation": "x"}})
	require.Equal(t, "500", code, desc)
	require.Contains(t, desc, "agentd could not send its answer")
	require.Contains(t, desc, "(status 400), more than the NATS server's max_payload of 3000")
}

// TestQueuedRequestAnsweredAtItsDeadline: a request waiting for a worker
// is answered 504 at its deadline, while the worker is still busy, not
// when the worker comes to it.
func TestQueuedRequestAnsweredAtItsDeadline(t *testing.T) {
	srv := testutil.RunServer(t)
	exec := newBlocking(false) // holds its worker until released
	d := startDaemon(t, srv, func(cfg *daemon.Config) {
		cfg.Executor, cfg.Workers, cfg.QueueSize, cfg.RequestTimeout = exec, 1, 4, 500*time.Millisecond
	})
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "s", Tasks: []events.TaskDef{solveTask("solve")}})
	busy := invokeAsync(t, c.nc, root.Root+"/s#solve")
	<-exec.started // the one worker is busy until released
	code, desc := c.fail("task.resolve", daemon.ResolveRequest{Ref: root.Root + "/s#solve"})
	require.Equal(t, "504", code, desc)
	require.Contains(t, desc, "task_resolve: waited for a worker past the request deadline of 500ms (all 1 workers busy)")
	close(exec.release) // only now: the 504 came while the worker was busy
	msg := <-busy
	require.NotEqual(t, "client", msg.Header.Get(micro.ErrorCodeHeader), "the blocked invoke is answered: %s", msg.Header.Get(micro.ErrorHeader))
	// The worker skips the answered request and serves the next.
	c.call("task.resolve", daemon.ResolveRequest{Ref: root.Root + "/s#solve"}, nil)
}

// TestFarMinSeqDoesNotStarve: a flood of reads asking for a sequence the
// stream will not reach holds no worker: another client is served at
// once; the flood is answered 504 naming the sequence at its deadline,
// or 503 beyond Config.MinSeqWaiters; a min_seq the stream reaches later
// is served when it does, taking the place of a far one.
func TestFarMinSeqDoesNotStarve(t *testing.T) {
	srv := testutil.RunServer(t)
	const workers, queue, waiters, flood = 2, 4, 8, 40
	d := startDaemon(t, srv, func(cfg *daemon.Config) {
		cfg.Workers, cfg.QueueSize, cfg.MinSeqWaiters, cfg.RequestTimeout = workers, queue, waiters, 5*time.Second
	})
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	w := c.create(daemon.CreateRequest{Root: root.Root, Name: "s", Tasks: []events.TaskDef{solveTask("solve")}})
	ref := root.Root + "/s#solve"

	attacker := testutil.Connect(t, d.URL())
	inbox := nats.NewInbox()
	replies := make(chan *nats.Msg, flood)
	sub, err := attacker.ChanSubscribe(inbox, replies)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	body := fmt.Sprintf(`{"ref":%q,"min_seq":1000000000}`, ref)
	for range flood {
		require.NoError(t, attacker.PublishRequest("agentd.task.resolve", inbox, []byte(body)))
	}
	require.NoError(t, attacker.Flush())

	// Everything beyond the waiters is refused at once.
	codes := map[string]int{}
	for range flood - waiters {
		msg := <-replies
		codes[msg.Header.Get(micro.ErrorCodeHeader)]++
		require.Contains(t, msg.Header.Get(micro.ErrorHeader), "wait for a min_seq the stream has not reached")
	}
	require.Equal(t, map[string]int{"503": flood - waiters}, codes)

	// The waiters hold no worker: others are served, reads and writes.
	start := time.Now()
	other := newClient(t, d.URL())
	for i := range 2 * (workers + queue) {
		other.call("task.resolve", daemon.ResolveRequest{Ref: ref, MinSeq: w.Seq}, nil)
		other.create(daemon.CreateRequest{Root: root.Root, Name: fmt.Sprintf("o%d", i)})
	}
	require.Less(t, time.Since(start), 4*time.Second, "served while the flood waits")
	require.Equal(t, waiters, waiting(c), "the flood still waits")

	// A read for the next sequence waits for it, and is served when a
	// write gets there.
	var h struct {
		FollowedSeq uint64 `json:"followed_seq"`
	}
	c.call("health", nil, &h)
	next := make(chan *nats.Msg, 1)
	go func() {
		data, _ := json.Marshal(daemon.ResolveRequest{Ref: ref, MinSeq: h.FollowedSeq + 1})
		msg, err := other.nc.Request("agentd.task.resolve", data, 10*time.Second)
		if err != nil {
			msg = &nats.Msg{Header: nats.Header{micro.ErrorCodeHeader: []string{"client"}, micro.ErrorHeader: []string{err.Error()}}}
		}
		next <- msg
	}()
	evicted := <-replies // the list is full: one of the flood gives way
	require.Equal(t, "503", evicted.Header.Get(micro.ErrorCodeHeader))
	require.Contains(t, evicted.Header.Get(micro.ErrorHeader), "none higher than its 1000000000")
	select {
	case msg := <-next:
		t.Fatalf("answered before its sequence was written: %s %s %s", msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader), msg.Data)
	default:
	}
	require.Equal(t, waiters, waiting(c))
	wr := c.create(daemon.CreateRequest{Root: root.Root, Name: "late"})
	msg := <-next
	require.Empty(t, msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader))
	var rr daemon.ResolveReply
	require.NoError(t, json.Unmarshal(msg.Data, &rr))
	require.GreaterOrEqual(t, rr.Seq, h.FollowedSeq+1)
	require.GreaterOrEqual(t, wr.Seq, h.FollowedSeq+1)

	// The flood's waiters are answered at their deadline, naming the sequence.
	for range waiters - 1 {
		msg := <-replies
		require.Equal(t, "504", msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader))
		require.Contains(t, msg.Header.Get(micro.ErrorHeader), "task_resolve: wait for stream seq 1000000000 (min_seq) within the request deadline of 5s")
	}
	require.Equal(t, 0, waiting(c))
}

// waiting is the health probe's count of reads waiting for a min_seq.
func waiting(c *client) int {
	var h struct {
		Waiting int `json:"waiting"`
	}
	c.call("health", nil, &h)
	return h.Waiting
}

// TestSchemaTooDeepAnswers413: a JSON Schema over its nesting limit in
// a request is over a size limit (413), also when the schema type's own
// decoding refuses it.
func TestSchemaTooDeepAnswers413(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	deep := strings.Repeat(`{"not":`, events.MaxJSONSchemaDepth+1) + "{}" + strings.Repeat("}", events.MaxJSONSchemaDepth+1)
	body := fmt.Sprintf(`{"root":%q,"name":"b","tasks":[{"name":"t","input_schema":%s,"output_schema":{}}]}`, root.Root, deep)
	code, desc := c.fail("agent.create", body)
	require.Equal(t, "413", code, desc)
	require.Contains(t, desc, "nests objects and arrays more than 32 deep")
}

// TestCloseAnswersWaitingReads: a read waiting for a min_seq is answered
// 503 when the daemon closes, not kept until its deadline.
func TestCloseAnswersWaitingReads(t *testing.T) {
	srv := testutil.RunServer(t)
	cfg := daemon.Config{Conn: natsstore.ConnectOptions{URL: srv.ClientURL()}, Logger: testLogger(t), RequestTimeout: 20 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := daemon.Start(ctx, cfg)
	require.NoError(t, err)
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "s", Tasks: []events.TaskDef{solveTask("solve")}})
	reply := make(chan *nats.Msg, 1)
	go func() {
		data, _ := json.Marshal(daemon.ResolveRequest{Ref: root.Root + "/s#solve", MinSeq: 1 << 40})
		msg, err := c.nc.Request("agentd.task.resolve", data, 15*time.Second)
		if err != nil {
			msg = &nats.Msg{Header: nats.Header{micro.ErrorCodeHeader: []string{"client"}, micro.ErrorHeader: []string{err.Error()}}}
		}
		reply <- msg
	}()
	require.Eventually(t, func() bool { return waiting(c) == 1 }, 5*time.Second, 5*time.Millisecond)
	start := time.Now()
	require.NoError(t, d.Close())
	require.Less(t, time.Since(start), 10*time.Second, "Close did not wait for the read's deadline")
	msg := <-reply
	require.Equal(t, "503", msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader))
	require.Contains(t, msg.Header.Get(micro.ErrorHeader), "agentd is shutting down")
}
