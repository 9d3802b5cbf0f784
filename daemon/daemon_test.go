package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

// tWriter sends log lines of the code under test to t.Log, so they show
// only when a test fails.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startDaemon starts a daemon against srv, serving HTTP on a free port,
// and closes it in t.Cleanup. change, if set, adjusts the configuration.
func startDaemon(t *testing.T, srv *server.Server, change func(*daemon.Config)) *daemon.Daemon {
	t.Helper()
	cfg := daemon.Config{
		Conn:     natsstore.ConnectOptions{URL: srv.ClientURL()},
		HTTPAddr: "127.0.0.1:0",
		Logger:   testLogger(t),
	}
	if change != nil {
		change(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := daemon.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

// client talks to the daemon's API as any NATS client would.
type client struct {
	t      *testing.T
	nc     *nats.Conn
	prefix string
}

func newClient(t *testing.T, url string) *client {
	return &client{t: t, nc: testutil.Connect(t, url), prefix: "agentd"}
}

// request sends body (a string is sent as is, anything else as JSON) to
// the endpoint and returns the reply.
func (c *client) request(endpoint string, body any) *nats.Msg {
	c.t.Helper()
	var data []byte
	switch b := body.(type) {
	case string:
		data = []byte(b)
	case nil:
	default:
		var err error
		data, err = json.Marshal(b)
		require.NoError(c.t, err)
	}
	msg, err := c.nc.Request(c.prefix+"."+endpoint, data, 15*time.Second)
	require.NoError(c.t, err, "request %s", endpoint)
	return msg
}

// call sends a request that must succeed and decodes the reply into out.
func (c *client) call(endpoint string, body, out any) {
	c.t.Helper()
	msg := c.request(endpoint, body)
	require.Empty(c.t, msg.Header.Get(micro.ErrorCodeHeader), "%s: error %s: %s", endpoint,
		msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader))
	if out != nil {
		require.NoError(c.t, json.Unmarshal(msg.Data, out), "%s reply %s", endpoint, msg.Data)
	}
}

// fail sends a request that must fail and returns the micro error code and
// description.
func (c *client) fail(endpoint string, body any) (code, desc string) {
	c.t.Helper()
	msg := c.request(endpoint, body)
	code, desc = msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader)
	require.NotEmpty(c.t, code, "%s should fail; got reply %s", endpoint, msg.Data)
	return code, desc
}

var mathModule = events.Capability{Kind: events.KindModule, Name: "math"}

func architect() events.RootDef {
	return events.RootDef{Name: "architect", Primer: "You design specialists.",
		Capabilities: []events.Capability{mathModule, {Kind: events.KindModule, Name: "io"}}}
}

func solveTask(name string) events.TaskDef {
	return events.TaskDef{Name: name, Doc: "solves an equation",
		Input:  events.Schema{Type: "object", Fields: []events.Field{{Name: "equation", Schema: events.Schema{Type: "string"}, Required: true}}},
		Output: events.Schema{Type: "string"}}
}

func (c *client) registerRoot(def events.RootDef, actor string) daemon.WriteReply {
	c.t.Helper()
	var w daemon.WriteReply
	c.call("root.register", daemon.RegisterRootRequest{Def: def, Actor: actor}, &w)
	require.Equal(c.t, def.Fingerprint(), w.Root)
	require.NotZero(c.t, w.Seq)
	return w
}

func (c *client) create(req daemon.CreateRequest) daemon.WriteReply {
	c.t.Helper()
	var w daemon.WriteReply
	c.call("agent.create", req, &w)
	require.Equal(c.t, events.Join(req.Parent, req.Name), w.Path)
	return w
}

func (c *client) describe(root, path string, minSeq uint64) daemon.AgentView {
	c.t.Helper()
	var v daemon.AgentView
	c.call("agent.describe", daemon.ReadRequest{Root: root, Path: path, MinSeq: minSeq}, &v)
	return v
}

func taskNames(v daemon.AgentView) []string {
	var names []string
	for _, td := range v.Tasks {
		names = append(names, td.Name)
	}
	return names
}

func TestReadYourWrites(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, func(c *daemon.Config) { c.RequestTimeout = time.Second })
	c := newClient(t, d.URL())

	root := c.registerRoot(architect(), "user:root")
	w := c.create(daemon.CreateRequest{Root: root.Root, Name: "math_solver", Primer: "You solve equations.",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math", Include: []string{"sqrt", "abs"}}},
		Tasks:        []events.TaskDef{solveTask("solve")}, Actor: "user:alice"})
	require.Greater(t, w.Seq, root.Seq, "a write returns the sequence it reached")

	v := c.describe(root.Root, "math_solver", w.Seq)
	require.Equal(t, "math_solver", v.Path)
	require.Equal(t, "agentd", v.Creator, "a same-account caller is not named by NATS: agentd records itself")
	require.Equal(t, "user:alice", v.CreatorOnBehalfOfClaimed, "the body's actor, kept as a claim")
	require.Equal(t, "You solve equations.", v.Primer)
	require.GreaterOrEqual(t, v.Seq, w.Seq)
	require.LessOrEqual(t, v.CreatedSeq, w.Seq)
	require.Equal(t, []string{"solve"}, taskNames(v))

	// Every write is visible to the read that follows it at once.
	last := w.Seq
	for i := range 10 {
		name := fmt.Sprintf("t%d", i)
		var w daemon.WriteReply
		c.call("task.define", daemon.DefineTaskRequest{Root: root.Root, Path: "math_solver", Task: solveTask(name), Actor: "user:bob"}, &w)
		require.Greater(t, w.Seq, last, "write %d: seq %d after %d", i, w.Seq, last)
		require.Equal(t, root.Root+"/math_solver#"+name, w.Ref)
		last = w.Seq
		v := c.describe(root.Root, "math_solver", w.Seq)
		require.Contains(t, taskNames(v), name)
		require.GreaterOrEqual(t, v.Seq, w.Seq)

		var r daemon.ResolveReply
		c.call("task.resolve", daemon.ResolveRequest{Ref: w.Ref, MinSeq: w.Seq}, &r)
		require.Equal(t, name, r.Task.Name)
		require.Equal(t, w.Seq, r.Seq)
	}

	// A grant, then the describe that shows it.
	var g daemon.WriteReply
	c.call("agent.grant", daemon.GrantRequest{Root: root.Root, Path: "math_solver", Capability: events.Capability{Kind: events.KindModule, Name: "io"}, Actor: "user:carol"}, &g)
	require.Greater(t, g.Seq, last)
	v = c.describe(root.Root, "math_solver", g.Seq)
	var granted []string
	for _, c := range v.Granted {
		granted = append(granted, c.Name)
	}
	require.ElementsMatch(t, []string{"io", "math"}, granted)

	// A min_seq the stream has not reached waits for it up to the request
	// deadline, then answers 504 naming it: never older data as if current.
	start := time.Now()
	code, desc := c.fail("agent.describe", daemon.ReadRequest{Root: root.Root, Path: "math_solver", MinSeq: g.Seq + 1000})
	require.Equal(t, "504", code)
	require.Contains(t, desc, fmt.Sprintf("stream seq %d", g.Seq+1000))
	require.GreaterOrEqual(t, time.Since(start), time.Second/2)
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestList(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	for _, p := range []string{"a", "a/b", "a/b/c", "d"} {
		c.create(daemon.CreateRequest{Root: root.Root, Parent: events.Parent(p), Name: p[strings.LastIndexByte(p, '/')+1:]})
	}
	var retired daemon.WriteReply
	c.call("agent.retire", daemon.RetireRequest{Root: root.Root, Path: "d", Reason: "obsolete"}, &retired)

	type listReply struct {
		Root       string             `json:"root"`
		Name       string             `json:"name"`
		Agents     []daemon.AgentView `json:"agents"`
		Seq        uint64             `json:"seq"`
		Violations int                `json:"violations"`
	}
	paths := func(l listReply) []string {
		var out []string
		for _, a := range l.Agents {
			out = append(out, a.Path)
		}
		return out
	}
	var all listReply
	c.call("agent.list", daemon.ReadRequest{Root: root.Root, MinSeq: retired.Seq}, &all)
	require.Equal(t, root.Root, all.Root)
	require.Equal(t, "architect", all.Name)
	require.Equal(t, retired.Seq, all.Seq)
	require.Zero(t, all.Violations)
	require.ElementsMatch(t, []string{"a", "a/b", "a/b/c", "d"}, paths(all))
	for _, a := range all.Agents {
		require.Equal(t, a.Path == "d", a.Retired, "agent %s", a.Path)
	}

	var sub listReply
	c.call("agent.list", daemon.ReadRequest{Root: root.Root, Path: "a/b"}, &sub)
	require.ElementsMatch(t, []string{"a/b", "a/b/c"}, paths(sub), "a path lists that agent and its subtree only")

	code, desc := c.fail("agent.list", daemon.ReadRequest{Root: root.Root, Path: "a//b"})
	require.Equal(t, "400", code)
	require.Contains(t, desc, "a//b")

	// Pages as agent.Runtime.List: at most limit agents, the subtree's own
	// counted; next resumes; an after outside the path is refused.
	type pageReply struct {
		listReply
		Next string `json:"next"`
	}
	var got []string
	after := ""
	for range 5 {
		var pg pageReply
		c.call("agent.list", daemon.ReadRequest{Root: root.Root, Path: "a", After: after, Limit: 1}, &pg)
		require.LessOrEqual(t, len(pg.Agents), 1, "page after %q: %v", after, paths(pg.listReply))
		got = append(got, paths(pg.listReply)...)
		if pg.Next == "" {
			break
		}
		after = pg.Next
	}
	require.Equal(t, []string{"a", "a/b", "a/b/c"}, got)
	code, desc = c.fail("agent.list", daemon.ReadRequest{Root: root.Root, Path: "a", After: "d"})
	require.Equal(t, "400", code)
	require.Contains(t, desc, `after "d" is not path "a" nor below it`)
}

func TestLineage(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	before := time.Now().Add(-time.Second)

	root := c.registerRoot(architect(), "user:root")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "a", Capabilities: []events.Capability{mathModule}, Actor: "user:alice"})
	c.create(daemon.CreateRequest{Root: root.Root, Parent: "a", Name: "b", Capabilities: []events.Capability{mathModule}, Actor: "user:bob"})
	c.create(daemon.CreateRequest{Root: root.Root, Parent: "a/b", Name: "c", Actor: "svc:builder"})
	var g daemon.WriteReply
	c.call("agent.grant", daemon.GrantRequest{Root: root.Root, Path: "a", Capability: events.Capability{Kind: events.KindModule, Name: "io"}, Actor: "user:carol"}, &g)

	var l daemon.LineageReply
	c.call("agent.lineage", daemon.ReadRequest{Root: root.Root, Path: "a/b", MinSeq: g.Seq}, &l)
	require.Equal(t, "a/b", l.Path)
	require.Equal(t, g.Seq, l.Seq)

	type step struct{ path, what, actor string }
	flat := func(steps []daemon.Step) []step {
		var out []step
		for i, s := range steps {
			require.NotZero(t, s.Seq, "step %d %+v", i, s)
			require.True(t, s.Time.After(before) && s.Time.Before(time.Now().Add(time.Second)), "step %d %+v: time", i, s)
			if i > 0 { // the grants a creation carries share its sequence
				require.LessOrEqual(t, steps[i-1].Seq, s.Seq, "steps in stream order")
			}
			require.Equal(t, "agentd", s.Actor, "step %d %+v: the actor is agentd; the body's is a claim", i, s)
			out = append(out, step{s.Path, s.What, s.OnBehalfOfClaimed})
		}
		return out
	}
	require.Equal(t, []step{
		{"", "root architect registered", "user:root"},
		{"a", "created", "user:alice"},
		{"a", "granted module math", "user:alice"},
		{"a", "granted module io", "user:carol"},
	}, flat(l.Ancestors), "ancestors, root first")
	require.Equal(t, []step{{"a/b", "created", "user:bob"}, {"a/b", "granted module math", "user:bob"}}, flat(l.Agent))
	require.Equal(t, []step{{"a/b/c", "created", "svc:builder"}}, flat(l.Descendants))

	c.call("agent.lineage", daemon.ReadRequest{Root: root.Root, Path: "a/b/c"}, &l)
	require.Len(t, l.Ancestors, 6, "root, a (3 steps), a/b (2 steps)")
	require.Empty(t, l.Descendants)
	require.NotNil(t, l.Descendants, "an empty list, not null")

	code, _ := c.fail("agent.lineage", daemon.ReadRequest{Root: root.Root, Path: "nobody"})
	require.Equal(t, "404", code)
}

