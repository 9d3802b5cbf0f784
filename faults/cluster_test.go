package faults_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

// TestClusterFailover runs a runtime with an R3 stream on a 3-node cluster
// under load, shuts down a node that does not lead the stream, restarts
// it, then shuts down the stream leader and restarts it. Writes go on
// while a node is down (retried until a deadline while a new leader is
// elected), nothing acknowledged is lost, and each restarted node catches
// up: at the end every node's own copy of the stream ends at the leader's
// last sequence with the same message count.
//
// Two nodes are never down at once: an R3 stream needs two of its three
// replicas to elect a leader and take writes.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("3-node cluster with node shutdowns: skipped with -short")
	}
	ctx := context.Background()
	s := seed(t)
	rounds := pick(1, 2)
	const failover = 60 * time.Second // an election and the retries of writes sent to the dead node
	servers := testutil.RunCluster(t, 3)
	url := testutil.ClusterURL(servers)
	// The cluster has a meta leader; creating an R3 stream may still wait
	// for every peer to be known.
	var rt *agent.Runtime
	eventually(t, failover, func() bool {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var err error
		rt, err = agent.Open(ctx, agent.WithNATSURL(url), agent.WithReplicas(3),
			agent.WithCatalog(agent.SymbolicCatalog()), agent.WithLogger(testLogger(t)))
		if err != nil {
			t.Logf("open the runtime: %v", err)
		}
		return err == nil
	}, "open a runtime with an R3 stream")
	t.Cleanup(func() { _ = rt.Close() })
	var root agent.AgentRef
	eventually(t, failover, func() bool {
		var err error
		root, err = rt.RegisterRoot(ctx, rootDef("cluster"))
		return err == nil
	}, "register the root")
	stream := clusterStream(t, url)
	l := newLoad(rt, root, s, 5*time.Second)
	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { l.run(lctx) })
	defer func() { stop(); wg.Wait() }()

	start := time.Now()
	var figures []string
	shutdown := func(i int, what string) {
		t.Helper()
		ld := stream.leader(t)
		t.Logf("%s: shutting down %s (stream leader %s)", what, servers[i].Name(), ld)
		servers[i].Shutdown()
		servers[i].WaitForShutdown()
		first := l.waitOK(t, 1, failover, what+": first write after the shutdown")
		l.waitOK(t, 10, failover, what+": writes after the shutdown")
		now := stream.leader(t)
		if servers[i].Name() == ld {
			require.NotEqual(t, ld, now, "a new stream leader is elected")
		}
		target := stream.lastSeq(t)
		servers[i] = testutil.Restart(t, servers[i])
		caughtUp := time.Now()
		eventually(t, failover, func() bool { return localState(t, servers[i]).LastSeq >= target },
			"%s restarted catches up to seq %d", servers[i].Name(), target)
		figures = append(figures, fmt.Sprintf("%s (%s): first write after %v, new leader %s, restarted node caught up to seq %d in %v",
			what, servers[i].Name(), first.Round(time.Millisecond), now, target, time.Since(caughtUp).Round(time.Millisecond)))
		l.waitOK(t, 10, failover, what+": writes after the restart")
	}
	l.waitOK(t, 10, failover, "before any shutdown")
	for round := 1; round <= rounds; round++ {
		ld := stream.leader(t)
		follower := -1
		for i, srv := range servers {
			if srv.Name() != ld {
				follower = i
				break
			}
		}
		shutdown(follower, fmt.Sprintf("round %d: a non-leader", round))
		ld = stream.leader(t)
		for i, srv := range servers {
			if srv.Name() == ld {
				shutdown(i, fmt.Sprintf("round %d: the stream leader", round))
				break
			}
		}
	}
	stop()
	wg.Wait()

	// Every node holds the whole stream: its own copy ends at the leader's
	// last sequence, with the same message count. (Polled: a write in
	// flight when the load stopped may land a moment later.)
	var want uint64
	eventually(t, failover, func() bool {
		want = stream.lastSeq(t)
		first := localState(t, servers[0])
		for _, srv := range servers {
			if st := localState(t, srv); st.LastSeq != want || st.Msgs != first.Msgs {
				return false
			}
		}
		return true
	}, "every node ends at the leader's last seq with the same messages")
	lg := openLog(t, url, natsstore.Config{Replicas: 3})
	st := agreeWith(t, ctx, lg, rt, string(root.Root), "the writer's runtime")
	st.requireUniqueIDs(t)
	storedAfterError := checkAttempts(t, st, l.snapshot())
	resent, resentOK := resends(l.snapshot())
	t.Logf("%d writes sent again with their idempotency key after an error, %d of them succeeded; each found once", resent, resentOK)
	for _, f := range figures {
		t.Log(f)
	}
	t.Logf("%d node shutdowns and restarts in %v: %d writes succeeded and were found whole, %d failed "+
		"(%d of them stored whole nonetheless), %d reads failed; %d events checked on every node (last seq %d), %d agents, %d violations",
		2*rounds, time.Since(start).Round(time.Millisecond), l.ok.Load(), l.errs.Load(), storedAfterError, l.views.Load(),
		len(st.recs), want, len(st.reg.Agents), len(st.reg.Violations))
}

// streamInfo asks the stream leader about the log's stream.
type streamInfo struct {
	js jetstream.JetStream
}

func clusterStream(t *testing.T, url string) streamInfo {
	t.Helper()
	js, err := jetstream.New(testutil.Connect(t, url))
	require.NoError(t, err)
	return streamInfo{js: js}
}

func (s streamInfo) info(t *testing.T) *jetstream.StreamInfo {
	t.Helper()
	var info *jetstream.StreamInfo
	eventually(t, 60*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := s.js.Stream(ctx, "AGENTREG")
		if err != nil {
			return false
		}
		info, err = st.Info(ctx)
		return err == nil && info.Cluster != nil && info.Cluster.Leader != ""
	}, "stream info with a leader")
	return info
}

// leader is the name of the server leading the stream.
func (s streamInfo) leader(t *testing.T) string { t.Helper(); return s.info(t).Cluster.Leader }

// lastSeq is the stream's last sequence as its leader knows it.
func (s streamInfo) lastSeq(t *testing.T) uint64 { t.Helper(); return s.info(t).State.LastSeq }

// localState is one node's own copy of the stream's state (not the
// leader's), read from the server in this process.
func localState(t *testing.T, srv *server.Server) server.StreamState {
	t.Helper()
	acc, err := srv.JszAccount(&server.JSzOptions{Account: "$G", Streams: true})
	if err != nil {
		return server.StreamState{}
	}
	for _, sd := range acc.Streams {
		if sd.Name == "AGENTREG" {
			return sd.State
		}
	}
	return server.StreamState{}
}
