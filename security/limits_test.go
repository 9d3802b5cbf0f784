package security_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
)

// The tests below show what subject permissions in one account do not
// confine; docs/permissions.md ("What permissions cannot confine") relies
// on them. If one fails, the server or agentd changed: update the doc.

// TestReadsAreNotConfinedToRoots: the writer reads any agent's subject with
// batched direct gets, which name the subject in the request body, not in
// the API subject. Only its long reads (an ordered consumer, whose one
// filter is in the API subject) are confined to its roots.
func TestReadsAreNotConfinedToRoots(t *testing.T) {
	srv, viol := startConfigured(t, permsConf)
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	startAgentd(t, url)
	client, _ := dial(t, url, "client")
	var reg daemon.WriteReply
	call(t, client, "root.register", daemon.RegisterRootRequest{Def: auditor()}, &reg)
	call(t, client, "agent.create", daemon.CreateRequest{Root: reg.Root, Name: "reviewer"}, nil)

	wnc, _ := dial(t, url, "writer")
	wlog, err := natsstore.ExistingLog(ctx, wnc, natsstore.Config{})
	require.NoError(t, err)
	read := func(from uint64) ([]string, error) {
		var subjects []string
		_, err := wlog.ReadRoot(ctx, reg.Root, from, func(r events.Record) error {
			subjects = append(subjects, r.Subject)
			return nil
		})
		return subjects, err
	}
	subjects, err := read(0)
	require.NoError(t, err, "a short read: direct gets")
	require.Equal(t, []string{"agentreg." + reg.Root, "agentreg." + reg.Root + ".reviewer"}, subjects,
		"the writer read the auditor root, which it may not write")

	fill(t, url, directSpan)
	call(t, client, "agent.create", daemon.CreateRequest{Root: reg.Root, Name: "editor"}, nil)
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = wlog.ReadRoot(short, reg.Root, 0, func(events.Record) error { return nil })
	require.Error(t, err, "a long read: the consumer is refused")
	require.Eventually(t, func() bool {
		for _, v := range viol.of("writer") {
			if strings.Contains(v, `"$JS.API.CONSUMER.CREATE.AGENTREG.`) && strings.HasSuffix(v, `.agentreg.`+reg.Root+`.>"`) {
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "the server refused the writer's consumer on the auditor root")
	var got []string
	require.NoError(t, wlog.ReadLiteral(ctx, []string{events.Subject("agentreg", reg.Root, "editor")}, func(r events.Record) error {
		got = append(got, r.Subject)
		return nil
	}))
	require.Len(t, got, 1, "yet it reads the new agent's subject with a direct get")
}

// TestReplySubjectsReachTheStream: a request's reply subject is not
// subject to the requester's publish permissions, and JetStream answers
// as the account. So a user who may send any JetStream API request can
// have JetStream store its answer on any subject a stream listens to:
// another root's subjects, or the snapshot index.
func TestReplySubjectsReachTheStream(t *testing.T) {
	srv, _ := startConfigured(t, permsConf)
	url := srv.ClientURL()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	startAgentd(t, url)
	client, _ := dial(t, url, "client")
	var reg daemon.WriteReply
	call(t, client, "root.register", daemon.RegisterRootRequest{Def: auditor()}, &reg)
	aud := reg.Root
	arch := architect().Canonical().Fingerprint()

	// Checked as the reader: it may read the stream and the index.
	rnc, _ := dial(t, url, "reader")
	rjs, err := jetstream.New(rnc)
	require.NoError(t, err)
	stream, err := rjs.Stream(ctx, "AGENTREG")
	require.NoError(t, err)
	stored := func(t *testing.T, subject string) bool {
		t.Helper()
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
		require.NoError(t, err)
		return info.State.Subjects[subject] > 0
	}
	kv, err := rjs.KeyValue(ctx, "AGENTREG_SNAPINDEX")
	require.NoError(t, err)
	index := func(root string) [][]byte {
		entries, err := kv.History(ctx, root)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		require.NoError(t, err)
		var values [][]byte
		for _, e := range entries {
			values = append(values, e.Value())
		}
		return values
	}

	t.Run("the read-only user has JetStream write on another root's subject", func(t *testing.T) {
		planted := events.Subject("agentreg", aud, "planted")
		// The stream info reply lands in the stream. (A direct get's reply,
		// a copy of a stored message, does too, unless it repeats a
		// Nats-Msg-Id still in the stream's dedupe window.)
		require.NoError(t, rnc.PublishRequest("$JS.API.STREAM.INFO.AGENTREG", planted, nil))
		require.Eventually(t, func() bool { return stored(t, planted) }, 5*time.Second, 20*time.Millisecond,
			"JetStream stored its answer to the read-only user's request on %s", planted)
	})

	t.Run("the writer plants bytes of its choice in the snapshot index", func(t *testing.T) {
		wnc, _ := dial(t, url, "writer")
		wjs, err := jetstream.New(wnc)
		require.NoError(t, err)
		forged := []byte("a snapshot header of the writer's making")
		ack, err := wjs.PublishMsg(ctx, &nats.Msg{Subject: events.Subject("agentreg", arch, "carrier"), Data: forged})
		require.NoError(t, err, "the writer may append to its root")
		req, err := json.Marshal(map[string]any{"seq": ack.Sequence})
		require.NoError(t, err)
		require.NoError(t, wnc.PublishRequest("$JS.API.DIRECT.GET.AGENTREG", "$KV.AGENTREG_SNAPINDEX."+aud, req))
		require.Eventually(t, func() bool {
			values := index(aud)
			return len(values) == 1 && string(values[0]) == string(forged)
		}, 5*time.Second, 20*time.Millisecond, "the auditor root's snapshot index holds the writer's bytes")
	})

	t.Run("agentd does not answer into the stream or the buckets", func(t *testing.T) {
		for _, reply := range []string{events.Subject("agentreg", aud, "via-agentd"), "$KV.AGENTREG_SNAPINDEX." + arch, "agentd.root.register"} {
			require.NoError(t, client.PublishRequest("agentd.health", reply, nil))
		}
		var health map[string]any
		call(t, client, "health", nil, &health) // answered after the three above
		require.False(t, stored(t, events.Subject("agentreg", aud, "via-agentd")), "agentd answered into the stream")
		require.Empty(t, index(arch), "agentd answered into the snapshot index")
	})
}

// TestAgentdLackingPermissionFailsFast: a request the server refuses is
// never answered, like one to a JetStream that is still electing a leader;
// agentd tells them apart by the server's permissions violation and stops
// at once with it, instead of retrying until its context ends.
func TestAgentdLackingPermissionFailsFast(t *testing.T) {
	srv, _ := startConfigured(t, permsConf)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := daemon.Start(ctx, daemon.Config{
		Conn:   natsstore.ConnectOptions{URL: srv.ClientURL(), User: "reader", Password: passwords["reader"]},
		Logger: testLogger(t),
	})
	require.ErrorIs(t, err, nats.ErrPermissionViolation)
	require.ErrorContains(t, err, `"$JS.API.STREAM.CREATE.AGENTREG"`)
	require.ErrorContains(t, err, "docs/permissions.md")
	require.Less(t, time.Since(start), 10*time.Second)
}
