package events_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// The conformance vectors (testdata/conformance/*.json, described in its
// README.md and in docs/wire.md) are generated from the case definitions
// in conformanceCases: go test ./events/ -run TestConformance -update
// rewrites them. Without -update, TestConformance checks that every file is
// what its definition generates, then runs every file on its own, as
// another implementation would: decode each message, hash it, verify its
// signature, fold the history and compare with what the file expects.

const conformanceDir = "testdata/conformance"

// conformancePrefix is the subject prefix of every vector.
const conformancePrefix = "agentreg"

// vecFile is one vector file: a history of messages, what a reader must
// make of each one, and the registry the fold ends with.
type vecFile struct {
	Name           string       `json:"name"`
	Description    string       `json:"description"`
	SubjectPrefix  string       `json:"subject_prefix"`
	Root           string       `json:"root"`
	TrustedSigners []string     `json:"trusted_signers"`
	Messages       []vecMessage `json:"messages"`
	Registry       vecRegistry  `json:"registry"`
	Violations     []vecViol    `json:"violations"`
}

type vecMessage struct {
	Seq     uint64            `json:"seq"`
	Subject string            `json:"subject"`
	Headers map[string]string `json:"headers"`
	Data    string            `json:"data"` // standard base64 of the message body
	// DecodeError is the violation code of a body that does not decode
	// ("" when it decodes); Event is the decoded event with wire keys.
	DecodeError string         `json:"decode_error,omitempty"`
	Event       map[string]any `json:"event,omitempty"`
	Hash        string         `json:"hash"`
	// Signature: "unsigned", "valid" or "bad" (events.VerifyStored), for a
	// decoded event; SignedPayload the bytes the signature covers.
	Signature     string `json:"signature,omitempty"`
	SignedPayload string `json:"signed_payload,omitempty"`
	// Definition: the fingerprint and canonical encoding of a root
	// definition the event carries (registered.def, migrated.def).
	Definition *vecDef `json:"definition,omitempty"`
	// Contracts: for a decoded event carrying task definitions
	// (registered.def.tasks, created.tasks, task.task, migrated.def.tasks),
	// each task's contract digest (events.TaskDef.Contract) by task name.
	Contracts map[string]string `json:"contracts,omitempty"`
	// Result is "applied" or the code of the message's violation.
	Result string `json:"result"`
}

type vecDef struct {
	Fingerprint string `json:"fingerprint"`
	Canonical   string `json:"canonical"` // base64 of the canonical msgpack
}

type vecRegistry struct {
	Registered bool           `json:"registered"`
	Def        map[string]any `json:"def"` // canonical, wire keys
	RootHash   string         `json:"root_hash"`
	MigratedTo string         `json:"migrated_to"`
	Agents     []vecAgent     `json:"agents"`
	StateHash  string         `json:"state_hash"`
}

type vecAgent struct {
	Path      string         `json:"path"`
	Parent    string         `json:"parent"`
	Primer    string         `json:"primer"`
	Caps      []any          `json:"caps"`      // own grants as they stand (projector.Registry.Grant), normalized, by kind:name
	Effective []vecEffective `json:"effective"` // by kind:name
	// Revoked: for each own grant narrowed by member-level revocations
	// (projector.StandingGrant.Revoked), its kind:name and the members, sorted;
	// absent when none.
	Revoked    map[string][]string `json:"revoked,omitempty"`
	Tasks      []any               `json:"tasks"` // by name
	Retired    bool                `json:"retired"`
	RetiredSeq uint64              `json:"retired_seq"`
	CreatedSeq uint64              `json:"created_seq"`
	LastHash   string              `json:"last_hash"`
}

type vecEffective struct {
	Cap   map[string]any `json:"cap"`
	Exact bool           `json:"exact"`
}

type vecViol struct {
	Seq  uint64 `json:"seq"`
	Code string `json:"code"`
	ID   string `json:"id,omitempty"`
	Path string `json:"path,omitempty"`
}

// A conformance case: a history built step by step. Steps that build an
// event get the envelope filled (id, time, actor, corr, the case's schema
// version unless a step sets another, root, and prev = the agent's last
// applied hash) and set only their body.
type convCase struct {
	name, doc string
	trust     []nkeys.KeyPair // a trust policy of these keys; none: no policy
	// version is the schema version of the case's events (2 when 0); a
	// step's v(n) overrides it.
	version uint64
	steps   []step
}

type step struct {
	typ  events.Type
	path string
	body func(e *events.Event)
	opts []stepOpt
	raw  []byte // a message body given as bytes (no event built)
	// rawSubject is the subject of raw (default: the root's).
	rawSubject string
}

