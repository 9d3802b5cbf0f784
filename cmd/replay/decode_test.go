package main

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/testutil"
)

// decodeBody runs `replay decode` with body on stdin.
func decodeBody(t testing.TB, body []byte, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	err = RunIO(ctx, append([]string{"decode"}, args...), bytes.NewReader(body), &out, &errb)
	return out.String(), errb.String(), err
}

// roundTrip checks that decode's JSON of body stands for the very event
// stored: it encodes back to the same bytes.
func roundTrip(t *testing.T, name string, body []byte, out string) *wireEvent {
	t.Helper()
	var w wireEvent
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&w), "%s: %s", name, out)
	again, err := events.Encode(w.event())
	require.NoError(t, err, name)
	require.Equal(t, body, again, "%s: the JSON encodes back to the stored bytes\n%s", name, out)
	return &w
}

// decode renders every event type as the library writes it, read back
// from a real stream, signed and unsigned, and each rendering holds every
// field: it encodes back to the stored bytes.
func TestDecodeStoredBodies(t *testing.T) {
	t.Parallel()
	ctx := agent.WithActor(t.Context(), "user:alice")
	srv := testutil.RunServer(t)
	url := srv.ClientURL()
	nc := testutil.Connect(t, url)
	key, err := nkeys.CreateUser()
	require.NoError(t, err)
	seed, _ := key.Seed()
	pub, _ := key.PublicKey()
	open := func(opts ...agent.Option) *agent.Runtime {
		rt, err := agent.Open(ctx, append(append(runtimeOptions(t), agent.WithNATSURL(url)), opts...)...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = rt.Close() })
		return rt
	}
	signed, plain := open(agent.WithSigningSeed(seed)), open()

	root, err := signed.RegisterRoot(ctx, architect())
	require.NoError(t, err)
	// An exclude of [] (nothing excluded) is not the default ["_*"]: the
	// JSON must keep it.
	openMath := events.Capability{Kind: events.KindModule, Name: "math", Include: []string{"sin", "cos"}, Exclude: []string{}}
	solver, _, err := signed.Create(ctx, root, agent.Spec{Name: "math_solver", Primer: "You solve math problems.",
		Capabilities: []events.Capability{openMath}, Tasks: []events.TaskDef{task("solve", "equation", events.Schema{Type: "string"})}})
	require.NoError(t, err)
	require.NoError(t, errOf(signed.Grant(ctx, solver, agentCap)))
	_, err = plain.RegisterRoot(ctx, architect())
	require.NoError(t, err)
	_, _, err = plain.DefineTask(ctx, solver, task("simplify", "expr", events.Schema{Type: "array", Items: &events.Schema{Type: "string"}}))
	require.NoError(t, err)
	require.NoError(t, errOf(plain.Revoke(ctx, solver, events.KindType, "Agent")))
	require.NoError(t, errOf(plain.Retire(ctx, solver, "replaced")))
	next := architect()
	next.Primer = "You design specialist agents, release 2."
	newRoot, err := plain.RegisterRoot(ctx, next)
	require.NoError(t, err)
	require.NoError(t, errOf(plain.MigrateRoot(ctx, root.Root, newRoot.Root, "release 2")))

	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stream, err := js.Stream(ctx, "AGENTREG")
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	seen := map[string]bool{}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		msg, err := stream.GetMsg(ctx, seq)
		require.NoError(t, err)
		out, errb, err := decodeBody(t, msg.Data)
		require.NoError(t, err, "seq %d: %s", seq, errb)
		require.True(t, strings.HasPrefix(out, "{\n  \"id\": "), "indented by default:\n%s", out)
		w := roundTrip(t, msg.Subject, msg.Data, out)
		require.Equal(t, msg.Subject, events.Subject("agentreg", w.Root, w.Path))
		signedBy := "unsigned"
		if w.Signer != "" {
			require.Equal(t, pub, w.Signer)
			require.NotEmpty(t, w.Sig)
			require.NoError(t, events.VerifyStored(msg.Data, w.event()), "the signature in the JSON verifies")
			signedBy = "signed"
		}
		seen[string(w.Type)+" "+signedBy] = true
		if w.Type == events.AgentCreated {
			require.Contains(t, out, "\"exclude\": []", "an empty exclude stays []")
			require.Equal(t, []string{}, w.Created.Capabilities[0].Exclude)
		}
		compact, _, err := decodeBody(t, msg.Data, "--compact")
		require.NoError(t, err)
		require.Equal(t, 1, strings.Count(compact, "\n"), "--compact prints one line")
		roundTrip(t, msg.Subject, msg.Data, compact)
	}
	require.Equal(t, map[string]bool{
		"RootRegistered signed": true, "AgentCreated signed": true, "CapabilityGranted signed": true,
		"RootRegistered unsigned": true, "TaskDefined unsigned": true, "CapabilityRevoked unsigned": true,
		"AgentRetired unsigned": true, "RootMigrated unsigned": true,
	}, seen)
}