// serviceEndpoints asks the micro service for its endpoints, as
// `nats micro info agentreg` does.
func serviceEndpoints(t *testing.T, nc *nats.Conn) []string {
	t.Helper()
	msg, err := nc.Request("$SRV.INFO.agentreg", nil, 5*time.Second)
	require.NoError(t, err)
	var info micro.Info
	require.NoError(t, json.Unmarshal(msg.Data, &info), "%s", msg.Data)
	require.Equal(t, "agentreg", info.Name)
	var names []string
	for _, e := range info.Endpoints {
		names = append(names, e.Name)
	}
	return names
}

func TestInvoke(t *testing.T) {
	t.Run("NoExecutor", func(t *testing.T) {
		srv := testutil.RunServer(t)
		d := startDaemon(t, srv, nil)
		c := newClient(t, d.URL())
		eps := serviceEndpoints(t, c.nc)
		require.Contains(t, eps, "task_resolve")
		require.NotContains(t, eps, "task_invoke")
		_, err := c.nc.Request("agentd.task.invoke", []byte(`{"ref":"x"}`), 5*time.Second)
		require.ErrorIs(t, err, nats.ErrNoResponders)
	})

	t.Run("Executor", func(t *testing.T) {
		srv := testutil.RunServer(t)
		var mu sync.Mutex
		var got []*agent.Call
		var gotActor, gotClaim string
		exec := agent.ExecutorFunc(func(ctx context.Context, call *agent.Call) (any, error) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, call)
			gotActor, gotClaim = agent.ActorFrom(ctx, ""), agent.OnBehalfOfFrom(ctx)
			if call.Args["equation"] == "fail" {
				return nil, errors.New("model refused")
			}
			return map[string]any{"solution": "x = 1", "primer": call.Task.Primer}, nil
		})
		d := startDaemon(t, srv, func(cfg *daemon.Config) { cfg.Executor = exec })
		c := newClient(t, d.URL())
		require.Contains(t, serviceEndpoints(t, c.nc), "task_invoke")

		root := c.registerRoot(architect(), "")
		c.create(daemon.CreateRequest{Root: root.Root, Name: "math_solver", Primer: "You solve equations.",
			Capabilities: []events.Capability{mathModule}, Tasks: []events.TaskDef{solveTask("solve")}})
		ref := root.Root + "/math_solver#solve"

		var out struct {
			Ref    string         `json:"ref"`
			Result map[string]any `json:"result"`
		}
		c.call("task.invoke", daemon.InvokeRequest{Ref: ref, Args: map[string]any{"equation": "2x = 2"}, Actor: "user:alice"}, &out)
		require.Equal(t, ref, out.Ref)
		require.Equal(t, map[string]any{"solution": "x = 1", "primer": "You solve equations."}, out.Result)
		mu.Lock()
		require.Len(t, got, 1)
		require.Equal(t, map[string]any{"equation": "2x = 2"}, got[0].Args)
		require.Equal(t, ref, got[0].Task.Ref.String())
		require.Equal(t, "agentd", gotActor, "no caller named by NATS: agentd itself")
		require.Equal(t, "user:alice", gotClaim, "the body's actor, as a claim")
		mu.Unlock()

		code, desc := c.fail("task.invoke", daemon.InvokeRequest{Ref: ref, Args: map[string]any{}})
		require.Equal(t, "400", code)
		require.Contains(t, desc, `missing property 'equation'`)
		code, desc = c.fail("task.invoke", daemon.InvokeRequest{Ref: ref, Args: map[string]any{"equation": 42}})
		require.Equal(t, "400", code)
		require.Contains(t, desc, `at '/equation': got number, want string`)
		code, desc = c.fail("task.invoke", daemon.InvokeRequest{Ref: ref, Args: map[string]any{"equation": "fail"}})
		require.Equal(t, "500", code)
		require.Contains(t, desc, "model refused")
		code, _ = c.fail("task.invoke", daemon.InvokeRequest{Ref: root.Root + "/math_solver#nope"})
		require.Equal(t, "404", code)
		mu.Lock()
		require.Len(t, got, 2, "refused arguments never reach the executor")
		mu.Unlock()
	})
}

