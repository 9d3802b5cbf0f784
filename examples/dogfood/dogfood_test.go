package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/testutil"
)

type report struct {
	Phase       string            `json:"phase"`
	Refs        map[string]string `json:"refs"`
	Results     map[string]any    `json:"results"`
	StateHash   string            `json:"state_hash"`
	Seq         uint64            `json:"seq"`
	Reused      bool              `json:"reused"`
	SnapshotSeq uint64            `json:"snapshot_seq"`
}

// build compiles the demo once per test into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dogfood")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

func run(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	t.Logf("$ dogfood %s\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
	require.NoError(t, err, "dogfood %v", args)
	return stdout.Bytes()
}

func runJSON(t *testing.T, bin string, args ...string) report {
	t.Helper()
	var r report
	require.NoError(t, json.Unmarshal(run(t, bin, append([]string{"-json"}, args...)...), &r))
	return r
}

// TestCrossProcess: one process creates a 3-level hierarchy (architect ->
// math_solver -> equation_parser) and exits; a second process resolves and
// calls every ref; after a snapshot, a third does the same from the
// snapshot plus tail. Results and registry state hashes must agree.
func TestCrossProcess(t *testing.T) {
	srv := testutil.RunServer(t)
	bin := build(t)
	url := srv.ClientURL()

	created := runJSON(t, bin, "-nats-url", url, "-phase", "create")
	require.False(t, created.Reused)
	require.Len(t, created.Refs, 2)
	refs := []string{created.Refs["math_solver"], created.Refs["math_solver/equation_parser"]}
	for _, r := range refs {
		require.NotEmpty(t, r)
	}

	second := runJSON(t, bin, append([]string{"-nats-url", url, "-phase", "resolve"}, refs...)...)
	require.Equal(t, "x = 2", second.Results[refs[0]])
	require.Equal(t, "a=4 b=5 c=13", second.Results[refs[1]])
	require.Equal(t, created.StateHash, second.StateHash)
	require.Equal(t, created.Seq, second.Seq)
	require.Zero(t, second.SnapshotSeq, "no snapshot existed yet")

	snap := runJSON(t, bin, "-nats-url", url, "-phase", "snapshot")
	require.Equal(t, second.StateHash, snap.StateHash)

	nc := testutil.Connect(t, url)
	l, err := natsstore.OpenLog(context.Background(), nc, natsstore.Config{})
	require.NoError(t, err)
	snaps, err := natsstore.OpenSnapshots(context.Background(), l)
	require.NoError(t, err)
	root := strings.SplitN(refs[0], "/", 2)[0]
	list, err := snaps.List(context.Background(), root)
	require.NoError(t, err)
	require.NotEmpty(t, list)
	require.Equal(t, second.Seq, list[0].Seq)

	third := runJSON(t, bin, append([]string{"-nats-url", url, "-phase", "resolve"}, refs...)...)
	require.Equal(t, second.Results, third.Results)
	require.Equal(t, second.StateHash, third.StateHash)
	require.Equal(t, list[0].Seq, third.SnapshotSeq, "the third process restores from the snapshot")

	// Creating again reuses what the first run stored.
	again := runJSON(t, bin, "-nats-url", url, "-phase", "create")
	require.True(t, again.Reused)
	require.Equal(t, created.Refs, again.Refs)
	require.Equal(t, created.StateHash, again.StateHash)
}

// TestEmbeddedDefault runs the README's main command shape: both phases on
// the embedded server, the second in a process the demo starts itself, and
// then again on the same data directory.
func TestEmbeddedDefault(t *testing.T) {
	bin := build(t)
	dir := filepath.Join(t.TempDir(), "data")
	first := string(run(t, bin, "-data", dir))
	require.Contains(t, first, "architect created math_solver")
	require.Contains(t, first, `solve_math_problem("4x + 5 = 13") = x = 2`)
	require.Contains(t, first, `parse_equation("4x + 5 = 13") = a=4 b=5 c=13`)
	require.Contains(t, first, "equation_parser: created at seq")
	second := string(run(t, bin, "-data", dir))
	require.Contains(t, second, "reusing it")
	require.Contains(t, second, `= x = 2`)
}
