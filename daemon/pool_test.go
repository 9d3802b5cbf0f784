package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/testutil"
)

// TestConcurrentRequests sends 200 requests at once (creates under
// different parents and resolves, from several connections): every one is
// answered, none fails. It asserts nothing about time.
func TestConcurrentRequests(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	for i := range 4 {
		c.create(daemon.CreateRequest{Root: root.Root, Name: fmt.Sprintf("p%d", i), Tasks: []events.TaskDef{solveTask("solve")}})
	}
	conns := make([]*nats.Conn, 8)
	for i := range conns {
		conns[i] = testutil.Connect(t, d.URL())
	}
	const n = 200
	type result struct {
		i          int
		code, desc string
		err        error
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var subject string
			var body any
			if i%2 == 0 {
				subject, body = "agentd.agent.create", daemon.CreateRequest{Root: root.Root, Parent: fmt.Sprintf("p%d", i%4), Name: fmt.Sprintf("c%d", i)}
			} else {
				subject, body = "agentd.task.resolve", daemon.ResolveRequest{Ref: fmt.Sprintf("%s/p%d#solve", root.Root, i%4)}
			}
			data, _ := json.Marshal(body)
			<-start
			msg, err := conns[i%len(conns)].Request(subject, data, 30*time.Second)
			r := result{i: i, err: err}
			if err == nil {
				r.code, r.desc = msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader)
			}
			results <- r
		}()
	}
	close(start)
	wg.Wait()
	close(results)
	answered := 0
	for r := range results {
		require.NoError(t, r.err, "request %d", r.i)
		require.Empty(t, r.code, "request %d: %s", r.i, r.desc)
		answered++
	}
	require.Equal(t, n, answered)
	var l struct {
		Agents []daemon.AgentView `json:"agents"`
	}
	c.call("agent.list", daemon.ReadRequest{Root: root.Root}, &l)
	require.Len(t, l.Agents, 4+n/2, "every create stored once")
}

// blocking is an executor that holds each call until released (or its
// context ends, if honour is set), telling when a call has started.
type blocking struct {
	started chan struct{}
	release chan struct{}
	honour  bool
}

func newBlocking(honour bool) *blocking {
	return &blocking{started: make(chan struct{}, 16), release: make(chan struct{}), honour: honour}
}

func (b *blocking) Execute(ctx context.Context, call *agent.Call) (any, error) {
	b.started <- struct{}{}
	if !b.honour {
		<-b.release
		return "done", nil
	}
	select {
	case <-b.release:
		return "done", nil
	case <-ctx.Done():
		return nil, fmt.Errorf("executor waiting for the model: %w", ctx.Err())
	}
}

// invokeAsync sends a task.invoke and delivers its reply.
func invokeAsync(t *testing.T, nc *nats.Conn, ref string) <-chan *nats.Msg {
	out := make(chan *nats.Msg, 1)
	body, err := json.Marshal(daemon.InvokeRequest{Ref: ref, Args: map[string]any{"equation": "x"}})
	require.NoError(t, err)
	go func() {
		msg, err := nc.Request("agentd.task.invoke", body, 20*time.Second)
		if err != nil {
			msg = &nats.Msg{Header: nats.Header{micro.ErrorCodeHeader: []string{"client"}, micro.ErrorHeader: []string{err.Error()}}}
		}
		out <- msg
	}()
	return out
}

