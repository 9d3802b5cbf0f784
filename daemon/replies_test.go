package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

// TestBadInput400 sends a bad input to every endpoint: each is answered
// 400 (never 500) with a description naming the field, and no Go type.
func TestBadInput400(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, func(cfg *daemon.Config) { cfg.Executor = newBlocking(true) })
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	w := c.create(daemon.CreateRequest{Root: root.Root, Name: "a", Capabilities: []events.Capability{mathModule}, Tasks: []events.TaskDef{solveTask("solve")}})

	badSchema := events.TaskDef{Name: "t", Input: events.Schema{Type: "string"}, Output: events.Schema{Type: "string"}}
	badOutput := events.TaskDef{Name: "t", Input: events.Schema{Type: "object"}, Output: events.Schema{Type: "list"}}
	badCap := events.Capability{Kind: "module", Name: "math", Include: []string{"["}}
	badDef := architect()
	badDef.Tasks = []events.TaskDef{badSchema}
	for _, tc := range []struct {
		name, endpoint string
		body           any
		desc           string // must be in the description
	}{
		{"CreateBadTaskSchema", "agent.create", daemon.CreateRequest{Root: root.Root, Name: "b", Tasks: []events.TaskDef{badSchema}}, "tasks[0]: "},
		{"CreateBadOutputSchema", "agent.create", daemon.CreateRequest{Root: root.Root, Name: "b", Tasks: []events.TaskDef{badOutput}}, "tasks[0]: "},
		{"CreateTaskTwice", "agent.create", daemon.CreateRequest{Root: root.Root, Name: "b", Tasks: []events.TaskDef{solveTask("s"), solveTask("s")}}, `tasks[1]: task "s" appears twice`},
		{"CreateBadCapability", "agent.create", daemon.CreateRequest{Root: root.Root, Name: "b", Capabilities: []events.Capability{badCap}}, "caps[0]: "},
		{"CreateCapabilityKind", "agent.create", daemon.CreateRequest{Root: root.Root, Name: "b", Capabilities: []events.Capability{{Kind: "package", Name: "math"}}}, "caps[0]: "},
		{"CreateCapabilityTwice", "agent.create", daemon.CreateRequest{Root: root.Root, Name: "b", Capabilities: []events.Capability{mathModule, mathModule}}, "caps[1]: "},
		{"CreateBadName", "agent.create", daemon.CreateRequest{Root: root.Root, Name: ""}, "name: "},
		{"CreateBadRoot", "agent.create", daemon.CreateRequest{Root: "x", Name: "b"}, "root: "},
		{"DefineBadSchema", "task.define", daemon.DefineTaskRequest{Root: root.Root, Path: "a", Task: badSchema}, "task: "},
		{"DefineBadPath", "task.define", daemon.DefineTaskRequest{Root: root.Root, Path: "a//b", Task: solveTask("s")}, "path: "},
		{"RegisterBadDef", "root.register", daemon.RegisterRootRequest{Def: badDef}, "def: "},
		{"RegisterNoName", "root.register", daemon.RegisterRootRequest{}, "def: "},
		{"GrantBadCapability", "agent.grant", daemon.GrantRequest{Root: root.Root, Path: "a", Capability: badCap}, "cap: "},
		{"GrantNoKind", "agent.grant", daemon.GrantRequest{Root: root.Root, Path: "a", Capability: events.Capability{Name: "math"}}, "cap: "},
		{"RevokeBadKind", "agent.revoke", daemon.RevokeRequest{Root: root.Root, Path: "a", Kind: "package", Name: "math"}, "kind: "},
		{"RevokeBadName", "agent.revoke", daemon.RevokeRequest{Root: root.Root, Path: "a", Kind: "module", Name: ""}, "name: "},
		{"RetireBadPath", "agent.retire", daemon.RetireRequest{Root: root.Root, Path: "a/"}, "path: "},
		{"RetireNoPath", "agent.retire", daemon.RetireRequest{Root: root.Root}, "path: "},
		{"GrantNoPath", "agent.grant", daemon.GrantRequest{Root: root.Root, Capability: mathModule}, "path: "},
		{"RetireBadRoot", "agent.retire", daemon.RetireRequest{Root: "", Path: "a"}, "root: "},
		{"ListNegativeLimit", "agent.list", daemon.ReadRequest{Root: root.Root, Limit: -1}, "limit: "},
		{"ListBadAfter", "agent.list", daemon.ReadRequest{Root: root.Root, After: "a.b"}, "after: "},
		{"DescribeBadPath", "agent.describe", daemon.ReadRequest{Root: root.Root, Path: "a b"}, "path: "},
		{"LineageBadRoot", "agent.lineage", daemon.ReadRequest{Root: "zz", Path: "a"}, "root: "},
		{"ResolveBadRef", "task.resolve", daemon.ResolveRequest{Ref: "nope"}, "ref: "},
		{"InvokeBadRef", "task.invoke", daemon.InvokeRequest{Ref: root.Root + "/a"}, "ref: "},
		{"ListArrayBody", "agent.list", "[]", "body must be a JSON object with fields root, path, min_seq, after, limit, got JSON array"},
		{"CreateStringBody", "agent.create", `"x"`, "body must be a JSON object with fields root, parent, name, primer, caps, tasks, actor, idempotency_key, got JSON string"},
		{"ResolveNumberBody", "task.resolve", `7`, "body must be a JSON object with fields ref, min_seq, got JSON number"},
		{"NestedWrongType", "agent.create", `{"root":"` + root.Root + `","name":"b","caps":{}}`, `field "caps": want JSON array, got JSON object`},
		{"DeepWrongType", "agent.grant", `{"root":"` + root.Root + `","path":"a","cap":{"kind":"module","name":"math","include":"sqrt"}}`, `field "cap.include": want JSON array, got JSON string`},
		{"NegativeMinSeq", "agent.describe", `{"root":"` + root.Root + `","path":"a","min_seq":-1}`, `field "min_seq": want JSON non-negative integer`},
		{"UnknownField", "agent.list", `{"root":"` + root.Root + `","limt":3}`, `unknown field "limt" is not a field of this request (its fields: root, path, min_seq, after, limit)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, desc := c.fail(tc.endpoint, tc.body)
			require.Equal(t, "400", code, "description: %s", desc)
			require.Contains(t, desc, tc.desc)
			require.NotContains(t, desc, "daemon.")
			require.NotContains(t, desc, "events.")
			require.NotContains(t, desc, "[]string")
		})
	}
	// Nothing above was written.
	var l struct {
		Seq uint64 `json:"seq"`
	}
	c.call("agent.list", daemon.ReadRequest{Root: root.Root}, &l)
	require.Equal(t, w.Seq, l.Seq)
}

// TestMinSeqBeyondStream: a read asking for a sequence the stream has not
// reached waits for the request deadline and answers 504 naming the
// sequence, on every read endpoint, for a loaded and a cold root, and for
// the largest min_seq too.
func TestMinSeqBeyondStream(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, func(cfg *daemon.Config) { cfg.RequestTimeout = 400 * time.Millisecond })
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	w := c.create(daemon.CreateRequest{Root: root.Root, Name: "a", Tasks: []events.TaskDef{solveTask("solve")}})

	// A root another process wrote, which the daemon has not loaded.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other, err := agent.Open(ctx, agent.WithNATSURL(srv.ClientURL()), agent.WithCatalog(agent.SymbolicCatalog()), agent.WithLogger(testLogger(t)))
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	def := architect()
	def.Name = "cold"
	cold, err := other.RegisterRoot(ctx, def)
	require.NoError(t, err)
	_, rc, err := other.Create(ctx, cold, agent.Spec{Name: "a", Tasks: []events.TaskDef{solveTask("solve")}})
	require.NoError(t, err)
	last := max(rc.Seq, w.Seq)

	for _, min := range []uint64{last + 1, last + 1000, math.MaxUint64} {
		for _, r := range []string{root.Root, string(cold.Root)} {
			for _, tc := range []struct {
				endpoint string
				body     any
			}{
				{"task.resolve", daemon.ResolveRequest{Ref: r + "/a#solve", MinSeq: min}},
				{"agent.describe", daemon.ReadRequest{Root: r, Path: "a", MinSeq: min}},
				{"agent.list", daemon.ReadRequest{Root: r, MinSeq: min}},
				{"agent.lineage", daemon.ReadRequest{Root: r, Path: "a", MinSeq: min}},
			} {
				t.Run(fmt.Sprintf("%s/%.6s/%d", tc.endpoint, r, min), func(t *testing.T) {
					code, desc := c.fail(tc.endpoint, tc.body)
					require.Equal(t, "504", code, desc)
					want := min
					if min == math.MaxUint64 {
						want = min - 1
					}
					require.Contains(t, desc, fmt.Sprintf("seq %d", want))
				})
			}
		}
	}
	// The sequence the stream holds is answered.
	var r daemon.ResolveReply
	c.call("task.resolve", daemon.ResolveRequest{Ref: string(cold.Root + "/a#solve"), MinSeq: last}, &r)
	require.GreaterOrEqual(t, r.Seq, last)
}

// TestHealthzAnswersFast: /healthz answers within a second, ready or not,
// with the reason in the body; with NATS down too.
func TestHealthzAnswersFast(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	get := func() (int, map[string]any, time.Duration) {
		start := time.Now()
		code, body := httpGet(t, d, "/healthz")
		took := time.Since(start)
		var h map[string]any
		require.NoError(t, json.Unmarshal([]byte(body), &h), body)
		return code, h, took
	}
	code, h, took := get()
	require.Equal(t, http.StatusOK, code, "%v", h)
	require.Equal(t, "ok", h["status"])
	require.Less(t, took, time.Second)

	srv.Shutdown()
	srv.WaitForShutdown()
	require.Eventually(t, func() bool {
		code, h, took = get()
		require.Equal(t, http.StatusServiceUnavailable, code, "%v", h)
		require.Equal(t, "unavailable", h["status"])
		require.NotEmpty(t, h["reason"])
		require.Less(t, took, time.Second)
		return strings.Contains(h["reason"].(string), "NATS connection")
	}, 10*time.Second, 10*time.Millisecond, "the reason names the lost connection: %v", h)
}

// TestHealthzStreamSlow: a connection that is up to a server whose
// JetStream does not answer (the stream's API is not reachable) still
// gets an answer within a second, naming the stream.
func TestHealthzStreamGone(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, func(cfg *daemon.Config) { cfg.Stream = natsstore.Config{Timeout: 10 * time.Second} })
	srv.DisableJetStream()
	start := time.Now()
	code, body := httpGet(t, d, "/healthz")
	require.Less(t, time.Since(start), time.Second)
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "AGENTREG")
}

// TestEffectiveCapability: describe and resolve answer the capability an
// agent may use (its chain intersected), with the members the recipe or
// the catalog lists, and the chain as explanation; an empty exclude is
// written as [].
func TestEffectiveCapability(t *testing.T) {
	srv := testutil.RunServer(t)
	// Bodies as JSON maps: an explicit empty exclude is sent as [].
	grant := func(include ...string) map[string]any {
		return map[string]any{"kind": "module", "name": "math", "include": include, "exclude": []string{}}
	}
	setup := func(c *client) string {
		var root daemon.WriteReply
		c.call("root.register", map[string]any{"def": map[string]any{"name": "calc", "primer": "You calculate.",
			"caps": []any{grant("*")}}}, &root)
		var w daemon.WriteReply
		c.call("agent.create", map[string]any{"root": root.Root, "name": "p", "caps": []any{grant("sqrt", "sin", "abs")}}, &w)
		c.call("agent.create", map[string]any{"root": root.Root, "parent": "p", "name": "c", "caps": []any{grant("sqrt", "sin")},
			"tasks": []events.TaskDef{solveTask("solve")}}, &w)
		// The parent's grant narrowed (replaced) after the child's: the
		// child's own grant still names sin, which it can no longer use.
		c.call("agent.grant", map[string]any{"root": root.Root, "path": "p", "cap": grant("sqrt", "abs"), "replace": true}, &w)
		return root.Root
	}
	check := func(t *testing.T, v daemon.CapabilityView, members []string, from string) {
		t.Helper()
		require.Equal(t, daemon.Grant{Kind: "module", Name: "math", Include: []string{"sqrt"}, Exclude: []string{}, Visibility: "high"}, v.Effective)
		require.True(t, v.Exact)
		require.Equal(t, members, v.Members)
		require.Equal(t, from, v.MembersFrom)
		require.Len(t, v.Chain, 3, "root, parent, agent")
		require.Equal(t, []string{"*"}, v.Chain[0].Include)
		require.Equal(t, []string{"sin", "sqrt"}, v.Chain[2].Include, "the agent's own grant, as explanation")
	}

	t.Run("Recipe", func(t *testing.T) {
		d := startDaemon(t, srv, nil)
		c := newClient(t, d.URL())
		root := setup(c)
		msg := c.request("agent.describe", daemon.ReadRequest{Root: root, Path: "p/c"})
		require.Contains(t, string(msg.Data), `"effective":{"kind":"module","name":"math","include":["sqrt"],"exclude":[],"vis":"high"}`)
		var v daemon.AgentView
		require.NoError(t, json.Unmarshal(msg.Data, &v))
		require.Len(t, v.Effective, 1)
		check(t, v.Effective[0], []string{"sqrt"}, "recipe")
		require.Equal(t, []string{"sin", "sqrt"}, v.Granted[0].Include)
		require.Equal(t, []string{}, v.Granted[0].Exclude)

		var r daemon.ResolveReply
		c.call("task.resolve", daemon.ResolveRequest{Ref: root + "/p/c#solve"}, &r)
		require.Len(t, r.Capabilities, 1)
		check(t, r.Capabilities[0], []string{"sqrt"}, "recipe")
	})
	t.Run("Catalog", func(t *testing.T) {
		cat := agent.NewCatalog()
		require.NoError(t, cat.AddModule("math", map[string]any{"sqrt": 1, "sin": 2, "abs": 3, "pow": 4}))
		d := startDaemon(t, srv, func(cfg *daemon.Config) {
			cfg.Catalog, cfg.Stream = cat, natsstore.Config{Prefix: "cat", Stream: "CAT"}
			cfg.APIPrefix = "catd"
		})
		c := newClient(t, d.URL())
		c.prefix = "catd"
		root := setup(c)
		v := c.describe(root, "p/c", 0)
		check(t, v.Effective[0], []string{"sqrt"}, "catalog")
		v = c.describe(root, "p", 0)
		require.Equal(t, []string{"abs", "sqrt"}, v.Effective[0].Members)
		var r daemon.ResolveReply
		c.call("task.resolve", daemon.ResolveRequest{Ref: root + "/p/c#solve"}, &r)
		check(t, r.Capabilities[0], []string{"sqrt"}, "catalog")
		require.False(t, strings.Contains(fmt.Sprint(r.Capabilities[0].Members), "pow"))
	})
}