// The golden vectors: version 1 of every type (an AgentCreated without
// caps or tasks, a RootMigrated without def), version 2, version 3 (a task
// in JSON Schema, a grant with replace, a revoke with members), and an
// event with a claimed on-behalf-of.
func TestDecodeGoldenVectors(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join("..", "..", "events", "testdata", "*", "*.msgpack"))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(files), 14)
	seen := map[string]bool{}
	types := map[events.Type]bool{}
	versions := map[uint64]bool{}
	for _, f := range files {
		body, err := os.ReadFile(f)
		require.NoError(t, err)
		out, errb, err := decodeBody(t, body)
		require.NoError(t, err, "%s: %s", f, errb)
		w := roundTrip(t, f, body, out)
		require.Equal(t, string(w.Type), strings.Split(filepath.Base(f), ".")[0], f)
		types[w.Type], versions[w.Version] = true, true
		if strings.Contains(f, "obo") {
			require.Contains(t, out, `"obo": `)
		}
		seen[filepath.Base(f)] = true
		// The version 3 bodies keep their keys, and only they carry them.
		switch filepath.Base(f) {
		case "CapabilityGranted.v3.msgpack":
			require.True(t, w.Granted.Replace, f)
			require.Contains(t, out, `"replace": true`)
		case "CapabilityRevoked.v3.msgpack":
			require.Equal(t, []string{"sin", "cos"}, w.Revoked.Members, "members as written, in order")
			require.Contains(t, out, `"members": [`)
		case "TaskDefined.v3.msgpack":
			require.NotEmpty(t, w.Task.Task.InputSchema)
			require.Contains(t, out, `"input_schema": {`, "a schema is shown as the JSON object it is")
		default:
			require.NotContains(t, out, `"replace"`, f)
			require.NotContains(t, out, `"members"`, f)
		}
	}
	for _, name := range []string{"CapabilityGranted.v3.msgpack", "CapabilityRevoked.v3.msgpack", "TaskDefined.v3.msgpack"} {
		require.True(t, seen[name], "golden vector %s is read", name)
	}
	require.Len(t, types, 7, "every event type")
	require.Equal(t, map[uint64]bool{1: true, 2: true, 3: true}, versions)
}

// A body that is not an event is a one-line error and exit status 1,
// never a panic and nothing on stdout.
func TestDecodeMalformed(t *testing.T) {
	t.Parallel()
	golden, err := os.ReadFile(filepath.Join("..", "..", "events", "testdata", "golden", "TaskDefined.msgpack"))
	require.NoError(t, err)
	// The encoder refuses a version it does not know: patch the bytes ("v": 1).
	require.Equal(t, 1, bytes.Count(golden, []byte("\xa1v\x01")))
	futureBody := bytes.Replace(golden, []byte("\xa1v\x01"), []byte{0xa1, 'v', byte(events.SchemaVersion + 1)}, 1)
	for _, tc := range []struct {
		name string
		body []byte
		msg  string
	}{
		{"Empty", nil, "empty message"},
		{"Text", []byte("hello\n"), "not an agentreg event"},
		{"JSON", []byte(`{"id":"x","type":"AgentCreated"}`), "not an agentreg event"},
		{"Truncated", golden[:len(golden)/2], "malformed event"},
		{"Trailing", append(append([]byte{}, golden...), 0xc0), "trailing bytes"},
		{"FutureVersion", futureBody, "upgrade the reader"},
		{"NotAMap", []byte{0x93, 0x01, 0x02, 0x03}, "malformed event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := decodeBody(t, tc.body)
			require.Error(t, err)
			require.Empty(t, out)
			require.ErrorContains(t, err, tc.msg)
			require.ErrorContains(t, err, "decode: the ")
			require.NotContains(t, err.Error(), "\n", "one line")
			require.NotErrorIs(t, err, errUsage)
			var stderr bytes.Buffer
			require.Equal(t, exitProblems, exitCode(err, &stderr))
			require.Equal(t, 1, strings.Count(stderr.String(), "\n"), stderr.String())
		})
	}
	_, _, err = decodeBody(t, golden, "extra")
	require.ErrorIs(t, err, errUsage)
	require.ErrorContains(t, err, `unexpected argument "extra"`)
}

// decode never panics, and whatever it prints stands for the bytes it read.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "events", "testdata", "*", "*.msgpack"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		var out, errb bytes.Buffer
		err := RunIO(context.Background(), []string{"decode", "--compact"}, bytes.NewReader(body), &out, &errb)
		if err != nil {
			if strings.Contains(err.Error(), "\n") || out.Len() != 0 {
				t.Fatalf("error %q with output %q", err, out.String())
			}
			return
		}
		var w wireEvent
		if err := json.Unmarshal(out.Bytes(), &w); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out.String())
		}
		if _, err := events.Encode(w.event()); err != nil {
			t.Fatalf("decoded event does not encode: %v", err)
		}
	})
}

// natsCLI finds the NATS CLI: on the PATH or where `go install` puts it.
func natsCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "nats")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("the NATS CLI (nats) is not installed: go install github.com/nats-io/natscli/nats@latest")
	return ""
}

// The NATS CLI runs decode on a stored body (--translate) and prints its
// JSON; on a body that is not an event it prints decode's one line.
func TestNatsCLITranslate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	cli := natsCLI(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "replay")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	h := newHistory(t)
	garbage := testutil.PublishRaw(t, h.nc, h.subject("math_solver"), []byte("not an event"), nil)
	get := func(seq uint64) string {
		cmd := exec.CommandContext(ctx, cli, "--server", h.url, "stream", "get", "AGENTREG", fmt.Sprint(seq), "--translate", bin+" decode --compact")
		cmd.Env = append(os.Environ(), "NATS_CONTEXT=", "HOME="+t.TempDir()) // no user context
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	text := get(2)
	t.Logf("nats stream get AGENTREG 2 --translate 'replay decode --compact':\n%s", text)
	var line string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "{") {
			line = l
		}
	}
	stream := h.stream()
	msg, err := stream.GetMsg(h.ctx, 2)
	require.NoError(t, err)
	w := roundTrip(t, "seq 2", msg.Data, line)
	require.Equal(t, "math_solver", w.Path)
	require.Contains(t, get(garbage), "replay: decode: the 12-byte body on stdin is not an agentreg event")
}