type stepOpt func(*stepCtx)

type stepCtx struct {
	e       *events.Event
	key     nkeys.KeyPair
	subject string
	tamper  func([]byte) []byte
	// unchecked encodes without Encode's validation (bytes no writer of
	// this module produces); reencode rewrites the encoded map.
	unchecked bool
	reencode  func(m map[string]any)
	prevSeq   uint64 // prev = the hash of the message at this seq
}

// v sets the event's schema version.
func v(n uint64) stepOpt { return func(c *stepCtx) { c.e.Version = n } }

// prev sets the event's prev (default: the agent's last applied hash).
func prev(h string) stepOpt { return func(c *stepCtx) { c.e.Prev = h } }

// signed signs the event with key.
func signed(key nkeys.KeyPair) stepOpt { return func(c *stepCtx) { c.key = key } }

// onSubject stores the message on another agent's subject.
func onSubject(path string) stepOpt {
	return func(c *stepCtx) { c.subject = events.Subject(conformancePrefix, c.e.Root, path) }
}

// tampered changes the encoded bytes after encoding (and signing).
func tampered(f func([]byte) []byte) stepOpt { return func(c *stepCtx) { c.tamper = f } }

// copyOf gives the event the id of the event of step seq.
func copyOf(seq uint64) stepOpt { return func(c *stepCtx) { c.e.ID = stepID(seq) } }

// prevOf sets prev to the hash of the message at seq (applied or not).
func prevOf(seq uint64) stepOpt { return func(c *stepCtx) { c.prevSeq = seq } }

// unchecked encodes the event as it is, without validating it.
func unchecked() stepOpt { return func(c *stepCtx) { c.unchecked = true } }

// reencode decodes the encoded event to a generic map, lets f change it,
// and encodes it again with its keys sorted (not in the writer's order).
func reencode(f func(m map[string]any)) stepOpt { return func(c *stepCtx) { c.reencode = f } }

func stepID(seq uint64) string { return fixedID(1000 + seq) }

// edit changes the envelope before encoding.
func edit(f func(e *events.Event)) stepOpt { return func(c *stepCtx) { f(c.e) } }

func register(def events.RootDef, o ...stepOpt) step {
	return step{typ: events.RootRegistered, body: func(e *events.Event) { e.Registered = &events.RootData{Def: def} }, opts: o}
}

func create(path, primer string, caps []events.Capability, tasks []events.TaskDef, o ...stepOpt) step {
	return step{typ: events.AgentCreated, path: path, opts: o, body: func(e *events.Event) {
		e.Created = &events.CreatedData{Primer: primer, Capabilities: caps, Tasks: tasks}
	}}
}

func grant(path string, c events.Capability, o ...stepOpt) step {
	return step{typ: events.CapabilityGranted, path: path, opts: o, body: func(e *events.Event) {
		e.Granted = &events.GrantedData{Capability: c}
	}}
}

func revoke(path string, kind events.Kind, name string, o ...stepOpt) step {
	return step{typ: events.CapabilityRevoked, path: path, opts: o, body: func(e *events.Event) {
		e.Revoked = &events.RevokedData{Kind: kind, Name: name}
	}}
}

// replaceGrant is a grant saying replace (schema version 3).
func replaceGrant(path string, c events.Capability, o ...stepOpt) step {
	return step{typ: events.CapabilityGranted, path: path, opts: o, body: func(e *events.Event) {
		e.Granted = &events.GrantedData{Capability: c, Replace: true}
	}}
}

// revokeMembers is a member-level revocation (schema version 3).
func revokeMembers(path string, kind events.Kind, name string, members []string, o ...stepOpt) step {
	return step{typ: events.CapabilityRevoked, path: path, opts: o, body: func(e *events.Event) {
		e.Revoked = &events.RevokedData{Kind: kind, Name: name, Members: members}
	}}
}

func defineTask(path string, t events.TaskDef, o ...stepOpt) step {
	return step{typ: events.TaskDefined, path: path, opts: o, body: func(e *events.Event) {
		e.Task = &events.TaskData{Task: t}
	}}
}

func retire(path, reason string, o ...stepOpt) step {
	return step{typ: events.AgentRetired, path: path, opts: o, body: func(e *events.Event) {
		e.Retired = &events.RetiredData{Reason: reason}
	}}
}

func migrate(to string, def *events.RootDef, o ...stepOpt) step {
	return step{typ: events.RootMigrated, opts: o, body: func(e *events.Event) {
		e.Migration = &events.MigratedData{To: to, Reason: "new release", Def: def}
	}}
}

