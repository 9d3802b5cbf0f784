package security_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"
	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
)

// TestAdversaryWriter plays an attacker holding exactly the writer
// permissions of docs/permissions.md (testdata/agentreg.conf: publish on
// the architect root's subjects, reads, consumers on that root) and no
// signing key. The honest party is agentd (user agentd), which signs every
// event it writes with a key the test makes; services call it as user
// client. Two deployments:
//
//   - "audited": agentd signs, nobody enforces a trust policy (the default
//     for readers); signatures are only checked by `replay audit --signers`.
//   - "enforced": agentd runs with --signers (daemon.Config.TrustedSigners)
//     and the library with agent.WithTrustedSigners, both trusting agentd's
//     key only.
//
// Each attack is a subtest; each asserts what is effective (a library
// runtime on the reader user, resolving cold, and agentd's API), what the
// folds record, what `replay audit` reports by sequence (the built binary,
// as the reader user), and that every event acknowledged before is still
// in the stream, unchanged and applied. The stream's dedupe window is 1 s,
// so the replay attack can wait it out.
func TestAdversaryWriter(t *testing.T) {
	// The replay binary (buildReplayOnce) is removed by TestMain.
	for _, enforce := range []bool{false, true} {
		name := "audited"
		if enforce {
			name = "enforced"
		}
		t.Run(name, func(t *testing.T) { adversary(t, enforce) })
	}
}

// universe is the members the test checks capabilities against.
var universe = []string{"cos", "pi", "read", "sin", "sqrt", "tan", "write"}