// TestSaturated fills a pool of one worker and a queue of one: the next
// request is answered 503 at once, naming the endpoint, the pool and the
// queue; the health probe still answers; the others are answered when the
// work is released.
func TestSaturated(t *testing.T) {
	srv := testutil.RunServer(t)
	exec := newBlocking(true)
	d := startDaemon(t, srv, func(cfg *daemon.Config) {
		cfg.Executor, cfg.Workers, cfg.QueueSize = exec, 1, 1
	})
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "slow", Tasks: []events.TaskDef{solveTask("solve")}})
	ref := root.Root + "/slow#solve"

	first := invokeAsync(t, c.nc, ref)
	<-exec.started // the one worker is busy
	second := invokeAsync(t, c.nc, ref)
	require.Eventually(t, func() bool {
		var h struct {
			Queued  int `json:"queued"`
			Running int `json:"running"`
		}
		c.call("health", nil, &h) // answered outside the pool
		return h.Queued == 1 && h.Running == 1
	}, 10*time.Second, 5*time.Millisecond, "the second request waits in the queue")

	start := time.Now()
	code, desc := c.fail("task.invoke", daemon.InvokeRequest{Ref: ref, Args: map[string]any{"equation": "x"}})
	require.Equal(t, "503", code, desc)
	require.Less(t, time.Since(start), 5*time.Second, "refused at once, not after a wait")
	require.Contains(t, desc, "agentd is saturated")
	require.Contains(t, desc, "agentd.task.invoke")
	require.Contains(t, desc, "all 1 workers are busy and 1 requests are queued")

	close(exec.release)
	for _, ch := range []<-chan *nats.Msg{first, second} {
		msg := <-ch
		require.Empty(t, msg.Header.Get(micro.ErrorCodeHeader), "%s", msg.Header.Get(micro.ErrorHeader))
	}
	// micro's stats of the endpoint carry what the workers answered.
	msg, err := c.nc.Request("$SRV.STATS.agentreg", nil, 5*time.Second)
	require.NoError(t, err)
	var stats micro.Stats
	require.NoError(t, json.Unmarshal(msg.Data, &stats))
	var data struct {
		Answered, Errors, Saturated int
		LastError                   string `json:"last_error"`
	}
	for _, e := range stats.Endpoints {
		if e.Name == "task_invoke" {
			require.NoError(t, json.Unmarshal(e.Data, &data), "%s", e.Data)
		}
	}
	require.Equal(t, 3, data.Answered)
	require.Equal(t, 1, data.Saturated)
	require.Equal(t, 1, data.Errors)
	require.Contains(t, data.LastError, "503 agentd is saturated")
	resp, body := httpGet(t, d, "/metrics")
	require.Equal(t, 200, resp)
	require.Contains(t, body, `agentreg_requests_saturated_total{endpoint="task_invoke"} 1`)
	require.Contains(t, body, `agentreg_request_duration_seconds_count{code="503",endpoint="task_invoke"} 1`)
}

// TestDeadline: a request over Config.RequestTimeout is answered 504, by
// work that honours its context and, by the deadline timer, for work that
// does not (its worker stays busy until it returns).
func TestDeadline(t *testing.T) {
	for _, honour := range []bool{true, false} {
		t.Run(fmt.Sprintf("honours_ctx=%v", honour), func(t *testing.T) {
			srv := testutil.RunServer(t)
			exec := newBlocking(honour)
			d := startDaemon(t, srv, func(cfg *daemon.Config) {
				cfg.Executor, cfg.RequestTimeout = exec, 500*time.Millisecond
			})
			c := newClient(t, d.URL())
			root := c.registerRoot(architect(), "")
			c.create(daemon.CreateRequest{Root: root.Root, Name: "slow", Tasks: []events.TaskDef{solveTask("solve")}})
			start := time.Now()
			code, desc := c.fail("task.invoke", daemon.InvokeRequest{Ref: root.Root + "/slow#solve", Args: map[string]any{"equation": "x"}})
			took := time.Since(start)
			close(exec.release)
			require.Equal(t, "504", code, desc)
			require.Less(t, took, 5*time.Second)
			if honour {
				require.Contains(t, desc, "executor waiting for the model")
			} else {
				require.Contains(t, desc, "no answer within the request deadline of 500ms")
				require.Contains(t, desc, "task_invoke")
			}
		})
	}
}

func httpGet(t *testing.T, d *daemon.Daemon, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + d.HTTPAddr() + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}