// raw is a message body given as bytes, on the subject of path.
func raw(path string, b []byte) step { return step{raw: b, rawSubject: path} }

// convKey is a fixed user nkey made from one seed byte.
func convKey(b byte) nkeys.KeyPair {
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteUser, bytes.Repeat([]byte{b}, 32))
	if err != nil {
		panic(err)
	}
	return kp
}

func pubKey(kp nkeys.KeyPair) string {
	p, err := kp.PublicKey()
	if err != nil {
		panic(err)
	}
	return p
}

// convRoot is the root of most cases: the math and io modules, one task.
func convRoot() events.RootDef {
	return events.RootDef{
		Name:   "architect",
		Primer: "You build specialists.",
		Capabilities: []events.Capability{
			{Kind: events.KindModule, Name: "math", Include: []string{"sin", "cos", "pi", "sqrt"}},
			{Kind: events.KindModule, Name: "io"},
			{Kind: events.KindFunc, Name: "search", Visibility: events.VisibilityLow},
		},
		Tasks: []events.TaskDef{convTask("create_specialist")},
	}
}

func convTask(name string) events.TaskDef {
	return events.TaskDef{
		Name: name,
		Doc:  "Do " + name + ".",
		Input: events.Schema{Type: "object", Fields: []events.Field{
			{Name: "text", Schema: events.Schema{Type: "string"}, Required: true, Doc: "the input"},
			{Name: "limits", Schema: events.Schema{Type: "array", Items: &events.Schema{Type: "integer"}}},
		}},
		Output: events.Schema{Type: "any"},
	}
}

func mathCap(include ...string) events.Capability {
	return events.Capability{Kind: events.KindModule, Name: "math", Include: include}
}

// encodeMsgpack is a plain msgpack encoding of v (wire keys, struct order).
func encodeMsgpack(v any) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// wireShape renders v as the generic value its msgpack encoding decodes to:
// wire keys, absent optional keys left out, nil and empty lists apart.
func wireShape(v any) any {
	var out any
	if err := msgpack.Unmarshal(encodeMsgpack(v), &out); err != nil {
		panic(err)
	}
	return out
}

func wireMap(v any) map[string]any {
	m, _ := wireShape(v).(map[string]any)
	return m
}

// canonicalDef returns the canonical encoding of a root definition, the
// bytes its fingerprint hashes.
func canonicalDef(d events.RootDef) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(d.Canonical()); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// generate builds a case's messages, folding them as it goes (prev is the
// agent's last applied hash at that point), and returns the vector file.
func (c convCase) generate(t *testing.T) vecFile {
	t.Helper()
	def := convRoot()
	root := def.Fingerprint()
	for _, s := range c.steps {
		if s.typ == events.RootRegistered {
			e := &events.Event{}
			s.body(e)
			root = e.Registered.Def.Fingerprint()
			break
		}
	}
	reg := projector.New(root)
	var trusted []string
	if len(c.trust) > 0 {
		for _, k := range c.trust {
			trusted = append(trusted, pubKey(k))
		}
		tr, err := projector.NewTrust(trusted)
		require.NoError(t, err)
		reg.SetTrust(tr)
		slices.Sort(trusted)
	}
	version := c.version
	if version == 0 {
		version = 2
	}
	var msgs []vecMessage
	for i, s := range c.steps {
		seq := uint64(i + 1)
		m := vecMessage{Seq: seq}
		if s.raw != nil || s.typ == "" {
			m.Subject = events.Subject(conformancePrefix, root, s.rawSubject)
			m.Headers = map[string]string{"Nats-Msg-Id": fmt.Sprintf("raw-%d", seq)}
			m.Data = base64.StdEncoding.EncodeToString(s.raw)
		} else {
			e := &events.Event{
				ID: stepID(seq), Type: s.typ, Version: version, Root: root, Path: s.path,
				Time: 1718000000000000000 + int64(seq), Actor: "user:alice", Correlation: "corr-" + strconv.FormatUint(seq, 10),
				Prev: reg.LastHash(s.path),
			}
			s.body(e)
			sc := &stepCtx{e: e, subject: events.Subject(conformancePrefix, root, s.path)}
			for _, o := range s.opts {
				o(sc)
			}
			if sc.prevSeq > 0 {
				b, _ := base64.StdEncoding.DecodeString(msgs[sc.prevSeq-1].Data)
				e.Prev = events.Hash(b)
			}
			var data []byte
			var err error
			switch {
			case sc.unchecked:
				data = encodeMsgpack(e)
			case sc.key != nil:
				data, err = events.EncodeSigned(e, sc.key)
			default:
				data, err = events.Encode(e)
			}
			if sc.reencode != nil {
				m := wireMap(e)
				sc.reencode(m)
				data = encodeMsgpack(m)
			}
			require.NoError(t, err, "case %s step %d", c.name, seq)
			if sc.tamper != nil {
				data = sc.tamper(data)
			}
			m.Subject = sc.subject
			m.Headers = map[string]string{
				"Nats-Msg-Id":      e.ID,
				"Agentreg-Type":    string(e.Type),
				"Agentreg-Version": strconv.FormatUint(e.Version, 10),
			}
			m.Data = base64.StdEncoding.EncodeToString(data)
		}
		data, _ := base64.StdEncoding.DecodeString(m.Data)
		describeMessage(&m, data)
		reg.Apply(events.Record{Seq: seq, Subject: m.Subject, Data: data})
		msgs = append(msgs, m)
	}
	f := vecFile{
		Name: c.name, Description: c.doc, SubjectPrefix: conformancePrefix, Root: root,
		TrustedSigners: trusted, Messages: msgs,
	}
	f.Registry, f.Violations = registryView(t, reg)
	for i := range f.Messages {
		f.Messages[i].Result = resultOf(f.Violations, f.Messages[i].Seq)
	}
	return f
}