func TestAPIPrefixUnderEventPrefix(t *testing.T) {
	for _, tc := range []struct{ event, api string }{
		{"", "agentreg"},
		{"", "agentreg.api"},
		{"events", "events"},
		{"events", "events.api.v1"},
	} {
		t.Run(tc.event+"/"+tc.api, func(t *testing.T) {
			// Refused before anything is started: no server needed.
			_, err := daemon.Start(context.Background(), daemon.Config{
				Conn:      natsstore.ConnectOptions{URL: "nats://127.0.0.1:1"},
				Stream:    natsstore.Config{Prefix: tc.event},
				APIPrefix: tc.api, Logger: testLogger(t)})
			require.Error(t, err)
			require.Contains(t, err.Error(), "lies under the event prefix")
		})
	}
	t.Run("OK", func(t *testing.T) {
		// A prefix that only shares the letters is fine: subjects match by token.
		srv := testutil.RunServer(t)
		d := startDaemon(t, srv, func(cfg *daemon.Config) { cfg.APIPrefix = "agentregistry" })
		c := newClient(t, d.URL())
		c.prefix = "agentregistry"
		var h map[string]any
		c.call("health", nil, &h)
		require.Equal(t, "ok", h["status"])
	})
}

func TestHealthAndMetrics(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())

	var h map[string]any
	c.call("health", nil, &h) // a probe may send no body at all
	require.Equal(t, "ok", h["status"])
	require.Equal(t, "AGENTREG", h["stream"])
	c.call("health", "{}", &h)
	root := c.registerRoot(architect(), "")
	require.Eventually(t, func() bool {
		c.call("health", nil, &h)
		return h["followed_seq"] == float64(root.Seq)
	}, 10*time.Second, 10*time.Millisecond, "the follower reaches the stream's end: %v", h)
	require.Equal(t, float64(root.Seq), h["last_seq"])

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + d.HTTPAddr() + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, body := get("/healthz")
	require.Equal(t, http.StatusOK, code, body)
	code, body = get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `agentreg_request_duration_seconds_count{code="200",endpoint="health"}`)
	require.Contains(t, body, `agentreg_request_duration_seconds_count{code="200",endpoint="root_register"} 1`)
	require.Contains(t, body, "agentreg_events_followed_total 1")
	require.Contains(t, body, "agentreg_loaded_roots 1")
	require.Contains(t, body, "agentreg_loaded_events 1")
	require.NotContains(t, body, root.Root, "no per-root label unless MetricsTopRoots asks")
	require.Regexp(t, `agentreg_build_info\{goversion="go[^"]+",revision="[^"]*",version="[^"]+"\} 1`, body)
	require.Contains(t, body, "agentreg_request_workers 64")
}

