package daemon_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/testutil"
)

// The endpoints and fields agentd has because the library has them
// (issue 12 item 7): member-level revoke, root.migrate, agent.tools,
// pinned refs, and the wire's names in requests and replies.

func mathGrant(include ...string) events.Capability {
	return events.Capability{Kind: events.KindModule, Name: "math", Include: include}
}

// paintTask is a task defined with JSON Schema, enum and bounds included.
func paintTask(doc string) events.TaskDef {
	return events.TaskDef{Name: "paint", Doc: doc,
		InputSchema:  events.MustJSONSchema(`{"type":"object","properties":{"color":{"enum":["red","green"]},"coats":{"type":"integer","minimum":1}},"required":["color"]}`),
		OutputSchema: events.MustJSONSchema(`{"type":"string"}`)}
}

func TestRevokeMembers(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "p", Capabilities: []events.Capability{mathGrant("sqrt", "abs", "pi")}})
	w := c.create(daemon.CreateRequest{Root: root.Root, Parent: "p", Name: "c", Capabilities: []events.Capability{mathGrant("sqrt", "abs")}})

	members := func(path string, seq uint64) []string {
		t.Helper()
		v := c.describe(root.Root, path, seq)
		require.Len(t, v.Effective, 1)
		return v.Effective[0].Members
	}
	t.Run("Cascades", func(t *testing.T) {
		var rw daemon.WriteReply
		c.call("agent.revoke", daemon.RevokeRequest{Root: root.Root, Path: "p", Kind: events.KindModule, Name: "math", Members: []string{"sqrt"}}, &rw)
		require.Greater(t, rw.Seq, w.Seq)
		require.Equal(t, []string{"abs", "pi"}, members("p", rw.Seq))
		require.Equal(t, []string{"abs"}, members("p/c", rw.Seq), "the child lost sqrt too")
		v := c.describe(root.Root, "p/c", rw.Seq)
		require.Contains(t, v.Granted[0].Exclude, "sqrt", "the revocation lives in the child's own grant")

		// Widening the parent again restores nothing below it.
		var gw daemon.WriteReply
		c.call("agent.grant", daemon.GrantRequest{Root: root.Root, Path: "p", Capability: mathGrant("*"), Replace: true}, &gw)
		require.Equal(t, []string{"abs"}, members("p/c", gw.Seq))
	})
	t.Run("Refused", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			members []string
			code    string
			desc    string
		}{
			{"Pattern", []string{"s*"}, "400", "members[0]: "},
			{"Space", []string{"abs", "a b"}, "400", "members[1]: "},
			{"Twice", []string{"abs", "abs"}, "400", `members[1]: member "abs" appears twice`},
			{"Empty", []string{}, "400", "members: an empty list revokes nothing"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, desc := c.fail("agent.revoke", daemon.RevokeRequest{Root: root.Root, Path: "p/c", Kind: events.KindModule, Name: "math", Members: tc.members})
				require.Equal(t, tc.code, code, desc)
				require.Contains(t, desc, tc.desc)
			})
		}
		code, desc := c.fail("agent.revoke", daemon.RevokeRequest{Root: root.Root, Path: "p/c", Kind: events.KindModule, Name: "io", Members: []string{"read"}})
		require.Equal(t, "404", code, "the agent does not hold io: %s", desc)
	})
	t.Run("Whole", func(t *testing.T) {
		// Without members: the whole capability, as before.
		var rw daemon.WriteReply
		c.call("agent.revoke", daemon.RevokeRequest{Root: root.Root, Path: "p", Kind: events.KindModule, Name: "math"}, &rw)
		require.Empty(t, c.describe(root.Root, "p/c", rw.Seq).Effective)
	})
}

