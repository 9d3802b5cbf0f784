package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/testutil"
)

// TestSigningAgentd: agentd started with --signing-seed and --signers signs
// every event it writes and applies only events signed by a trusted key.
// `replay audit --signers FILE` on its history is clean; a forged event
// (within the limits of the parent, unsigned, published by a writer with
// publish rights) has no effect through the API and is flagged by
// sequence.
func TestSigningAgentd(t *testing.T) {
	dir := t.TempDir()
	key, err := nkeys.CreateUser()
	require.NoError(t, err)
	seed, err := key.Seed()
	require.NoError(t, err)
	pub, err := key.PublicKey()
	require.NoError(t, err)
	seedFile, signersFile := filepath.Join(dir, "agentd.nk"), filepath.Join(dir, "signers")
	require.NoError(t, os.WriteFile(seedFile, seed, 0o600))
	require.NoError(t, os.WriteFile(signersFile, []byte("# agentd\n"+pub+"\n"), 0o644))

	replayBin := filepath.Join(dir, "replay")
	out, err := exec.Command("go", "build", "-o", replayBin, "../replay").CombinedOutput()
	require.NoError(t, err, "go build replay: %s", out)

	port, httpPort := freePort(t), freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	d := startAgentd(t, "agentd", url, httpAddr, "--data", filepath.Join(dir, "data"), "--port", fmt.Sprint(port), "--http", httpAddr,
		"--signing-seed", seedFile, "--signers", signersFile)
	d.waitReady(30 * time.Second)
	c := connect(t, url)
	h := createHierarchy(t, c)

	audit := func() (string, int) {
		cmd := exec.Command(replayBin, "audit", "--nats-url", url, "--signers", signersFile)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	text, code := audit()
	require.Equal(t, 0, code, "audit of a history written by a signing agentd:\n%s", text)
	require.Contains(t, text, "clean")

	// The forgery: math sqrt and abs granted to the parser (its parent holds
	// both), chained to the parser's last event as an attacker reading the
	// log can, unsigned, published raw on the parser's subject.
	subject := events.Subject("agentreg", h.root, "math_solver/equation_parser")
	js, err := jetstream.New(c.nc)
	require.NoError(t, err)
	stream, err := js.Stream(t.Context(), "AGENTREG")
	require.NoError(t, err)
	last, err := stream.GetLastMsgForSubject(t.Context(), subject)
	require.NoError(t, err)
	forged := &events.Event{ID: "01JFORGED00000000000000000", Type: events.CapabilityGranted, Version: events.SchemaVersion,
		Root: h.root, Path: "math_solver/equation_parser", Time: time.Now().UnixNano(), Actor: "user:alice", Correlation: "forged",
		Prev:    events.Hash(last.Data),
		Granted: &events.GrantedData{Capability: events.Capability{Kind: events.KindModule, Name: "math", Include: []string{"sqrt", "abs"}}}}
	data, err := events.Encode(forged)
	require.NoError(t, err)
	seq := testutil.PublishRaw(t, c.nc, subject, data, nil)

	r := c.call("task.resolve", map[string]any{"ref": h.root + "/math_solver/equation_parser#parse", "min_seq": seq})
	caps := r["caps"].([]any)
	require.Len(t, caps, 1)
	chain := caps[0].(map[string]any)["chain"].([]any) // root first, the agent's own grant last
	own := chain[len(chain)-1].(map[string]any)
	require.Equal(t, []any{"sqrt"}, own["include"], "the forged grant took effect through agentd")
	text, code = audit()
	require.Equal(t, 1, code, "audit after a forgery:\n%s", text)
	require.Contains(t, text, fmt.Sprintf("seq %d", seq), "the forged event is flagged by its sequence:\n%s", text)
	require.True(t, strings.Contains(text, "unsigned") || strings.Contains(text, "signature"), text)
}