// TestErrors checks that each kind of bad request gets the micro error code
// of its kind and a description naming the bad input.
func TestErrors(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "a", Capabilities: []events.Capability{mathModule}, Tasks: []events.TaskDef{solveTask("solve")}})
	c.create(daemon.CreateRequest{Root: root.Root, Name: "old", Tasks: []events.TaskDef{solveTask("solve")}})
	var w daemon.WriteReply
	c.call("agent.retire", daemon.RetireRequest{Root: root.Root, Path: "old"}, &w)
	unknown := strings.Repeat("0", 64)

	for _, tc := range []struct {
		name, endpoint string
		body           any
		code           string
		desc           string // a regexp the description must match
	}{
		{"Empty", "agent.create", "", "400", "empty request"},
		{"MalformedJSON", "agent.create", `{"root":`, "400", "malformed JSON"},
		{"SyntaxError", "agent.create", `{"root" "x"}`, "400", `malformed JSON at byte \d+`},
		{"TrailingData", "task.resolve", `{"ref":"a"} {}`, "400", "trailing data"},
		{"UnknownField", "task.resolve", `{"ref":"x","extra":1}`, "400", `"extra"`},
		{"WrongType", "agent.describe", `{"root":"x","min_seq":"1"}`, "400", `field "min_seq"`},
		{"UnknownRoot", "agent.create", daemon.CreateRequest{Root: unknown, Name: "x"}, "404", "root 000000000000"},
		{"BadRoot", "agent.describe", daemon.ReadRequest{Root: "nope", Path: "a"}, "400", `"nope"`},
		{"InvalidName", "agent.create", daemon.CreateRequest{Root: root.Root, Name: "a.b"}, "400", `"a\.b"`},
		{"InvalidParent", "agent.create", daemon.CreateRequest{Root: root.Root, Parent: "a/", Name: "b"}, "400", `parent: .*"a/"`},
		{"Escalation", "agent.grant", daemon.GrantRequest{Root: root.Root, Path: "a", Capability: events.Capability{Kind: events.KindModule, Name: "os"}}, "403", `module "os"`},
		{"EscalationAtCreate", "agent.create", daemon.CreateRequest{Root: root.Root, Parent: "a", Name: "b", Capabilities: []events.Capability{{Kind: events.KindModule, Name: "io"}}}, "403", `module "io"`},
		{"Exists", "agent.create", daemon.CreateRequest{Root: root.Root, Name: "a"}, "409", `"a"`},
		{"NoSuchAgent", "agent.grant", daemon.GrantRequest{Root: root.Root, Path: "ghost", Capability: mathModule}, "404", `"ghost"`},
		{"BadRef", "task.resolve", daemon.ResolveRequest{Ref: "not-a-ref"}, "400", `"not-a-ref"`},
		{"NoSuchTask", "task.resolve", daemon.ResolveRequest{Ref: root.Root + "/a#nope"}, "404", `"nope"`},
		{"UnknownRootRef", "task.resolve", daemon.ResolveRequest{Ref: unknown + "/a#solve"}, "404", "000000000000"},
		{"Retired", "task.resolve", daemon.ResolveRequest{Ref: root.Root + "/old#solve"}, "410", `"old" was retired`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, desc := c.fail(tc.endpoint, tc.body)
			require.Equal(t, tc.code, code, "description: %s", desc)
			require.Regexp(t, regexp.MustCompile(tc.desc), desc)
		})
	}
	// Nothing above was written.
	var l struct {
		Seq uint64 `json:"seq"`
	}
	c.call("agent.list", daemon.ReadRequest{Root: root.Root}, &l)
	require.Equal(t, w.Seq, l.Seq)
}