// describeMessage fills what a reader makes of one message's bytes on their
// own: decoded event, hash, signature validity, definitions' fingerprints.
func describeMessage(m *vecMessage, data []byte) {
	m.Hash = events.Hash(data)
	e, err := events.Decode(data)
	if err != nil {
		m.DecodeError = projector.CodeOf(err)
		return
	}
	m.Event = wireMap(e)
	switch err := events.VerifyStored(data, e); {
	case err == nil:
		m.Signature = "valid"
	case err == events.ErrUnsigned:
		m.Signature = "unsigned"
	default:
		m.Signature = "bad"
	}
	if payload, ok := events.SignedPayload(data); ok && e.Sig != "" {
		m.SignedPayload = base64.StdEncoding.EncodeToString(payload)
	}
	var def *events.RootDef
	switch {
	case e.Registered != nil:
		def = &e.Registered.Def
	case e.Migration != nil && e.Migration.Def != nil:
		def = e.Migration.Def
	}
	if def != nil {
		m.Definition = &vecDef{Fingerprint: def.Fingerprint(), Canonical: base64.StdEncoding.EncodeToString(canonicalDef(*def))}
	}
	m.Contracts = contractsOf(e)
}

// contractsOf returns the contract digest of every task definition the
// event carries, by task name (nil when it carries none). A body naming a
// task twice (refused by the fold) gives the last definition's digest.
func contractsOf(e *events.Event) map[string]string {
	var tasks []events.TaskDef
	switch {
	case e.Registered != nil:
		tasks = e.Registered.Def.Tasks
	case e.Created != nil:
		tasks = e.Created.Tasks
	case e.Task != nil:
		tasks = []events.TaskDef{e.Task.Task}
	case e.Migration != nil && e.Migration.Def != nil:
		tasks = e.Migration.Def.Tasks
	}
	if len(tasks) == 0 {
		return nil
	}
	out := make(map[string]string, len(tasks))
	for _, t := range tasks {
		out[t.Name] = t.Contract()
	}
	return out
}

func resultOf(vs []vecViol, seq uint64) string {
	for _, v := range vs {
		if v.Seq == seq {
			return v.Code
		}
	}
	return "applied"
}

// registryView renders a registry as the vectors expect it.
func registryView(t *testing.T, reg *projector.Registry) (vecRegistry, []vecViol) {
	t.Helper()
	out := vecRegistry{Registered: reg.Def != nil, RootHash: reg.RootHash, MigratedTo: reg.MigratedTo, Agents: []vecAgent{}}
	if reg.Def != nil {
		out.Def = wireMap(reg.Def)
	}
	for _, p := range reg.Paths() {
		a := reg.Agents[p]
		va := vecAgent{
			Path: p, Parent: a.Parent(), Primer: a.Primer, Retired: a.Retired, RetiredSeq: a.RetiredSeq,
			CreatedSeq: a.CreatedSeq, LastHash: a.LastHash, Caps: []any{}, Effective: []vecEffective{}, Tasks: []any{},
		}
		keys := make([]string, 0, len(a.Capabilities))
		for k := range a.Capabilities {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			g, _ := reg.Grant(p, k) // as it stands: narrowed by the revocations after it
			va.Caps = append(va.Caps, wireShape(g.Capability))
			if len(g.Revoked) > 0 {
				if va.Revoked == nil {
					va.Revoked = map[string][]string{}
				}
				va.Revoked[k] = slices.Clone(g.Revoked)
			}
		}
		names := make([]string, 0, len(a.Tasks))
		for n := range a.Tasks {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			va.Tasks = append(va.Tasks, wireShape(a.Tasks[n]))
		}
		if reg.Def != nil {
			effs, err := reg.Effective(p)
			require.NoError(t, err)
			for _, e := range effs {
				c, exact := e.Intersected()
				va.Effective = append(va.Effective, vecEffective{Cap: wireMap(c), Exact: exact})
			}
		}
		out.Agents = append(out.Agents, va)
	}
	h, err := reg.StateHash()
	require.NoError(t, err)
	out.StateHash = h
	viols := []vecViol{}
	for _, v := range reg.Violations {
		viols = append(viols, vecViol{Seq: v.Seq, Code: v.Code, ID: v.EventID, Path: v.Path})
	}
	return out, viols
}