// allowedBy returns the members of universe every capability allows.
func allowedBy(chain ...events.Capability) []string {
	var out []string
	for _, m := range universe {
		ok := true
		for _, c := range chain {
			ok = ok && c.Allows(m)
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

// rawEncode encodes an event as events.Encode does, without its checks:
// what an attacker's own encoder writes.
func rawEncode(t *testing.T, e *events.Event) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	require.NoError(t, enc.Encode(e))
	return buf.Bytes()
}

// audited is one `replay audit --json` run.
type audited struct {
	code     int
	Signed   int `json:"signed"`
	Unsigned int `json:"unsigned"`
	Problems []struct {
		Seq    uint64 `json:"seq"`
		Kind   string `json:"kind"`
		Detail string `json:"detail"`
	} `json:"problems"`
}

// kinds returns the problem kinds audit reports at seq, sorted.
func (a audited) kinds(seq uint64) []string {
	var out []string
	for _, p := range a.Problems {
		if p.Seq == seq {
			out = append(out, p.Kind)
		}
	}
	slices.Sort(out)
	return out
}

type adversaryEnv struct {
	t       *testing.T
	enforce bool
	ctx     context.Context
	url     string
	pub     string // agentd's (the trusted) public key
	kp      nkeys.KeyPair
	signers string // a file holding pub, as agentd --signers and replay audit --signers read
	d       *daemon.Daemon
	logs    *logBuffer
	client  *nats.Conn
	agentd  *nats.Conn // the honest party's own connection (user agentd)
	wnc     *nats.Conn // the attacker (user writer)
	werrs   *asyncErrs
	wjs     jetstream.JetStream
	lib     *agent.Runtime // the library reading as user reader, cold resolves
	rlog    *natsstore.Log
	arch    string // the attacker's root (architect)
	arch2   string // architect with more capabilities
	acked   map[uint64]string
}

// write calls an agentd write endpoint as the client and records the
// acknowledged sequence.
func (env *adversaryEnv) write(endpoint string, req any) uint64 {
	env.t.Helper()
	var rep daemon.WriteReply
	call(env.t, env.client, endpoint, req, &rep)
	require.NotZero(env.t, rep.Seq)
	env.acked[rep.Seq] = "" // filled by snapshotAcked
	return rep.Seq
}

// apiError calls an agentd endpoint expected to fail and returns its code.
func (env *adversaryEnv) apiError(endpoint string, req any) (string, string) {
	env.t.Helper()
	data, err := json.Marshal(req)
	require.NoError(env.t, err)
	msg, err := env.client.Request("agentd."+endpoint, data, 15*time.Second)
	require.NoError(env.t, err)
	return msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader)
}

// records reads a root's events as the reader.
func (env *adversaryEnv) records(root string) map[uint64]events.Record {
	env.t.Helper()
	out := map[uint64]events.Record{}
	_, err := env.rlog.ReadRoot(env.ctx, root, 0, func(r events.Record) error {
		out[r.Seq] = r
		return nil
	})
	require.NoError(env.t, err)
	return out
}

// snapshotAcked remembers the bytes of every acknowledged event.
func (env *adversaryEnv) snapshotAcked() {
	env.t.Helper()
	recs := env.records(env.arch)
	maps.Copy(recs, env.records(env.arch2))
	for seq, h := range env.acked {
		if h == "" {
			r, ok := recs[seq]
			require.True(env.t, ok, "acknowledged seq %d is in the stream", seq)
			env.acked[seq] = events.Hash(r.Data)
		}
	}
}

// ackedIntact: every acknowledged event is still stored at its sequence
// with the same bytes, and applied by agentd's and the library's folds.
func (env *adversaryEnv) ackedIntact() {
	env.t.Helper()
	env.snapshotAcked()
	recs := env.records(env.arch)
	maps.Copy(recs, env.records(env.arch2))
	for seq, h := range env.acked {
		r, ok := recs[seq]
		require.True(env.t, ok, "acknowledged seq %d is still in the stream", seq)
		require.Equal(env.t, h, events.Hash(r.Data), "acknowledged seq %d unchanged", seq)
	}
	for who, codes := range map[string]map[uint64]string{"agentd": env.violations(true), "library": env.violations(false)} {
		for seq := range env.acked {
			require.NotContains(env.t, codes, seq, "%s: acknowledged seq %d is applied", who, seq)
		}
	}
	info, err := env.rlog.StreamState(env.ctx)
	require.NoError(env.t, err)
	require.Zero(env.t, info.NumDeleted, "nothing deleted")
}

// violations returns the violation codes of the architect root's fold, by
// sequence: agentd's (under its policy) or the library's.
func (env *adversaryEnv) violations(ofAgentd bool) map[uint64]string {
	env.t.Helper()
	rt := env.lib
	if ofAgentd {
		rt = env.d.Runtime()
	}
	out := map[uint64]string{}
	require.NoError(env.t, inspect.View(env.ctx, rt, string(agent.RootID(env.arch)), func(reg *projector.Registry) error {
		for _, v := range reg.Violations {
			out[v.Seq] = v.Code
		}
		return nil
	}))
	return out
}

// folded asserts the violation code both folds record at seq ("" for
// applied).
func (env *adversaryEnv) folded(seq uint64, code string) {
	env.t.Helper()
	for who, codes := range map[string]map[uint64]string{"agentd": env.violations(true), "library": env.violations(false)} {
		require.Equal(env.t, code, codes[seq], "%s's fold at seq %d", who, seq)
	}
}

// lastHash is what the attacker names as prev: the hash of the agent's
// last event the (trust-enforcing, when there is one) fold applied. The
// attacker can compute it by reading and folding the log itself.
func (env *adversaryEnv) lastHash(path string) string {
	env.t.Helper()
	var h string
	require.NoError(env.t, inspect.View(env.ctx, env.d.Runtime(), string(agent.RootID(env.arch)), func(reg *projector.Registry) error {
		h = reg.LastHash(path)
		return nil
	}))
	return h
}

// forge builds an event of the attacker's on the architect root.
func (env *adversaryEnv) forge(typ events.Type, path string) *events.Event {
	return &events.Event{ID: ulid.Make().String(), Type: typ, Version: events.SchemaVersion, Root: env.arch, Path: path,
		Time: time.Now().UnixNano(), Actor: "user:mallory", Correlation: "attack", Prev: env.lastHash(path)}
}

// publish stores data as the attacker, raw, with a message id.
func (env *adversaryEnv) publish(subject string, data []byte, msgID string) *jetstream.PubAck {
	env.t.Helper()
	hdr := nats.Header{}
	if msgID != "" {
		hdr.Set("Nats-Msg-Id", msgID)
	}
	ack, err := env.wjs.PublishMsg(env.ctx, &nats.Msg{Subject: subject, Data: data, Header: hdr})
	require.NoError(env.t, err, "the writer may publish to %s", subject)
	return ack
}

// attack publishes an event of the attacker's and returns its sequence.
func (env *adversaryEnv) attack(e *events.Event) uint64 {
	env.t.Helper()
	return env.publish(events.Subject("agentreg", e.Root, e.Path), rawEncode(env.t, e), e.ID).Sequence
}

// effective resolves ref through the library and through agentd (both
// at least up to the stream's last sequence) and returns the members each
// capability allows, by capability key; both must agree.
func (env *adversaryEnv) effective(ref agent.TaskRef) (map[string][]string, bool) {
	env.t.Helper()
	last, err := env.rlog.LastStreamSeq(env.ctx)
	require.NoError(env.t, err)
	task, err := env.lib.Resolve(agent.WithMinSeq(env.ctx, last), ref)
	require.NoError(env.t, err, "library resolves %s", ref)
	lib := map[string][]string{}
	for _, c := range task.Capabilities {
		lib[c.Ref.Key()] = allowedBy(append(slices.Clone(c.Chain), c.Ref)...)
	}
	var res daemon.ResolveReply
	call(env.t, env.client, "task.resolve", daemon.ResolveRequest{Ref: ref.String(), MinSeq: last}, &res)
	viaAgentd := map[string][]string{}
	for _, c := range res.Capabilities {
		var chain []events.Capability // the chain and the effective grant agentd answers: they must agree
		for _, g := range append(slices.Clone(c.Chain), c.Effective) {
			chain = append(chain, events.Capability{Kind: g.Kind, Name: g.Name, Include: g.Include, Exclude: g.Exclude, Visibility: g.Visibility})
		}
		viaAgentd[chain[0].Key()] = allowedBy(chain...)
	}
	require.Equal(env.t, lib, viaAgentd, "the library and agentd resolve %s alike", ref)
	require.Equal(env.t, task.Migrated, res.Migrated)
	return lib, task.Migrated
}

// audit runs the built replay binary as the reader; signed adds
// --signers with agentd's key.
func (env *adversaryEnv) audit(signed bool) audited {
	env.t.Helper()
	args := []string{"audit", "--nats-url", env.url, "--user", "reader", "--password", passwords["reader"], "--json"}
	if signed {
		args = append(args, "--signers", env.signers)
	}
	out, code := runReplay(env.t, args...)
	var a audited
	require.NoError(env.t, json.Unmarshal([]byte(out), &a), out)
	a.code = code
	env.t.Logf("audit (signers: %v): exit %d, %d signed, %d unsigned, problems %+v", signed, code, a.Signed, a.Unsigned, a.Problems)
	return a
}

// warned asserts that agentd logged the violation at seq at WARN.
func (env *adversaryEnv) warned(seq uint64, code string) {
	env.t.Helper()
	require.Eventually(env.t, func() bool {
		for _, l := range strings.Split(env.logs.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "event not applied: violation") &&
				strings.Contains(l, fmt.Sprintf("seq=%d ", seq)) && strings.Contains(l, "code="+code) {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "agentd logs seq %d (%s) at WARN", seq, code)
}

func adversary(t *testing.T, enforce bool) {
	srv, _ := startConfigured(t, permsConf)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	signers := filepath.Join(t.TempDir(), "signers")
	require.NoError(t, os.WriteFile(signers, []byte("# agentd\n"+pub+"\n"), 0o600))

	env := &adversaryEnv{t: t, enforce: enforce, ctx: ctx, url: srv.ClientURL(), pub: pub, kp: kp, signers: signers,
		acked: map[uint64]string{}}
	env.logs = &logBuffer{t: t}
	cfg := daemon.Config{
		Conn:        natsstore.ConnectOptions{URL: env.url, User: "agentd", Password: passwords["agentd"], Name: "agentd"},
		Stream:      natsstore.Config{Duplicates: time.Second},
		SigningSeed: seed,
		Logger:      slog.New(slog.NewTextHandler(env.logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if enforce {
		cfg.TrustedSigners = []string{pub}
	}
	env.d, err = daemon.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, env.d.Close()) })
	env.client, _ = dial(t, env.url, "client")
	env.agentd, _ = dial(t, env.url, "agentd")
	env.wnc, env.werrs = dial(t, env.url, "writer")
	env.wjs, err = jetstream.New(env.wnc)
	require.NoError(t, err)
	rnc, _ := dial(t, env.url, "reader")
	env.rlog, err = natsstore.ExistingLog(ctx, rnc, natsstore.Config{})
	require.NoError(t, err)

	// The honest history, through agentd.
	wide := architect()
	wide.Capabilities = append(wide.Capabilities, events.Capability{Kind: events.KindModule, Name: "io"})
	var reg daemon.WriteReply
	call(t, env.client, "root.register", daemon.RegisterRootRequest{Def: architect(), Actor: "user:alice"}, &reg)
	env.arch, env.acked[reg.Seq] = reg.Root, ""
	require.Equal(t, architect().Canonical().Fingerprint(), env.arch, "the writer's root")
	call(t, env.client, "root.register", daemon.RegisterRootRequest{Def: wide, Actor: "user:alice"}, &reg)
	env.arch2, env.acked[reg.Seq] = reg.Root, ""
	math := func(members ...string) []events.Capability {
		return []events.Capability{{Kind: events.KindModule, Name: "math", Include: members}}
	}
	create := func(parent, name string, caps []events.Capability) {
		env.write("agent.create", daemon.CreateRequest{Root: env.arch, Parent: parent, Name: name, Primer: "p",
			Capabilities: caps, Tasks: []events.TaskDef{solveTask()}, Actor: "user:alice"})
	}
	create("", "solver", math("sin", "cos"))
	create("solver", "helper", math("sin"))
	create("", "watched", math("sin"))
	create("", "lender", math("sin", "cos"))
	create("lender", "kid", math("sin"))
	env.snapshotAcked()

	// The library, reading as the reader user: cold resolves of the chain.
	libOpts := []agent.Option{agent.WithLog(env.rlog, nil), agent.WithCatalog(agent.SymbolicCatalog()),
		agent.WithLogger(testLogger(t)), agent.WithFollow(false)}
	if enforce {
		libOpts = append(libOpts, agent.WithTrustedSigners(pub))
	}
	env.lib, err = agent.Open(ctx, libOpts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = env.lib.Close() })
	for _, def := range []events.RootDef{architect(), wide} {
		_, err := env.lib.RegisterRoot(ctx, def) // recorded: writes nothing (the reader could not)
		require.NoError(t, err)
	}
	ref := func(path string) agent.TaskRef {
		return agent.TaskRef{Root: agent.RootID(env.arch), Path: path, Task: "solve"}
	}
	eff, _ := env.effective(ref("solver/helper"))
	require.Equal(t, map[string][]string{"module:math": {"sin"}}, eff)
	clean := env.audit(true)
	require.Equal(t, 0, clean.code, "a history written by a signing agentd audits clean with --signers")
	require.Zero(t, clean.Unsigned)
	env.ackedIntact()

	// The full check is TestForgedHeadersBlindNoReader (every forgeable
	// header, every reader); here one Status: 404 on the root's subject.
	t.Run("forged headers", func(t *testing.T) {
		env.t = t
		hdr := nats.Header{"Status": {"404"}, "Description": {"No Messages"}}
		forged, err := env.wjs.PublishMsg(ctx, &nats.Msg{Subject: "agentreg." + env.arch + ".watched", Header: hdr})
		require.NoError(t, err)
		after := env.write("agent.grant", daemon.GrantRequest{Root: env.arch, Path: "watched",
			Capability: math("sin", "cos")[0], Replace: true, Actor: "user:alice"})
		eff, _ := env.effective(ref("watched"))
		require.Equal(t, map[string][]string{"module:math": {"cos", "sin"}}, eff, "the grant after the forgery is seen")
		env.folded(forged.Sequence, projector.CodeMalformed)
		env.folded(after, "")
		env.warned(forged.Sequence, projector.CodeMalformed)
		a := env.audit(true)
		require.Equal(t, []string{projector.CodeMalformed}, a.kinds(forged.Sequence))
		require.Empty(t, a.kinds(after))
		env.ackedIntact()
	})

	// A grant within the parent's limits (helper: sin -> sin, cos; its
	// parent holds both), claiming user:alice as its actor.
	t.Run("forged grant", func(t *testing.T) {
		env.t = t
		e := env.forge(events.CapabilityGranted, "solver/helper")
		e.Actor = "user:alice"
		e.Granted = &events.GrantedData{Capability: math("sin", "cos")[0], Replace: true}
		seq := env.attack(e)
		eff, _ := env.effective(ref("solver/helper"))
		var lineage daemon.LineageReply
		call(t, env.client, "agent.lineage", daemon.ReadRequest{Root: env.arch, Path: "solver/helper", MinSeq: seq}, &lineage)
		if !enforce {
			require.Equal(t, map[string][]string{"module:math": {"cos", "sin"}}, eff, "no policy: the forged grant takes effect")
			env.folded(seq, "")
			require.Contains(t, lineage.Agent, daemon.Step{Path: "solver/helper", What: "granted module math", Seq: seq,
				Time: time.Unix(0, e.Time).UTC(), Actor: "user:alice"}, "agentd names the claimed actor")
		} else {
			require.Equal(t, map[string][]string{"module:math": {"sin"}}, eff, "a policy: refused")
			env.folded(seq, projector.CodeUnsigned)
			env.warned(seq, projector.CodeUnsigned)
			for _, st := range lineage.Agent {
				require.NotEqual(t, seq, st.Seq)
			}
		}
		// The audit without --signers says nothing about it: it counts one
		// unsigned event among signed ones. With --signers it reports it,
		// by sequence, as unsigned.
		a := env.audit(false)
		require.Empty(t, a.kinds(seq), "audit without --signers: no problem at the forged grant")
		require.Equal(t, 1, a.Unsigned)
		a = env.audit(true)
		require.Equal(t, []string{"unsigned"}, a.kinds(seq), "audit --signers flags the forged grant")

		if enforce {
			// A trusted key's name with a signature that is not its own, and
			// a valid signature by the attacker's own key.
			bad := env.forge(events.CapabilityGranted, "solver/helper")
			bad.Granted = &events.GrantedData{Capability: math("sin", "cos")[0], Replace: true}
			bad.Signer = pub
			junk := make([]byte, 64)
			_, _ = rand.Read(junk)
			bad.Sig = base64.RawURLEncoding.EncodeToString(junk)
			badSeq := env.attack(bad)
			own, err := nkeys.CreateUser()
			require.NoError(t, err)
			mine := env.forge(events.CapabilityGranted, "solver/helper")
			mine.Granted = &events.GrantedData{Capability: math("sin", "cos")[0], Replace: true}
			data, err := events.EncodeSigned(mine, own)
			require.NoError(t, err)
			mineSeq := env.publish(events.Subject("agentreg", env.arch, "solver/helper"), data, mine.ID).Sequence
			eff, _ := env.effective(ref("solver/helper"))
			require.Equal(t, map[string][]string{"module:math": {"sin"}}, eff)
			env.folded(badSeq, projector.CodeBadSignature)
			env.folded(mineSeq, projector.CodeUntrusted)
			a := env.audit(true)
			// Audit --signers folds under the same policy: it refused the
			// forged grant above as agentd did.
			require.Equal(t, []string{"bad_signature"}, a.kinds(badSeq))
			require.Equal(t, []string{"unknown_signer"}, a.kinds(mineSeq))
		}

		// An honest write to the agent afterwards is applied by agentd and
		// the library.
		task := solveTask()
		task.Name = "check"
		next := env.write("task.define", daemon.DefineTaskRequest{Root: env.arch, Path: "solver/helper", Task: task, Actor: "user:alice"})
		env.folded(next, "")
		a = env.audit(true)
		if enforce {
			require.Empty(t, a.kinds(next), "audit --signers folds as the enforcing agentd does")
		} else {
			// audit --signers folds under the policy this deployment does
			// not enforce: it refused the forged grant agentd applied, so the
			// honest write after it (chained to the forged one) is a broken
			// chain there: the audit shows where the deployment's history
			// departs from the signed one.
			require.Equal(t, []string{"chain"}, a.kinds(next), "audit --signers at the honest write after an applied forgery")
			require.Empty(t, env.audit(false).kinds(next))
		}
		env.ackedIntact()
	})

	// The trusted party's own grant, stored but refused (lender's math was
	// revoked between its check and its append: an escalation), is copied
	// by the attacker after lender holds math again: once with the same
	// Nats-Msg-Id after the dedupe window, once with a new one.
	t.Run("replayed refused event", func(t *testing.T) {
		env.t = t
		env.write("agent.revoke", daemon.RevokeRequest{Root: env.arch, Path: "lender", Kind: events.KindModule, Name: "math", Actor: "user:alice"})
		e := env.forge(events.CapabilityGranted, "lender/kid")
		e.Actor, e.Correlation = "user:alice", "honest"
		e.Granted = &events.GrantedData{Capability: math("sin", "cos")[0]}
		data, err := events.EncodeSigned(e, kp)
		require.NoError(t, err)
		ajs, err := jetstream.New(env.agentd)
		require.NoError(t, err)
		orig, err := ajs.PublishMsg(ctx, &nats.Msg{Subject: events.Subject("agentreg", env.arch, "lender/kid"), Data: data,
			Header: nats.Header{"Nats-Msg-Id": {e.ID}}})
		require.NoError(t, err)
		env.folded(orig.Sequence, projector.CodeEscalation)
		env.write("agent.grant", daemon.GrantRequest{Root: env.arch, Path: "lender", Capability: math("sin", "cos")[0], Actor: "user:alice"})

		// The attacker reads the stored bytes (a direct get) and copies them.
		var copied []byte
		require.NoError(t, natsstoreReadLiteral(env, events.Subject("agentreg", env.arch, "lender/kid"), func(r events.Record) {
			if r.Seq == orig.Sequence {
				copied = r.Data
			}
		}))
		require.Equal(t, data, copied)
		subject := events.Subject("agentreg", env.arch, "lender/kid")
		dup := env.publish(subject, copied, e.ID)
		if dup.Duplicate {
			t.Log("inside the dedupe window the copy is dropped by the server")
		}
		var sameID *jetstream.PubAck
		require.Eventually(t, func() bool {
			sameID = env.publish(subject, copied, e.ID)
			return !sameID.Duplicate
		}, 10*time.Second, 250*time.Millisecond, "the dedupe window (1 s) passes")
		newID := env.publish(subject, copied, ulid.Make().String())
		for _, seq := range []uint64{sameID.Sequence, newID.Sequence} {
			env.folded(seq, projector.CodeReplayed)
			env.warned(seq, projector.CodeReplayed)
		}
		// The revoke took math from kid too (a revocation covers the
		// subtree); lender's new grant gives kid nothing. Applied, the copy
		// would give kid math {cos, sin} with its original actor and time.
		eff, _ := env.effective(ref("lender/kid"))
		require.Empty(t, eff, "the copy takes no effect")
		a := env.audit(true)
		require.Equal(t, []string{projector.CodeEscalation}, a.kinds(orig.Sequence))
		require.Equal(t, []string{"duplicate_id"}, a.kinds(sameID.Sequence))
		require.Equal(t, []string{"duplicate_id"}, a.kinds(newID.Sequence))
		env.ackedIntact()
	})

	// A root the writer has no rights on: "evil", holding math and io.
	t.Run("root on another root's subject", func(t *testing.T) {
		env.t = t
		evil := events.RootDef{Name: "evil", Primer: "Everything.", Capabilities: []events.Capability{
			{Kind: events.KindModule, Name: "math"}, {Kind: events.KindModule, Name: "io"}}}
		evilFP := evil.Canonical().Fingerprint()
		e := env.forge(events.RootRegistered, "")
		e.Registered = &events.RootData{Def: evil}
		data := rawEncode(t, e)
		onOwn := env.publish("agentreg."+env.arch, data, e.ID).Sequence
		if enforce {
			env.folded(onOwn, projector.CodeUnsigned)
		} else {
			env.folded(onOwn, projector.CodeExists) // the subject's root is registered (evil's definition would not hash to it either)
		}
		// Its own subject: the server refuses.
		e2 := *e
		e2.ID, e2.Root = ulid.Make().String(), evilFP
		_, err := env.wjs.PublishMsg(short(t), &nats.Msg{Subject: "agentreg." + evilFP, Data: rawEncode(t, &e2)})
		refused(t, err, env.werrs, "agentreg."+evilFP)

		code, msg := env.apiError("agent.list", daemon.ReadRequest{Root: evilFP})
		require.Equal(t, "404", code, "agentd adopted no root evil: %s", msg)
		code, msg = env.apiError("agent.create", daemon.CreateRequest{Root: evilFP, Name: "x"})
		require.Equal(t, "404", code, "agentd writes nothing under evil: %s", msg)
		_, err = env.lib.Resolve(ctx, agent.TaskRef{Root: agent.RootID(evilFP), Path: "", Task: "solve"})
		require.Error(t, err)
		// Audit --signers refuses it as unsigned (its fold has the policy);
		// without --signers its fold reports the root registered already.
		require.Equal(t, []string{"unsigned"}, env.audit(true).kinds(onOwn))
		require.Equal(t, []string{"exists"}, env.audit(false).kinds(onOwn))
		env.ackedIntact()
	})

	// What permissions cannot confine (docs/permissions.md): a direct get
	// answered to a reply subject on evil's root subject stores a copy of
	// the writer's message there. The root then exists on its own subject,
	// with a definition that hashes to it.
	t.Run("root through a reply subject", func(t *testing.T) {
		env.t = t
		evil := events.RootDef{Name: "evil2", Primer: "Everything.", Capabilities: []events.Capability{
			{Kind: events.KindModule, Name: "math"}, {Kind: events.KindModule, Name: "io"}}}
		evilFP := evil.Canonical().Fingerprint()
		e := &events.Event{ID: ulid.Make().String(), Type: events.RootRegistered, Version: events.SchemaVersion, Root: evilFP,
			Time: time.Now().UnixNano(), Actor: "user:mallory", Correlation: "attack", Registered: &events.RootData{Def: evil}}
		carrier := env.publish("agentreg."+env.arch+".carrier", rawEncode(t, e), "").Sequence
		req, err := json.Marshal(map[string]any{"seq": carrier})
		require.NoError(t, err)
		require.NoError(t, env.wnc.PublishRequest("$JS.API.DIRECT.GET.AGENTREG", "agentreg."+evilFP, req))
		var stored uint64
		require.Eventually(t, func() bool {
			_ = env.rlog.ReadLiteral(ctx, []string{"agentreg." + evilFP}, func(r events.Record) error {
				stored = r.Seq
				return nil
			})
			return stored != 0
		}, 5*time.Second, 20*time.Millisecond, "JetStream stored its answer on agentreg.%s", evilFP)
		code, msg := env.apiError("agent.list", daemon.ReadRequest{Root: evilFP, MinSeq: stored})
		if enforce {
			require.Equal(t, "404", code, "an unsigned RootRegistered is not adopted: %s", msg)
		} else {
			require.Empty(t, code, "without a policy agentd adopts the root the writer planted: %s", msg)
		}
		// Audit: the carrier on the writer's root is on the wrong subject;
		// the planted copy is only flagged, as unsigned, with --signers.
		a := env.audit(true)
		require.Equal(t, []string{"unsigned", "wrong_subject"}, a.kinds(carrier))
		require.Equal(t, []string{"unsigned"}, a.kinds(stored))
		require.Empty(t, env.audit(false).kinds(stored), "without --signers the planted root audits clean")
		env.ackedIntact()
	})

	t.Run("deletion", func(t *testing.T) {
		env.t = t
		stream, err := env.wjs.Stream(ctx, "AGENTREG")
		require.NoError(t, err)
		seqs := slices.Sorted(maps.Keys(env.acked))
		err = stream.DeleteMsg(short(t), seqs[len(seqs)-1])
		refused(t, err, env.werrs, "$JS.API.STREAM.MSG.DELETE.AGENTREG")
		err = stream.Purge(short(t))
		refused(t, err, env.werrs, "$JS.API.STREAM.PURGE.AGENTREG")
		// Second guard, whoever asks (TestOpenLogDeniesDeleteAndPurge asks
		// as a user allowed everything): the stream agentd created denies
		// both.
		ajs, err := jetstream.New(env.agentd)
		require.NoError(t, err)
		s, err := ajs.Stream(ctx, "AGENTREG")
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		require.True(t, info.Config.DenyDelete, "deny_delete")
		require.True(t, info.Config.DenyPurge, "deny_purge")
		a := env.audit(true)
		for _, p := range a.Problems {
			require.NotEqual(t, "deleted", p.Kind, "audit reports no deleted sequence")
		}
		env.ackedIntact()
	})

	t.Run("huge primer", func(t *testing.T) {
		env.t = t
		var seqs []uint64
		for i, size := range []int{events.MaxPrimerBytes + 1, 900 << 10} { // over the primer limit; over the event limit
			e := env.forge(events.AgentCreated, fmt.Sprintf("bulky%d", i))
			e.Prev = ""
			e.Created = &events.CreatedData{Primer: strings.Repeat("p", size)}
			seqs = append(seqs, env.attack(e))
		}
		// Under a policy the signature is checked first, on what decodes:
		// the first is unsigned; the second is over the event limit and is
		// not decoded at all.
		first := projector.CodeTooLarge
		if enforce {
			first = projector.CodeUnsigned
		}
		env.folded(seqs[0], first)
		env.warned(seqs[0], first)
		env.folded(seqs[1], projector.CodeTooLarge)
		env.warned(seqs[1], projector.CodeTooLarge)
		for _, p := range []string{"bulky0", "bulky1"} {
			code, _ := env.apiError("agent.describe", daemon.ReadRequest{Root: env.arch, Path: p})
			require.Equal(t, "404", code)
		}
		code, msg := env.apiError("agent.create", daemon.CreateRequest{Root: env.arch, Name: "bulky", Primer: strings.Repeat("p", events.MaxPrimerBytes+1)})
		require.Equal(t, "413", code, msg)
		var list map[string]any
		call(t, env.client, "agent.list", daemon.ReadRequest{Root: env.arch}, &list)
		// Without --signers the audit folds as the audited deployment does;
		// with it, the first (decodable) is unsigned before it is too large.
		a := env.audit(false)
		for _, seq := range seqs {
			require.Contains(t, a.kinds(seq), projector.CodeTooLarge)
		}
		a = env.audit(true)
		require.Equal(t, []string{"unsigned"}, a.kinds(seqs[0]))
		require.Contains(t, a.kinds(seqs[1]), projector.CodeTooLarge)
		env.ackedIntact()
	})

	t.Run("glob escalation", func(t *testing.T) {
		env.t = t
		// Through the writer's own library: refused before writing.
		wlog, err := natsstore.ExistingLog(ctx, env.wnc, natsstore.Config{})
		require.NoError(t, err)
		wrt, err := agent.Open(ctx, agent.WithLog(wlog, nil), agent.WithCatalog(agent.SymbolicCatalog()),
			agent.WithLogger(testLogger(t)), agent.WithFollow(false))
		require.NoError(t, err)
		defer wrt.Close()
		_, err = wrt.RegisterRoot(ctx, architect())
		require.NoError(t, err)
		before, err := env.rlog.LastStreamSeq(ctx)
		require.NoError(t, err)
		_, err = wrt.Grant(ctx, agent.AgentRef{Root: agent.RootID(env.arch), Path: "solver/helper"}, math("s*")[0])
		require.ErrorIs(t, err, agent.ErrEscalation)
		after, err := env.rlog.LastStreamSeq(ctx)
		require.NoError(t, err)
		require.Equal(t, before, after, "nothing written")
		// Raw.
		var seqs []uint64
		for _, pattern := range []string{"s*", "[a-c]os", "t?n"} {
			e := env.forge(events.CapabilityGranted, "solver/helper")
			e.Granted = &events.GrantedData{Capability: math(pattern)[0]}
			seqs = append(seqs, env.attack(e))
		}
		want := projector.CodeEscalation
		if enforce {
			want = projector.CodeUnsigned
		}
		for _, seq := range seqs {
			env.folded(seq, want)
		}
		eff, _ := env.effective(ref("solver/helper"))
		if enforce {
			require.Equal(t, map[string][]string{"module:math": {"sin"}}, eff)
		} else {
			require.Equal(t, map[string][]string{"module:math": {"cos", "sin"}}, eff, "what the forged grant left")
		}
		a := env.audit(true)
		for _, seq := range seqs {
			want := []string{"unsigned"}
			if !enforce {
				// Forged on top of the forged grant agentd applied, which
				// the audit's policy refused: not chained to its last event.
				want = []string{"chain", "unsigned"}
			}
			require.Equal(t, want, a.kinds(seq), "audit --signers refuses each as unsigned")
		}
		if !enforce {
			a = env.audit(false)
			for _, seq := range seqs {
				require.Equal(t, []string{projector.CodeEscalation}, a.kinds(seq), "audit without --signers: the escalation")
			}
		}
		env.ackedIntact()
	})

	// Last: in the audited deployment the migration is applied and the
	// root takes no more writes.
	t.Run("widening migration", func(t *testing.T) {
		env.t = t
		before, migrated := env.effective(ref("solver"))
		require.False(t, migrated)
		// Without the target's definition (schema version 2 requires it):
		// refused, the root stays writable: no dead end.
		e := env.forge(events.RootMigrated, "")
		e.Migration = &events.MigratedData{To: env.arch2, Reason: "upgrade"}
		bare := env.attack(e)
		if enforce {
			env.folded(bare, projector.CodeUnsigned)
		} else {
			env.folded(bare, projector.CodeMalformed)
		}
		env.write("agent.grant", daemon.GrantRequest{Root: env.arch, Path: "solver", Capability: math("sin")[0], Replace: true, Actor: "user:alice"})
		// With it: a real new release of the same name holding more.
		wide := architect()
		wide.Capabilities = append(wide.Capabilities, events.Capability{Kind: events.KindModule, Name: "io"})
		e = env.forge(events.RootMigrated, "")
		e.Migration = &events.MigratedData{To: env.arch2, Reason: "upgrade", Def: &wide}
		seq := env.attack(e)
		after, migrated := env.effective(ref("solver"))
		require.Equal(t, map[string][]string{"module:math": {"sin"}}, after, "the migration does not widen: old recipe ∩ old root ∩ new root")
		require.Subset(t, before["module:math"], after["module:math"])
		require.Equal(t, !enforce, migrated)
		a := env.audit(true)
		require.Equal(t, []string{"unsigned"}, a.kinds(seq))
		if enforce {
			env.folded(seq, projector.CodeUnsigned)
			env.write("agent.grant", daemon.GrantRequest{Root: env.arch, Path: "solver", Capability: math("sin")[0], Replace: true, Actor: "user:alice"})
		} else {
			env.folded(seq, "")
			// Without a policy a writer of the root can still migrate it to
			// a real release of the same name: agentd then refuses writes to
			// the old root (what a migration means).
			code, msg := env.apiError("agent.grant", daemon.GrantRequest{Root: env.arch, Path: "solver", Capability: math("sin")[0], Replace: true})
			t.Logf("a write after the migration: %s %s", code, msg)
			require.NotEmpty(t, code)
			require.Contains(t, msg, "migrated")
		}
		env.ackedIntact()
	})
}

// natsstoreReadLiteral reads one subject as the attacker (direct gets).
func natsstoreReadLiteral(env *adversaryEnv, subject string, fn func(events.Record)) error {
	wlog, err := natsstore.ExistingLog(env.ctx, env.wnc, natsstore.Config{})
	if err != nil {
		return err
	}
	return wlog.ReadLiteral(env.ctx, []string{subject}, func(r events.Record) error {
		fn(r)
		return nil
	})
}