func TestRootMigrate(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	v1 := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: v1.Root, Name: "a", Capabilities: []events.Capability{mathModule}, Tasks: []events.TaskDef{solveTask("solve")}})
	next := architect()
	next.Primer = "You design specialists, carefully."
	v2 := c.registerRoot(next, "")
	unregistered := architect()
	unregistered.Primer = "never registered"
	renamed := architect()
	renamed.Name = "planner"
	other := c.registerRoot(renamed, "")

	for _, tc := range []struct {
		name string
		req  daemon.MigrateRequest
		code string
		desc string
	}{
		{"BadFrom", daemon.MigrateRequest{From: "x", To: v2.Root}, "400", "from: "},
		{"BadTo", daemon.MigrateRequest{From: v1.Root, To: ""}, "400", "to: "},
		{"ToItself", daemon.MigrateRequest{From: v1.Root, To: v1.Root}, "400", "to: "},
		{"ToUnregistered", daemon.MigrateRequest{From: v1.Root, To: unregistered.Fingerprint()}, "404", unregistered.Fingerprint()[:12]},
		{"OtherName", daemon.MigrateRequest{From: v1.Root, To: other.Root}, "400", `the target is root "planner"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, desc := c.fail("root.migrate", tc.req)
			require.Equal(t, tc.code, code, desc)
			require.Contains(t, desc, tc.desc)
		})
	}

	var w daemon.WriteReply
	req := daemon.MigrateRequest{From: v1.Root, To: v2.Root, Reason: "primer reworded", IdempotencyKey: "migrate-1"}
	c.call("root.migrate", req, &w)
	require.Equal(t, v1.Root, w.Root)
	require.Greater(t, w.Seq, v2.Seq)
	var again daemon.WriteReply
	c.call("root.migrate", req, &again)
	require.Equal(t, daemon.WriteReply{Root: v1.Root, Seq: w.Seq, Replayed: true}, again)

	var r daemon.ResolveReply
	c.call("task.resolve", daemon.ResolveRequest{Ref: v1.Root + "/a#solve", MinSeq: w.Seq}, &r)
	require.True(t, r.Migrated)
	require.Equal(t, "architect", r.RootName)
	code, desc := c.fail("agent.create", daemon.CreateRequest{Root: v1.Root, Name: "b"})
	require.Equal(t, "410", code, "the old root takes no writes: %s", desc)
	code, desc = c.fail("root.migrate", daemon.MigrateRequest{From: v1.Root, To: v2.Root})
	require.Equal(t, "410", code, "migrated once: %s", desc)
}

func TestAgentTools(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	def := architect()
	def.Tasks = []events.TaskDef{solveTask("design")}
	root := c.registerRoot(def, "")
	w := c.create(daemon.CreateRequest{Root: root.Root, Name: "a", Tasks: []events.TaskDef{solveTask("solve"), paintTask("Paint the wall.")}})
	c.create(daemon.CreateRequest{Root: root.Root, Name: "old", Tasks: []events.TaskDef{solveTask("solve")}})
	var rw daemon.WriteReply
	c.call("agent.retire", daemon.RetireRequest{Root: root.Root, Path: "old"}, &rw)

	msg := c.request("agent.tools", daemon.ToolsRequest{Root: root.Root, Path: "a", MinSeq: w.Seq})
	require.Empty(t, msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader))
	var got daemon.ToolsReply
	require.NoError(t, json.Unmarshal(msg.Data, &got))
	require.Equal(t, "a", got.Path)
	require.Len(t, got.Tools, 2)
	require.Equal(t, []string{"paint", "solve"}, []string{got.Tools[0].Name, got.Tools[1].Name}, "sorted by name")
	paint := got.Tools[0]
	require.Equal(t, "Paint the wall.", paint.Description)
	require.JSONEq(t, string(paintTask("").InputSchema), string(paint.InputSchema))
	require.JSONEq(t, `{"type":"string"}`, string(paint.OutputSchema))
	// The tools as MCP has them: exactly these four keys each.
	var raw struct {
		Tools []map[string]json.RawMessage `json:"tools"`
	}
	require.NoError(t, json.Unmarshal(msg.Data, &raw))
	for _, tl := range raw.Tools {
		require.Len(t, tl, 4)
		for _, k := range []string{"name", "description", "inputSchema", "outputSchema"} {
			require.Contains(t, tl, k)
		}
	}
	// A legacy task is exported with its JSON Schema form.
	require.JSONEq(t, string(solveTask("solve").InputJSONSchema()), string(got.Tools[1].InputSchema))
	// Contracts and pinned refs beside the tools, the ones resolve answers.
	var r daemon.ResolveReply
	c.call("task.resolve", daemon.ResolveRequest{Ref: root.Root + "/a#paint"}, &r)
	require.Equal(t, r.Contract, got.Contracts["paint"])
	require.Equal(t, r.PinnedRef, got.PinnedRefs["paint"])
	require.Equal(t, paintTask("Paint the wall.").Contract(), got.Contracts["paint"])

	t.Run("Root", func(t *testing.T) {
		var rt daemon.ToolsReply
		c.call("agent.tools", daemon.ToolsRequest{Root: root.Root}, &rt)
		require.Len(t, rt.Tools, 1)
		require.Equal(t, "design", rt.Tools[0].Name)
		require.Equal(t, root.Root+"/#design@"+solveTask("design").Contract(), rt.PinnedRefs["design"])
	})
	t.Run("Refused", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			req  daemon.ToolsRequest
			code string
			desc string
		}{
			{"Retired", daemon.ToolsRequest{Root: root.Root, Path: "old", MinSeq: rw.Seq}, "410", `"old" was retired`},
			{"NoSuchAgent", daemon.ToolsRequest{Root: root.Root, Path: "ghost"}, "404", `"ghost"`},
			{"BadPath", daemon.ToolsRequest{Root: root.Root, Path: "a.b"}, "400", "path: "},
			{"BadRoot", daemon.ToolsRequest{Root: "nope"}, "400", "root: "},
			{"UnknownRoot", daemon.ToolsRequest{Root: strings.Repeat("0", 64)}, "404", "000000000000"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, desc := c.fail("agent.tools", tc.req)
				require.Equal(t, tc.code, code, desc)
				require.Contains(t, desc, tc.desc)
			})
		}
	})
}

func TestPinnedRefs(t *testing.T) {
	srv := testutil.RunServer(t)
	rec := agent.ExecutorFunc(func(_ context.Context, call *agent.Call) (any, error) {
		return "painted " + call.Args["color"].(string), nil
	})
	d := startDaemon(t, srv, func(cfg *daemon.Config) { cfg.Executor = rec })
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "a", Tasks: []events.TaskDef{paintTask("Paint the wall.")}})
	ref := root.Root + "/a#paint"

	// Unpinned: the reply names the contract and the ref pinned to it.
	var r1 daemon.ResolveReply
	c.call("task.resolve", daemon.ResolveRequest{Ref: ref}, &r1)
	c1 := paintTask("Paint the wall.").Contract()
	require.Equal(t, ref, r1.Ref)
	require.Equal(t, c1, r1.Contract)
	require.Equal(t, ref+"@"+c1, r1.PinnedRef)
	// Pinned to the current contract: resolves, and invokes.
	var rp daemon.ResolveReply
	c.call("task.resolve", daemon.ResolveRequest{Ref: r1.PinnedRef}, &rp)
	require.Equal(t, r1.PinnedRef, rp.Ref)
	require.Equal(t, r1.PinnedRef, rp.PinnedRef)
	var out map[string]any
	c.call("task.invoke", daemon.InvokeRequest{Ref: r1.PinnedRef, Args: map[string]any{"color": "red"}}, &out)
	require.Equal(t, "painted red", out["result"])
	require.Equal(t, c1, out["contract"])

	// The task is redefined with another doc: another contract.
	var w daemon.WriteReply
	c.call("task.define", daemon.DefineTaskRequest{Root: root.Root, Path: "a", Task: paintTask("Paint the wall twice.")}, &w)
	c2 := paintTask("Paint the wall twice.").Contract()
	require.NotEqual(t, c1, c2)

	for _, ep := range []string{"task.resolve", "task.invoke"} {
		t.Run("ChangedFails/"+ep, func(t *testing.T) {
			var body any = daemon.ResolveRequest{Ref: r1.PinnedRef, MinSeq: w.Seq}
			if ep == "task.invoke" {
				body = daemon.InvokeRequest{Ref: r1.PinnedRef, Args: map[string]any{"color": "red"}}
			}
			msg := c.request(ep, body)
			code, desc := msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader)
			require.Equal(t, "412", code, desc)
			require.Contains(t, desc, c1, "names the pinned digest")
			require.Contains(t, desc, c2, "names the current digest")
			var facts daemon.ContractChangedReply
			require.NoError(t, json.Unmarshal(msg.Data, &facts), "the error's body: %q", msg.Data)
			require.Equal(t, daemon.ContractChangedReply{Ref: r1.PinnedRef, Pinned: c1, Current: c2, PinnedRef: ref + "@" + c2}, facts)
		})
	}
	t.Run("UnpinnedFollows", func(t *testing.T) {
		var r2 daemon.ResolveReply
		c.call("task.resolve", daemon.ResolveRequest{Ref: ref, MinSeq: w.Seq}, &r2)
		require.Equal(t, c2, r2.Contract)
		require.Equal(t, ref+"@"+c2, r2.PinnedRef)
		require.Equal(t, "Paint the wall twice.", r2.Task.Doc)
		c.call("task.resolve", daemon.ResolveRequest{Ref: r2.PinnedRef}, &r2)
	})
	t.Run("BadDigest", func(t *testing.T) {
		for _, bad := range []string{ref + "@", ref + "@xyz", ref + "@" + strings.ToUpper(c1)} {
			code, desc := c.fail("task.resolve", daemon.ResolveRequest{Ref: bad})
			require.Equal(t, "400", code, desc)
			require.Contains(t, desc, "ref: ")
		}
	})
}

// TestWireNames: agentd's requests and replies use the wire's keys (caps,
// cap, vis); the old names are refused as unknown fields.
func TestWireNames(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	var w daemon.WriteReply
	c.call("agent.create", map[string]any{"root": root.Root, "name": "a", "caps": []any{map[string]any{"kind": "module", "name": "math", "include": []string{"sqrt"}, "vis": "low"}},
		"tasks": []events.TaskDef{solveTask("solve")}}, &w)
	c.call("agent.grant", map[string]any{"root": root.Root, "path": "a", "cap": map[string]any{"kind": "module", "name": "io"}}, &w)

	msg := c.request("task.resolve", daemon.ResolveRequest{Ref: root.Root + "/a#solve", MinSeq: w.Seq})
	var r map[string]any
	require.NoError(t, json.Unmarshal(msg.Data, &r), "%s", msg.Data)
	require.Contains(t, r, "caps")
	require.NotContains(t, r, "capabilities")
	require.Contains(t, string(msg.Data), `"effective":{"kind":"module","name":"io","include":["*"],"exclude":["_*"],"vis":"high"}`)
	require.Contains(t, string(msg.Data), `"vis":"low"`)
	require.NotContains(t, string(msg.Data), `"visibility"`)

	// The old names are unknown fields, named with the object they are in.
	for _, tc := range []struct{ endpoint, body, desc string }{
		{"agent.create", `{"root":"` + root.Root + `","name":"b","capabilities":[]}`,
			`unknown field "capabilities" is not a field of this request (its fields: root, parent, name, primer, caps, tasks, actor, idempotency_key)`},
		{"agent.grant", `{"root":"` + root.Root + `","path":"a","capability":{"kind":"module","name":"math"}}`, `unknown field "capability" is not a field of this request`},
		{"agent.grant", `{"root":"` + root.Root + `","path":"a","cap":{"kind":"module","name":"math","visibility":"low"},"replace":true}`,
			`unknown field "visibility" is not a field of cap (its fields: kind, name, include, exclude, vis)`},
		{"root.register", `{"def":{"name":"x","primer":"","capabilities":[]}}`, `unknown field "capabilities" is not a field of def (its fields: name, primer, caps, tasks)`},
		{"agent.create", `{"root":"` + root.Root + `","name":"b","caps":[{"kind":"module","name":"math"},{"kind":"module","name":"io","visibility":"low"}]}`,
			`unknown field "visibility" is not a field of caps[1] (its fields: kind, name, include, exclude, vis)`},
	} {
		code, desc := c.fail(tc.endpoint, tc.body)
		require.Equal(t, "400", code, desc)
		require.Contains(t, desc, tc.desc)
	}
}