// TestFollowerKeepsRootHot writes through another process's runtime and
// checks that the daemon folds the events as they come, before anyone asks.
func TestFollowerKeepsRootHot(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "a"})
	c.describe(root.Root, "a", 0) // loaded

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other, err := agent.Open(ctx, agent.WithNATSURL(srv.ClientURL()), agent.WithCatalog(agent.SymbolicCatalog()), agent.WithLogger(testLogger(t)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	ref, err := other.RegisterRoot(ctx, architect())
	require.NoError(t, err)
	require.Equal(t, root.Root, string(ref.Root))
	_, _, err = other.Create(agent.WithActor(ctx, "svc:other"), ref, agent.Spec{Name: "b", Tasks: []events.TaskDef{solveTask("solve")}})
	require.NoError(t, err)
	_, otherSeq, err := other.StateHash(ctx, agent.RootID(root.Root))
	require.NoError(t, err)

	// No request reaches the daemon: only its follower can fold the event.
	statsSeq := func(root string) uint64 {
		for _, s := range d.Runtime().Stats() {
			if string(s.Root) == root {
				return s.Seq
			}
		}
		return 0
	}
	require.Eventually(t, func() bool { return statsSeq(root.Root) == otherSeq }, 10*time.Second, 5*time.Millisecond,
		"the daemon's registry follows the other process's write (seq %d)", otherSeq)
	v := c.describe(root.Root, "b", 0)
	require.Equal(t, "svc:other", v.Creator)
	require.Equal(t, otherSeq, v.Seq)

	// A root registered by the other process after the daemon started is
	// adopted on first use: its refs resolve here.
	def2 := events.RootDef{Name: "librarian", Primer: "You keep books.", Capabilities: []events.Capability{{Kind: events.KindModule, Name: "io"}}}
	ref2, err := other.RegisterRoot(ctx, def2)
	require.NoError(t, err)
	_, _, err = other.Create(ctx, ref2, agent.Spec{Name: "clerk", Tasks: []events.TaskDef{solveTask("file")}})
	require.NoError(t, err)
	_, known := d.Runtime().RootDef(ref2.Root)
	require.False(t, known, "nothing is loaded or registered before it is used")
	var r daemon.ResolveReply
	c.call("task.resolve", daemon.ResolveRequest{Ref: string(ref2.Root + "/clerk#file")}, &r)
	require.Equal(t, "librarian", r.RootName)
}

// TestAdoptRootsAtStart starts a daemon on a stream that already holds
// roots: nothing is read or loaded per root at start, and their refs
// resolve (each root adopted from the definition on its subject).
func TestAdoptRootsAtStart(t *testing.T) {
	srv := testutil.RunServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other, err := agent.Open(ctx, agent.WithNATSURL(srv.ClientURL()), agent.WithCatalog(agent.SymbolicCatalog()), agent.WithLogger(testLogger(t)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	var refs []string
	for i := range 3 {
		def := architect()
		def.Name = "architect" + strconv.Itoa(i)
		ref, err := other.RegisterRoot(ctx, def)
		require.NoError(t, err)
		_, _, err = other.Create(ctx, ref, agent.Spec{Name: "solver", Tasks: []events.TaskDef{solveTask("solve")}})
		require.NoError(t, err)
		refs = append(refs, string(ref.Root))
	}

	d := startDaemon(t, srv, nil)
	require.Empty(t, d.Runtime().Stats(), "no root is loaded at start")
	slices.Sort(refs)
	c := newClient(t, d.URL())
	for _, root := range refs {
		var r daemon.ResolveReply
		c.call("task.resolve", daemon.ResolveRequest{Ref: root + "/solver#solve"}, &r)
		require.True(t, strings.HasPrefix(r.RootName, "architect"))
		var l map[string]any
		c.call("agent.list", daemon.ReadRequest{Root: root}, &l)
		require.Len(t, l["agents"], 1)
	}
	var loaded []string
	for _, s := range d.Runtime().Stats() {
		loaded = append(loaded, string(s.Root))
	}
	require.Equal(t, refs, loaded, "roots load on first use")
}

// TestCloseLetsRequestsFinish closes the daemon while a request runs: the
// request gets its reply, and Close waits for it.
func TestCloseLetsRequestsFinish(t *testing.T) {
	srv := testutil.RunServer(t)
	entered, release := make(chan struct{}), make(chan struct{})
	exec := agent.ExecutorFunc(func(ctx context.Context, call *agent.Call) (any, error) {
		close(entered)
		select {
		case <-release:
			return "finished", nil
		case <-ctx.Done():
			return nil, fmt.Errorf("cancelled while running: %w", ctx.Err())
		}
	})
	d := startDaemon(t, srv, func(cfg *daemon.Config) { cfg.Executor = exec })
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "slow", Tasks: []events.TaskDef{solveTask("solve")}})

	replies := make(chan *nats.Msg, 1)
	go func() {
		body, _ := json.Marshal(daemon.InvokeRequest{Ref: root.Root + "/slow#solve", Args: map[string]any{"equation": "x"}})
		msg, err := c.nc.Request("agentd.task.invoke", body, 20*time.Second)
		if err != nil {
			msg = &nats.Msg{Header: nats.Header{micro.ErrorCodeHeader: []string{"client"}, micro.ErrorHeader: []string{err.Error()}}}
		}
		replies <- msg
	}()
	<-entered
	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	// The service stops answering new requests at once...
	require.Eventually(t, func() bool {
		_, err := c.nc.Request("agentd.health", nil, time.Second)
		return errors.Is(err, nats.ErrNoResponders)
	}, 10*time.Second, 5*time.Millisecond)
	// ...but Close waits for the running one.
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a request was running", err)
	default:
	}
	close(release)
	msg := <-replies
	require.Empty(t, msg.Header.Get(micro.ErrorCodeHeader), "%s", msg.Header.Get(micro.ErrorHeader))
	require.JSONEq(t, `{"ref":"`+root.Root+`/slow#solve","contract":"`+solveTask("solve").Contract()+`","result":"finished"}`, string(msg.Data))
	require.NoError(t, <-closed)
}

