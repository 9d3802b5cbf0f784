package daemon_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

// Who asked: the actor of an event written through agentd is the caller
// the NATS server names (a request crossing a service import carries the
// server-set Nats-Request-Info header), else agentd itself; a request's
// `actor` is kept only as the event's claimed on-behalf-of.

// startCallers starts nats-server from testdata/callers.conf: agentd's
// account AGENTREG (users agentd and local), CLIENTS importing agentd.*
// with share: true (alice), PARTNER importing it without (carol).
func startCallers(t *testing.T) *server.Server {
	t.Helper()
	for _, u := range []string{"AGENTD", "LOCAL", "ALICE", "CAROL"} {
		t.Setenv(u+"_PASSWORD", "pw-"+u)
	}
	opts, err := server.ProcessConfigFile("testdata/callers.conf")
	require.NoError(t, err)
	opts.Host, opts.Port, opts.StoreDir, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, t.TempDir(), true, true
	return testutil.RunServerWithOptions(t, opts)
}

func connectAs(t *testing.T, srv *server.Server, user string) *client {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, "pw-"+map[string]string{
		"agentd": "AGENTD", "local": "LOCAL", "alice": "ALICE", "carol": "CAROL"}[user]), nats.Name(user+"-conn"))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return &client{t: t, nc: nc, prefix: "agentd"}
}

// requestWithHeader sends body to the endpoint with a header the caller
// chose and returns the reply.
func (c *client) requestWithHeader(endpoint string, body any, h nats.Header) *nats.Msg {
	c.t.Helper()
	data, err := json.Marshal(body)
	require.NoError(c.t, err)
	msg, err := c.nc.RequestMsg(&nats.Msg{Subject: c.prefix + "." + endpoint, Data: data, Header: h}, 15*time.Second)
	require.NoError(c.t, err)
	require.Empty(c.t, msg.Header.Get(micro.ErrorCodeHeader), "%s: %s", endpoint, msg.Header.Get(micro.ErrorHeader))
	return msg
}

// forged is a Nats-Request-Info header as a server would write it, naming
// a user of a trusted account who never sent anything.
func forged() nats.Header {
	h := nats.Header{}
	h["Nats-Request-Info"] = []string{`{"acc":"CLIENTS","user":"mallory","name":"mallory"}`}
	h["nats-request-info"] = []string{`{"acc":"CLIENTS","user":"mallory"}`} // a spelling the server does not replace
	return h
}

// storedEvent reads an agent's last event from the stream as agentd.
func storedEvent(t *testing.T, srv *server.Server, root, path string) *events.Event {
	t.Helper()
	nc := connectAs(t, srv, "agentd").nc
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "AGENTREG")
	require.NoError(t, err)
	m, err := st.GetLastMsgForSubject(ctx, events.Subject("agentreg", root, path))
	require.NoError(t, err)
	e, err := events.Decode(m.Data)
	require.NoError(t, err)
	return e
}