func marshalVector(f vecFile) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(f); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func TestConformance(t *testing.T) {
	cases := conformanceCases()
	seen := map[string]bool{}
	for _, c := range cases {
		require.False(t, seen[c.name], "case %s defined twice", c.name)
		seen[c.name] = true
		file := filepath.Join(conformanceDir, c.name+".json")
		t.Run("generate/"+c.name, func(t *testing.T) {
			got := marshalVector(c.generate(t))
			if *update {
				require.NoError(t, os.MkdirAll(conformanceDir, 0o755))
				require.NoError(t, os.WriteFile(file, got, 0o644))
				return
			}
			want, err := os.ReadFile(file)
			require.NoError(t, err, "run go test ./events/ -run TestConformance -update")
			require.Equal(t, string(want), string(got), "%s is not what its case generates: run with -update and review the diff", file)
		})
	}
	// Every file, on its own, as another implementation reads it.
	files, err := filepath.Glob(filepath.Join(conformanceDir, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		if !*update {
			require.True(t, seen[name], "%s has no case definition", file)
		}
		t.Run("run/"+name, func(t *testing.T) { runVector(t, file) })
	}
}

// runVector checks one vector file with nothing but its contents.
func runVector(t *testing.T, file string) {
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	var f vecFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	require.NoError(t, dec.Decode(&f))
	reg := projector.New(f.Root)
	if len(f.TrustedSigners) > 0 {
		tr, err := projector.NewTrust(f.TrustedSigners)
		require.NoError(t, err)
		reg.SetTrust(tr)
	}
	for _, want := range f.Messages {
		data, err := base64.StdEncoding.DecodeString(want.Data)
		require.NoError(t, err, "seq %d: data", want.Seq)
		sum := sha256.Sum256(data)
		require.Equal(t, want.Hash, hex.EncodeToString(sum[:]), "seq %d: hash", want.Seq)
		var got vecMessage
		describeMessage(&got, data)
		require.Equal(t, want.DecodeError, got.DecodeError, "seq %d: decode error", want.Seq)
		require.Equal(t, jsonOf(t, want.Event), jsonOf(t, got.Event), "seq %d: decoded event", want.Seq)
		require.Equal(t, want.Signature, got.Signature, "seq %d: signature", want.Seq)
		require.Equal(t, want.SignedPayload, got.SignedPayload, "seq %d: signed payload", want.Seq)
		require.Equal(t, want.Definition, got.Definition, "seq %d: definition", want.Seq)
		require.Equal(t, want.Contracts, got.Contracts, "seq %d: contracts", want.Seq)
		if got.Definition != nil {
			c, _ := base64.StdEncoding.DecodeString(got.Definition.Canonical)
			sum := sha256.Sum256(c)
			require.Equal(t, got.Definition.Fingerprint, hex.EncodeToString(sum[:]), "seq %d: fingerprint is SHA-256 of the canonical bytes", want.Seq)
		}
		reg.Apply(events.Record{Seq: want.Seq, Subject: want.Subject, Data: data})
	}
	gotReg, gotViols := registryView(t, reg)
	require.Equal(t, jsonOf(t, f.Violations), jsonOf(t, gotViols), "violations")
	require.Equal(t, jsonOf(t, f.Registry), jsonOf(t, gotReg), "registry")
	for _, m := range f.Messages {
		require.Equal(t, m.Result, resultOf(gotViols, m.Seq), "seq %d: result", m.Seq)
	}
}

// jsonOf renders v as indented JSON with numbers kept exact, for
// comparison of what a file says with what the code makes.
func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var generic any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&generic))
	out, err := json.MarshalIndent(generic, "", " ")
	require.NoError(t, err)
	return string(out)
}