// TestClusterReadYourWrites runs three daemons, each embedding a node of a
// NATS cluster as agentd does, with the stream replicated three times. A
// follower replica applies a message a moment after the leader
// acknowledged it; still, a write acknowledged through one daemon is seen
// by the next write through a second daemon and by a read with min_seq
// through a third.
func TestClusterReadYourWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster: skipped with -short")
	}
	const n = 3
	ports, routes := make([]int, n), make([]string, n)
	for i := range n {
		ports[i] = freePort(t)
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", freePort(t))
	}
	daemons := make([]*daemon.Daemon, n)
	errs := make(chan error, n)
	for i := range n {
		dir := t.TempDir()
		conf := filepath.Join(dir, "nats.conf")
		require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(
			"server_name: n%d\nlisten: 127.0.0.1:%d\njetstream { store_dir: %q }\ncluster { name: agentreg, listen: %q, routes: [%s] }\n",
			i+1, ports[i], filepath.Join(dir, "js"), strings.TrimPrefix(routes[i], "nats-route://"), strings.Join(routes, ", "))), 0o644))
		go func() {
			// Started together: each waits for the others to form the cluster.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			d, err := daemon.Start(ctx, daemon.Config{DataDir: filepath.Join(dir, "data"), NATSConfig: conf,
				Stream: natsstore.Config{Replicas: 3}, Logger: testLogger(t)})
			daemons[i] = d
			errs <- err
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	var cs []*client
	for _, d := range daemons {
		t.Cleanup(func() { require.NoError(t, d.Close()) })
		cs = append(cs, newClient(t, d.URL()))
	}
	root := cs[0].registerRoot(architect(), "")
	for i := range 150 {
		name := fmt.Sprintf("a%d", i)
		w := cs[i%3].create(daemon.CreateRequest{Root: root.Root, Name: name})
		var def daemon.WriteReply
		cs[(i+1)%3].call("task.define", daemon.DefineTaskRequest{Root: root.Root, Path: name, Task: solveTask("solve")}, &def)
		require.Greater(t, def.Seq, w.Seq)
		var r daemon.ResolveReply
		cs[(i+2)%3].call("task.resolve", daemon.ResolveRequest{Ref: def.Ref, MinSeq: def.Seq}, &r)
		require.GreaterOrEqual(t, r.Seq, def.Seq)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Each endpoint's description, as `nats micro info agentreg` shows it,
// names every field its request accepts: a field the unknown-field check
// would refuse is never advertised, and none it takes is missing.
func TestEndpointDescriptionsNameEveryField(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	msg, err := c.nc.Request("$SRV.INFO.agentreg", nil, 5*time.Second)
	require.NoError(t, err)
	var info micro.Info
	require.NoError(t, json.Unmarshal(msg.Data, &info))
	want := map[string][]string{
		"root_register":  {"def", "actor", "idempotency_key"},
		"agent_create":   {"root", "parent", "name", "primer", "caps", "tasks", "actor", "idempotency_key"},
		"agent_grant":    {"root", "path", "cap", "replace", "actor", "idempotency_key"},
		"agent_revoke":   {"root", "path", "kind", "name", "members", "actor", "idempotency_key"},
		"task_define":    {"root", "path", "task", "actor", "idempotency_key"},
		"agent_retire":   {"root", "path", "reason", "actor", "idempotency_key"},
		"task_resolve":   {"ref", "min_seq"},
		"agent_describe": {"root", "path", "min_seq"},
	}
	seen := 0
	for _, e := range info.Endpoints {
		fields, ok := want[e.Name]
		if !ok {
			continue
		}
		seen++
		desc := e.Metadata["description"]
		for _, f := range fields {
			require.Regexp(t, `[{ ]`+f+`[,}]`, desc, "endpoint %s", e.Name)
		}
	}
	require.Equal(t, len(want), seen)
}