func TestCallerThroughServiceImport(t *testing.T) {
	srv := startCallers(t)
	startDaemon(t, srv, func(c *daemon.Config) {
		c.Conn = natsstore.ConnectOptions{URL: srv.ClientURL(), User: "agentd", Password: "pw-AGENTD"}
		c.CallerAccounts = []string{"CLIENTS", "PARTNER"}
	})
	alice, carol, local := connectAs(t, srv, "alice"), connectAs(t, srv, "carol"), connectAs(t, srv, "local")

	root := alice.registerRoot(architect(), "user:root")

	t.Run("the shared import names the user; the body's actor is a claim", func(t *testing.T) {
		w := alice.create(daemon.CreateRequest{Root: root.Root, Name: "a", Capabilities: []events.Capability{mathModule}, Actor: "user:bob"})
		v := alice.describe(root.Root, "a", w.Seq)
		require.Equal(t, "nats:CLIENTS/alice", v.Creator)
		require.Equal(t, "user:bob", v.CreatorOnBehalfOfClaimed)

		e := storedEvent(t, srv, root.Root, "a")
		require.Equal(t, "nats:CLIENTS/alice", e.Actor)
		require.Equal(t, "user:bob", e.OnBehalfOf, "stored under the event's obo key")

		var l daemon.LineageReply
		alice.call("agent.lineage", daemon.ReadRequest{Root: root.Root, Path: "a", MinSeq: w.Seq}, &l)
		require.Equal(t, "nats:CLIENTS/alice", l.Ancestors[0].Actor, "the root's registration")
		require.Equal(t, "user:root", l.Ancestors[0].OnBehalfOfClaimed)
		require.Equal(t, "nats:CLIENTS/alice", l.Agent[0].Actor)
		require.Equal(t, "user:bob", l.Agent[0].OnBehalfOfClaimed)
	})

	t.Run("no body actor, no claim", func(t *testing.T) {
		w := alice.create(daemon.CreateRequest{Root: root.Root, Name: "b"})
		v := alice.describe(root.Root, "b", w.Seq)
		require.Equal(t, "nats:CLIENTS/alice", v.Creator)
		require.Empty(t, v.CreatorOnBehalfOfClaimed)
		require.Empty(t, storedEvent(t, srv, root.Root, "b").OnBehalfOf)
	})

	t.Run("a header the caller forges does not cross the import", func(t *testing.T) {
		var w daemon.WriteReply
		msg := alice.requestWithHeader("agent.create", daemon.CreateRequest{Root: root.Root, Name: "c", Actor: "user:bob"}, forged())
		require.NoError(t, json.Unmarshal(msg.Data, &w))
		v := alice.describe(root.Root, "c", w.Seq)
		require.Equal(t, "user:bob", v.CreatorOnBehalfOfClaimed)
		require.Equal(t, "agentd", v.Creator,
			"the server replaced its exact spelling and kept another: two values, so agentd trusts neither")

		// With the exact spelling only, the server's value is what arrives.
		h := nats.Header{}
		h["Nats-Request-Info"] = []string{`{"acc":"CLIENTS","user":"mallory"}`}
		msg = alice.requestWithHeader("agent.grant", daemon.GrantRequest{Root: root.Root, Path: "a", Capability: events.Capability{Kind: events.KindModule, Name: "io"}, Actor: "user:mallory"}, h)
		require.NoError(t, json.Unmarshal(msg.Data, &w))
		e := storedEvent(t, srv, root.Root, "a")
		require.Equal(t, events.CapabilityGranted, e.Type)
		require.Equal(t, "nats:CLIENTS/alice", e.Actor, "the server overwrote the forged header")
		require.Equal(t, "user:mallory", e.OnBehalfOf)
	})

	t.Run("an import without share names the account", func(t *testing.T) {
		w := carol.create(daemon.CreateRequest{Root: root.Root, Name: "d", Actor: "user:dave"})
		v := carol.describe(root.Root, "d", w.Seq)
		require.Equal(t, "nats:PARTNER", v.Creator)
		require.Equal(t, "user:dave", v.CreatorOnBehalfOfClaimed)
	})

	t.Run("agentd's own account: a forged header gives nothing", func(t *testing.T) {
		h := nats.Header{}
		h["Nats-Request-Info"] = []string{`{"acc":"CLIENTS","user":"mallory"}`}
		var w daemon.WriteReply
		msg := local.requestWithHeader("agent.create", daemon.CreateRequest{Root: root.Root, Name: "e", Actor: "user:bob"}, h)
		require.NoError(t, json.Unmarshal(msg.Data, &w))
		v := local.describe(root.Root, "e", w.Seq)
		require.Equal(t, "agentd", v.Creator, "no service import, no reply subject the server substituted")
		require.Equal(t, "user:bob", v.CreatorOnBehalfOfClaimed)
	})

	t.Run("agentd's own account cannot forge the import's reply subject either", func(t *testing.T) {
		// A request through an import answers to a `_R_.` reply subject
		// the server substituted; the server refuses that reply from any
		// client connection, so a same-account user cannot dress a request
		// up as one that crossed an import.
		h := nats.Header{}
		h["Nats-Request-Info"] = []string{`{"acc":"CLIENTS","user":"mallory"}`}
		data, err := json.Marshal(daemon.CreateRequest{Root: root.Root, Name: "f"})
		require.NoError(t, err)
		require.NoError(t, local.nc.PublishMsg(&nats.Msg{Subject: "agentd.agent.create", Reply: "_R_.forged.x", Data: data, Header: h}))
		require.Eventually(t, func() bool {
			err := local.nc.LastError()
			return err != nil && strings.Contains(err.Error(), `Publish with Reply of "_R_.forged.x"`)
		}, 5*time.Second, 10*time.Millisecond, "the server refuses the publish")
		w := alice.create(daemon.CreateRequest{Root: root.Root, Name: "g"}) // a later write, then no trace of f
		code, _ := alice.fail("agent.describe", daemon.ReadRequest{Root: root.Root, Path: "f", MinSeq: w.Seq})
		require.Equal(t, "404", code)
	})
}

