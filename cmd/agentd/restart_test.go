package main

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

// TestRestartsUnderLoad: agentd, with its embedded NATS server, is stopped
// 5 times while a client creates agents through its API (SIGTERM and
// SIGKILL in turn) and started again on the same data. Every acknowledged
// create is there exactly once afterwards; a create that got no answer is
// there once or not at all; the registry agentd serves equals a fresh fold
// of the log.
func TestRestartsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a process 5 times")
	}
	data := t.TempDir()
	port, httpPort := freePort(t), freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	d := startAgentd(t, "agentd", url, httpAddr, "--data", data, "--port", fmt.Sprint(port), "--http", httpAddr)
	d.waitReady(30 * time.Second)
	c := connect(t, url)
	h := createHierarchy(t, c)

	var mu sync.Mutex
	acked, unanswered := map[string]bool{}, map[string]bool{}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			name := fmt.Sprintf("w%d", i)
			body := fmt.Sprintf(`{"root":%q,"name":%q,"actor":"user:load"}`, h.root, name)
			msg, err := c.nc.Request("agentd.agent.create", []byte(body), 2*time.Second)
			mu.Lock()
			if err == nil && msg.Header.Get(micro.ErrorCodeHeader) == "" {
				acked[name] = true
			} else {
				unanswered[name] = true // no daemon, or it went away mid-request
			}
			mu.Unlock()
			if err != nil {
				time.Sleep(20 * time.Millisecond) // back off while the daemon restarts
			}
		}
	}()
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for round := range 5 {
		before := ackedCount()
		require.Eventually(t, func() bool { return ackedCount() >= before+10 }, 30*time.Second, 10*time.Millisecond, "round %d: no progress", round)
		sig := []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}[round%2]
		state, _ := d.kill(sig)
		require.NotNil(t, state, "agentd did not exit after %v", sig)
		d = d.restart()
		d.waitReady(30 * time.Second)
	}
	require.Eventually(t, func() bool { return ackedCount() >= 10 }, 30*time.Second, 10*time.Millisecond)
	close(stop)
	<-done

	// The log: every acknowledged create once, nothing twice.
	nc := testutil.Connect(t, url)
	l, err := natsstore.ExistingLog(context.Background(), nc, natsstore.Config{})
	require.NoError(t, err)
	created := map[string]int{}
	var recs []events.Record
	_, err = l.ReadRoot(context.Background(), h.root, 1, func(r events.Record) error {
		recs = append(recs, r)
		if e, err := events.Decode(r.Data); err == nil && e.Type == events.AgentCreated {
			created[e.Path]++
		}
		return nil
	})
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	for name := range acked {
		require.Equal(t, 1, created[name], "acknowledged create %s", name)
	}
	for name := range unanswered {
		require.LessOrEqual(t, created[name], 1, "unanswered create %s", name)
	}
	for path, n := range created {
		require.Equal(t, 1, n, "agent %s created %d times", path, n)
	}
	// What agentd serves is the fold of the log.
	list := c.eventually("agent.list", map[string]any{"root": h.root}, 10*time.Second)
	agents, _ := list["agents"].([]any)
	require.Len(t, agents, len(created))
	t.Logf("5 restarts: %d creates acknowledged, %d unanswered, %d events in the log", len(acked), len(unanswered), len(recs))
}
