package security_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/snapshot"
)

const (
	permsConf = "testdata/agentreg.conf"
	docPath   = "../docs/permissions.md"
	// directSpan is more stream sequences than natsstore reads with direct
	// gets (its directReadMax, 4096): a read spanning more uses an ordered
	// consumer, so the roles' consumer permissions are exercised too.
	directSpan = 4200
)

// architect is the README's root; its fingerprint is the writer's root in
// testdata/agentreg.conf.
func architect() events.RootDef {
	return events.RootDef{Name: "architect", Primer: "You design specialists.",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}}}
}

// auditor is a root the writer has no rights on.
func auditor() events.RootDef {
	return events.RootDef{Name: "auditor", Primer: "You review what others built.",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}}}
}

func solveTask() events.TaskDef {
	return events.TaskDef{Name: "solve",
		Input:  events.Schema{Type: "object", Fields: []events.Field{{Name: "equation", Schema: events.Schema{Type: "string"}, Required: true}}},
		Output: events.Schema{Type: "string"}}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startAgentd starts agentd against url as the agentd user.
func startAgentd(t *testing.T, url string) *daemon.Daemon {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := daemon.Start(ctx, daemon.Config{
		Conn:   natsstore.ConnectOptions{URL: url, User: "agentd", Password: passwords["agentd"], Name: "agentd"},
		Logger: testLogger(t),
	})
	require.NoError(t, err, "agentd as user agentd")
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

// call sends a request to an agentd endpoint that must succeed.
func call(t *testing.T, nc *nats.Conn, endpoint string, req, out any) {
	t.Helper()
	data, err := json.Marshal(req)
	require.NoError(t, err)
	msg, err := nc.Request("agentd."+endpoint, data, 15*time.Second)
	require.NoError(t, err, "agentd.%s", endpoint)
	require.Empty(t, msg.Header.Get(micro.ErrorCodeHeader), "agentd.%s: %s", endpoint, msg.Header.Get(micro.ErrorHeader))
	if out != nil {
		require.NoError(t, json.Unmarshal(msg.Data, out), "agentd.%s reply %s", endpoint, msg.Data)
	}
}

// fill appends n messages to agentreg.filler (no root's subject, so no
// registry folds them) as agentd's user: reads of a root written before
// and after then span more than directReadMax sequences.
func fill(t *testing.T, url string, n int) {
	t.Helper()
	nc, _ := dial(t, url, "agentd")
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for i := range n {
		_, err := js.PublishAsync("agentreg.filler", []byte(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("filler appends not acknowledged within 30s")
	}
}

// refused asserts that err is what a client sees when the server drops
// its request for lack of permission (nothing answers: the context ends),
// and that the server said why, naming the subject.
func refused(t *testing.T, err error, errs *asyncErrs, subject string) {
	t.Helper()
	require.Error(t, err, "publishing to %s should be refused", subject)
	require.True(t, errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout),
		"a refused request is never answered; got %v", err)
	got := errs.waitFor(t, fmt.Sprintf("Permissions Violation for Publish to %q", subject))
	require.ErrorIs(t, got, nats.ErrPermissionViolation)
}

// TestDocIncludesConfig: docs/permissions.md prints the tested
// configuration files verbatim, so the doc shows exactly what is tested.
func TestDocIncludesConfig(t *testing.T) {
	doc, err := os.ReadFile(docPath)
	require.NoError(t, err)
	for _, f := range []string{permsConf, tlsConf} {
		conf, err := os.ReadFile(f)
		require.NoError(t, err)
		require.Contains(t, string(doc), "```\n"+string(conf)+"```\n",
			"%s must hold %s verbatim in a fenced block; copy it there after changing it", docPath, f)
	}
}

// TestPermissionLists checks properties of the configured lists that the
// behaviour tests below could miss.
func TestPermissionLists(t *testing.T) {
	for user, pw := range passwords {
		t.Setenv(strings.ToUpper(user)+"_PASSWORD", pw)
	}
	opts, err := server.ProcessConfigFile(permsConf)
	require.NoError(t, err)
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
		require.Equal(t, "AGENTREG", u.Account.Name, "user %s", u.Username)
		require.Equal(t, passwords[u.Username], u.Password, "user %s: password from the environment", u.Username)
	}
	require.Len(t, users, len(passwords))
	fp := architect().Canonical().Fingerprint()

	t.Run("writer publishes to its root's subjects only", func(t *testing.T) {
		var events []string
		for _, s := range users["writer"].Permissions.Publish.Allow {
			if !strings.HasPrefix(s, "$JS.API.") {
				events = append(events, s)
			}
		}
		require.Equal(t, []string{"agentreg." + fp, "agentreg." + fp + ".>"}, events)
		for _, s := range users["writer"].Permissions.Publish.Allow {
			if strings.HasPrefix(s, "$JS.API.CONSUMER.CREATE.") {
				require.Equal(t, "$JS.API.CONSUMER.CREATE.AGENTREG.*.agentreg."+fp+".>", s, "consumers on its roots only")
			}
		}
		require.Nil(t, users["writer"].Permissions.Response, "the writer answers no requests")
	})
	t.Run("reader and writer change no stream or message", func(t *testing.T) {
		// The one exception: the reader may delete consumers on the
		// snapshot buckets' streams (its own ephemeral ones, in practice).
		snapConsumers := []string{"$JS.API.CONSUMER.DELETE.KV_AGENTREG_SNAPINDEX.*", "$JS.API.CONSUMER.DELETE.OBJ_AGENTREG_SNAPSHOTS.*"}
		for _, u := range []string{"reader", "writer"} {
			for _, s := range users[u].Permissions.Publish.Allow {
				if u == "reader" && slices.Contains(snapConsumers, s) {
					continue
				}
				for _, bad := range []string{".DELETE.", ".PURGE.", "STREAM.CREATE", "STREAM.UPDATE", ".SNAPSHOT.", ".RESTORE.", ".STEPDOWN", ".PEER.", "$KV.", "$O."} {
					require.NotContains(t, s, bad, "%s may publish to %s", u, s)
				}
			}
		}
		for _, s := range users["reader"].Permissions.Publish.Allow {
			require.True(t, strings.HasPrefix(s, "$JS.API.") || strings.HasPrefix(s, "$JS.FC."),
				"the reader publishes only JetStream API requests and flow control replies; has %s", s)
		}
	})
	t.Run("only agentd serves", func(t *testing.T) {
		for _, u := range []string{"reader", "writer", "client", "viewer"} {
			for _, s := range users[u].Permissions.Subscribe.Allow {
				require.Equal(t, "_INBOX.>", s, "%s subscribes to its replies only", u)
			}
		}
		require.ElementsMatch(t, []string{"_INBOX.>", "agentd.>", "$SRV.>"}, users["agentd"].Permissions.Subscribe.Allow)
		require.NotNil(t, users["agentd"].Permissions.Response)
	})
}

// TestRoles starts a server from testdata/agentreg.conf and shows what
// each user can and cannot do with the library, agentd and raw NATS.
func TestRoles(t *testing.T) {
	srv, viol := startConfigured(t, permsConf)
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	arch, aud := architect().Canonical().Fingerprint(), auditor().Canonical().Fingerprint()

	// agentd creates the stream and buckets as its own user, and serves.
	d := startAgentd(t, url)
	client, clientErrs := dial(t, url, "client")
	var reg daemon.WriteReply
	call(t, client, "root.register", daemon.RegisterRootRequest{Def: auditor()}, &reg)
	require.Equal(t, aud, reg.Root)
	call(t, client, "agent.create", daemon.CreateRequest{Root: aud, Name: "reviewer", Primer: "Review.", Actor: "user:alice",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}}}, nil)

	// The writer embeds the library on a connection of its own (agent.Open
	// takes no credentials: WithLog with a log on that connection). It
	// may create consumers on its own roots only, so it does not follow
	// the whole log (WithFollow(false)): each write reads the agent's
	// ancestor chain. It neither reads nor writes snapshots.
	wnc, writerErrs := dial(t, url, "writer")
	wlog, err := natsstore.ExistingLog(ctx, wnc, natsstore.Config{})
	require.NoError(t, err, "the writer opens the existing stream")
	openWriter := func() *agent.Runtime {
		rt, err := agent.Open(ctx, agent.WithLog(wlog, nil), agent.WithCatalog(agent.SymbolicCatalog()),
			agent.WithDefaultActor("user:writer"), agent.WithLogger(testLogger(t)), agent.WithFollow(false))
		require.NoError(t, err)
		t.Cleanup(func() { _ = rt.Close() })
		return rt
	}
	rt := openWriter()
	root, err := rt.RegisterRoot(ctx, architect())
	require.NoError(t, err, "the writer registers its root")
	require.Equal(t, arch, string(root.Root))
	fill(t, url, directSpan)

	t.Run("writer appends to its root", func(t *testing.T) {
		solver, _, err := rt.Create(ctx, root, agent.Spec{Name: "math_solver", Primer: "You solve equations.",
			Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math", Include: []string{"sqrt"}}},
			Tasks:        []events.TaskDef{solveTask()}})
		require.NoError(t, err, "an atomic batch on the writer's root")
		_, _, err = rt.Create(ctx, solver, agent.Spec{Name: "parser"})
		require.NoError(t, err, "a single append on the writer's root")
		// Agents with long primers (at the primer limit) make a snapshot
		// body of several MB: reading it back takes JetStream flow control.
		for i := range 40 {
			_, _, err = rt.Create(ctx, root, agent.Spec{Name: fmt.Sprintf("bulky_%02d", i), Primer: strings.Repeat("p", events.MaxPrimerBytes)})
			require.NoError(t, err)
		}
		last, err := wlog.LastRootSeq(ctx, arch)
		require.NoError(t, err)
		require.Greater(t, last, uint64(directSpan), "the root spans more than direct gets read")

		// A second process reads the whole root: an ordered consumer.
		fresh := openWriter()
		_, err = fresh.RegisterRoot(ctx, architect())
		require.NoError(t, err)
		require.NoError(t, inspect.View(ctx, fresh, string(agent.RootID(arch)), func(r *projector.Registry) error {
			_, err := r.Agent("math_solver/parser")
			return err
		}))
		_, err = fresh.Resolve(ctx, agent.TaskRef{Root: agent.RootID(arch), Path: "math_solver", Task: "solve"})
		require.NoError(t, err)

		// agentd followed the writes.
		var desc map[string]any
		call(t, client, "agent.describe", map[string]any{"root": arch, "path": "math_solver/parser", "min_seq": last}, &desc)
	})

	t.Run("writer cannot append to another root", func(t *testing.T) {
		_, err := rt.RegisterRoot(ctx, auditor())
		require.NoError(t, err, "registering a root recorded before writes nothing")
		_, _, err = rt.Create(short(t), agent.AgentRef{Root: agent.RootID(aud)}, agent.Spec{Name: "intruder"})
		refused(t, err, writerErrs, events.Subject("agentreg", aud, "intruder"))
		_, _, err = rt.Create(short(t), agent.AgentRef{Root: agent.RootID(aud), Path: "reviewer"}, agent.Spec{Name: "mole",
			Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}}})
		refused(t, err, writerErrs, events.Subject("agentreg", aud, "reviewer/mole")) // an atomic batch

		js, err := jetstream.New(wnc)
		require.NoError(t, err)
		_, err = js.Publish(short(t), "agentreg."+aud, []byte("forged"))
		refused(t, err, writerErrs, "agentreg."+aud)
		_, err = js.Publish(short(t), "$KV.AGENTREG_SNAPINDEX."+arch, []byte("forged snapshot header"))
		refused(t, err, writerErrs, "$KV.AGENTREG_SNAPINDEX."+arch)
		err = js.DeleteStream(short(t), "AGENTREG")
		refused(t, err, writerErrs, "$JS.API.STREAM.DELETE.AGENTREG")

		require.NoError(t, inspect.View(ctx, d.Runtime(), string(agent.RootID(aud)), func(r *projector.Registry) error {
			require.Equal(t, []string{"reviewer"}, r.Paths(), "the auditor root holds what agentd wrote, nothing more")
			require.Empty(t, r.Violations)
			return nil
		}))
	})

	// agentd restarts on the stream and buckets it made.
	require.NoError(t, d.Close()) // its Cleanup closes it again: harmless
	d = startAgentd(t, url)

	t.Run("agentd snapshots", func(t *testing.T) {
		for _, r := range []string{arch, aud, arch} { // the second of arch replaces the first
			h, err := d.Runtime().Snapshot(ctx, agent.RootID(r))
			require.NoError(t, err, "agentd writes the snapshot buckets")
			if r == arch {
				require.Greater(t, h.Size, 2<<20, "a body beyond JetStream's flow control window")
			}
		}
	})

	// agentd restarts again and restores both roots from its snapshots
	// when they are first used.
	require.NoError(t, d.Close())
	d = startAgentd(t, url)
	for _, r := range []string{arch, aud} {
		require.NoError(t, inspect.View(ctx, d.Runtime(), string(agent.RootID(r)), func(*projector.Registry) error { return nil }))
		_, ok := d.Runtime().RestoredFrom(agent.RootID(r))
		require.True(t, ok, "agentd restored root %s from its snapshot", r)
	}
	var health map[string]any
	call(t, client, "health", nil, &health)
	require.Equal(t, "ok", health["status"])

	rnc, readerErrs := dial(t, url, "reader")
	rlog, err := natsstore.ExistingLog(ctx, rnc, natsstore.Config{})
	require.NoError(t, err, "the reader opens the existing stream")

	t.Run("reader reads the log and the snapshots", func(t *testing.T) {
		// What `replay` does: stream state, subjects, whole roots, snapshots.
		state, err := rlog.StreamState(ctx)
		require.NoError(t, err)
		require.Greater(t, state.LastSeq, uint64(directSpan))
		subjects, err := rlog.Subjects(ctx, "agentreg.*")
		require.NoError(t, err)
		require.Subset(t, subjects, []string{"agentreg." + arch, "agentreg." + aud})
		for _, r := range []string{arch, aud} {
			folded := projector.New(r)
			bound, err := rlog.ReadRoot(ctx, r, 0, func(rec events.Record) error { folded.Apply(rec); return nil })
			require.NoError(t, err)
			require.NotZero(t, bound)
			require.Empty(t, folded.Violations)
			require.NotNil(t, folded.Def, "root %s", r)
		}
		_, err = rlog.ReadSubjects(ctx, []string{events.Subject("agentreg", arch, "math_solver")}, 1, func(events.Record) error { return nil })
		require.NoError(t, err, "one subject over a long span: a consumer with the filter in its subject")

		snaps, err := natsstore.ExistingSnapshots(ctx, rlog)
		require.NoError(t, err)
		roots, err := snaps.Roots(ctx)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{arch, aud}, roots)
		start := time.Now()
		res, err := snapshot.Restore(ctx, snaps, rlog, arch, 0, testLogger(t))
		require.NoError(t, err)
		// nats.go deletes the ephemeral consumers it reads the index and a
		// body with, and waits for the answer: refused, each read would
		// wait 5s.
		require.Less(t, time.Since(start), 4*time.Second, "snapshot reads wait for refused consumer deletes")
		require.NotNil(t, res.From, "restored from agentd's snapshot, not replayed (skipped: %v)", res.Skipped)
		_, err = res.Registry.Agent("math_solver/parser")
		require.NoError(t, err)
	})

	t.Run("reader cannot write or delete", func(t *testing.T) {
		data, err := events.Encode(&events.Event{ID: ulid.Make().String(), Type: events.AgentCreated, Version: events.SchemaVersion,
			Root: arch, Path: "forged", Time: time.Now().UnixNano(), Actor: "user:mallory", Correlation: "c",
			Created: &events.CreatedData{Primer: "planted"}})
		require.NoError(t, err)
		subj := events.Subject("agentreg", arch, "forged")
		_, err = rlog.Append(short(t), []events.Message{{Subject: subj, Data: data, ID: ulid.Make().String(), Type: events.AgentCreated}})
		refused(t, err, readerErrs, subj)

		js, err := jetstream.New(rnc)
		require.NoError(t, err)
		err = js.DeleteStream(short(t), "AGENTREG")
		refused(t, err, readerErrs, "$JS.API.STREAM.DELETE.AGENTREG")
		stream, err := js.Stream(ctx, "AGENTREG")
		require.NoError(t, err)
		err = stream.Purge(short(t))
		refused(t, err, readerErrs, "$JS.API.STREAM.PURGE.AGENTREG")
		err = stream.DeleteMsg(short(t), 1)
		refused(t, err, readerErrs, "$JS.API.STREAM.MSG.DELETE.AGENTREG")
		err = js.DeleteConsumer(short(t), "AGENTREG", "agentd-follower")
		refused(t, err, readerErrs, "$JS.API.CONSUMER.DELETE.AGENTREG.agentd-follower")
		err = js.DeleteKeyValue(short(t), "AGENTREG_SNAPINDEX")
		refused(t, err, readerErrs, "$JS.API.STREAM.DELETE.KV_AGENTREG_SNAPINDEX")
		_, err = js.Publish(short(t), "$KV.AGENTREG_SNAPINDEX."+arch, []byte("forged snapshot header"))
		refused(t, err, readerErrs, "$KV.AGENTREG_SNAPINDEX."+arch)

		state, err := rlog.StreamState(ctx)
		require.NoError(t, err)
		require.Zero(t, state.NumDeleted, "no message deleted")
		require.False(t, slices.Contains(mustSubjects(t, rlog, "agentreg."+arch+".>"), subj))
	})

	t.Run("viewer calls the read endpoints only", func(t *testing.T) {
		viewer, viewerErrs := dial(t, url, "viewer")
		var list map[string]any
		call(t, viewer, "agent.list", map[string]any{"root": aud}, &list)
		var tools map[string]any
		call(t, viewer, "agent.tools", map[string]any{"root": aud, "path": "reviewer"}, &tools)
		require.Contains(t, tools, "tools")
		// The architect root's list (12 primers of 256 KiB) is larger than
		// a NATS message may be: agentd says so instead of staying silent.
		msg, err := viewer.Request("agentd.agent.list", []byte(`{"root":"`+arch+`"}`), 15*time.Second)
		require.NoError(t, err)
		require.Equal(t, "413", msg.Header.Get(micro.ErrorCodeHeader), "%s", msg.Header.Get(micro.ErrorHeader))
		require.Contains(t, msg.Header.Get(micro.ErrorHeader), "max_payload")
		_, err = viewer.Request("agentd.agent.create", []byte(`{"root":"`+arch+`","name":"x"}`), time.Second)
		require.ErrorIs(t, err, nats.ErrTimeout)
		viewerErrs.waitFor(t, `Permissions Violation for Publish to "agentd.agent.create"`)
	})

	t.Run("client calls the API and nothing else", func(t *testing.T) {
		js, err := jetstream.New(client)
		require.NoError(t, err)
		_, err = js.Stream(short(t), "AGENTREG")
		refused(t, err, clientErrs, "$JS.API.STREAM.INFO.AGENTREG")
		err = client.Publish("agentreg."+aud, []byte("forged"))
		require.NoError(t, err, "a plain publish returns at once")
		clientErrs.waitFor(t, fmt.Sprintf("Permissions Violation for Publish to %q", "agentreg."+aud))
	})

	// Every violation the server logged was one of the attempts above: the
	// allow lists hold everything the library, agentd and replay's reads
	// need.
	require.NoError(t, d.Close())
	require.Empty(t, viol.of("agentd"), "agentd needed a permission it lacks")
	want := map[string][]string{
		"writer": {"agentreg." + aud + ".intruder", "agentreg." + aud + ".reviewer.mole", "agentreg." + aud,
			"$KV.AGENTREG_SNAPINDEX." + arch, "$JS.API.STREAM.DELETE.AGENTREG"},
		"reader": {"agentreg." + arch + ".forged", "$JS.API.STREAM.DELETE.AGENTREG", "$JS.API.STREAM.PURGE.AGENTREG",
			"$JS.API.STREAM.MSG.DELETE.AGENTREG", "$JS.API.CONSUMER.DELETE.AGENTREG.agentd-follower",
			"$JS.API.STREAM.DELETE.KV_AGENTREG_SNAPINDEX", "$KV.AGENTREG_SNAPINDEX." + arch},
		"client": {"$JS.API.STREAM.INFO.AGENTREG", "agentreg." + aud},
		"viewer": {"agentd.agent.create"},
	}
	for user, subjects := range want {
		var got []string
		for _, v := range viol.of(user) {
			got = append(got, strings.TrimSuffix(strings.TrimPrefix(v, `Publish Violation - Subject "`), `"`))
		}
		slices.Sort(got)
		got = slices.Compact(got)
		require.ElementsMatch(t, subjects, got, "%s: violations beyond the refused attempts mean a missing permission", user)
	}
}

func mustSubjects(t *testing.T, l *natsstore.Log, filter string) []string {
	t.Helper()
	s, err := l.Subjects(context.Background(), filter)
	require.NoError(t, err)
	return s
}