func TestCallerInOneAccount(t *testing.T) {
	srv := testutil.RunServer(t)

	t.Run("default: the header is ignored", func(t *testing.T) {
		d := startDaemon(t, srv, nil)
		c := newClient(t, d.URL())
		root := c.registerRoot(architect(), "user:root")
		var w daemon.WriteReply
		msg := c.requestWithHeader("agent.create", daemon.CreateRequest{Root: root.Root, Name: "a", Actor: "user:alice"}, forged())
		require.NoError(t, json.Unmarshal(msg.Data, &w))
		v := c.describe(root.Root, "a", w.Seq)
		require.Equal(t, "agentd", v.Creator)
		require.Equal(t, "user:alice", v.CreatorOnBehalfOfClaimed)
		e := storedEvent1(t, srv, root.Root, "a")
		require.Equal(t, "agentd", e.Actor)
		require.Equal(t, "user:alice", e.OnBehalfOf)
	})

	t.Run("caller accounts set: a request that crossed no import is not named", func(t *testing.T) {
		d := startDaemon(t, srv, func(c *daemon.Config) {
			c.APIPrefix, c.Identity = "agentd2", "agentd-eu"
			c.CallerAccounts = []string{"$G", "CLIENTS"}
		})
		c := newClient(t, d.URL())
		c.prefix = "agentd2"
		root := c.registerRoot(architect(), "")
		h := nats.Header{}
		h["Nats-Request-Info"] = []string{`{"acc":"$G","user":"mallory"}`}
		var w daemon.WriteReply
		msg := c.requestWithHeader("agent.create", daemon.CreateRequest{Root: root.Root, Name: "b", Actor: "user:alice"}, h)
		require.NoError(t, json.Unmarshal(msg.Data, &w))
		v := c.describe(root.Root, "b", w.Seq)
		require.Equal(t, "agentd-eu", v.Creator, "the configured identity")
		require.Equal(t, "user:alice", v.CreatorOnBehalfOfClaimed)
	})
}

// storedEvent1 is storedEvent on a server without users.
func storedEvent1(t *testing.T, srv *server.Server, root, path string) *events.Event {
	t.Helper()
	js, err := jetstream.New(testutil.Connect(t, srv.ClientURL()))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "AGENTREG")
	require.NoError(t, err)
	m, err := st.GetLastMsgForSubject(ctx, events.Subject("agentreg", root, path))
	require.NoError(t, err)
	e, err := events.Decode(m.Data)
	require.NoError(t, err)
	return e
}

// TestCallersDocIncludesConfig: docs/permissions.md ("Who asked") prints
// the configuration these tests run, verbatim.
func TestCallersDocIncludesConfig(t *testing.T) {
	doc, err := os.ReadFile("../docs/permissions.md")
	require.NoError(t, err)
	conf, err := os.ReadFile("testdata/callers.conf")
	require.NoError(t, err)
	require.Contains(t, string(doc), "```\n"+string(conf)+"```\n", "copy testdata/callers.conf into docs/permissions.md after changing it")
}
