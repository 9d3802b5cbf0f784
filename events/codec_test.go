package events_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/oklog/ulid/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/events"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// architectFingerprint pins RootDef.Fingerprint of architectDef. If it
// changes, every root in every deployed stream changes identity: that is a
// wire break, not a refactoring.
const architectFingerprint = "bc44b3f5dbcd4ed6284ca9c6b58968f2cafd1b9c3c0c1aeb5809f7a9e2b9bcec"

// architectDef is a fixed root definition: an architect with the math module
// and a create_specialist task.
func architectDef() events.RootDef {
	return events.RootDef{
		Name:   "architect",
		Primer: "You build specialists.",
		Capabilities: []events.Capability{{
			Kind:       events.KindModule,
			Name:       "math",
			Include:    []string{"sin", "cos", "pi"},
			Visibility: events.VisibilityHigh,
		}},
		Tasks: []events.TaskDef{{
			Name: "create_specialist",
			Doc:  "Create a specialist agent for one domain.",
			Input: events.Schema{Type: "object", Fields: []events.Field{
				{Name: "name", Schema: events.Schema{Type: "string"}, Required: true, Doc: "path segment of the new agent"},
				{Name: "modules", Schema: events.Schema{Type: "array", Items: &events.Schema{Type: "string"}}},
			}},
			Output: events.Schema{Type: "string"},
		}},
	}
}

// fixedID returns a valid ULID that depends only on n.
func fixedID(n uint64) string {
	return ulid.MustNew(1718000000000+n, bytes.NewReader(make([]byte, 16))).String()
}

// goldenEvents returns one schema version 1 event of each type (keyed by
// the type), version 2 events (keyed by type + ".v2") and version 3 events
// (type + ".v3": JSON Schema, replace, members), with fixed ids,
// times and fingerprints, keyed by the golden file's base name. The
// version 1 vectors were written by version 1 code: they must stay byte for
// byte what they are and keep decoding.
func goldenEvents() map[string]*events.Event {
	root := architectDef().Fingerprint()
	version := uint64(1)
	env := func(n uint64, typ events.Type, path, prev string) *events.Event {
		return &events.Event{
			ID: fixedID(n), Type: typ, Version: version, Root: root, Path: path,
			Time: 1718000000000000000 + int64(n), Actor: "architect", Correlation: "corr-" + fixedID(0),
			Prev: prev,
		}
	}
	prev := strings.Repeat("ab", 32)
	out := map[string]*events.Event{}
	e := env(1, events.RootRegistered, "", "")
	e.Registered = &events.RootData{Def: architectDef()}
	out["RootRegistered"] = e

	e = env(2, events.AgentCreated, "math_solver", "")
	e.Created = &events.CreatedData{Primer: "You solve equations."}
	out["AgentCreated"] = e

	e = env(3, events.CapabilityGranted, "math_solver", prev)
	e.Granted = &events.GrantedData{Capability: events.Capability{
		Kind: events.KindModule, Name: "math", Include: []string{"sin", "pi"}, Exclude: []string{"_*"},
		Visibility: events.VisibilityMedium,
	}}
	out["CapabilityGranted"] = e

	e = env(4, events.CapabilityRevoked, "math_solver", prev)
	e.Revoked = &events.RevokedData{Kind: events.KindModule, Name: "math"}
	out["CapabilityRevoked"] = e

	e = env(5, events.TaskDefined, "math_solver/equation_parser", prev)
	e.Task = &events.TaskData{Task: events.TaskDef{
		Name: "parse",
		Doc:  "Parse an equation.",
		Input: events.Schema{Type: "object", Fields: []events.Field{
			{Name: "text", Schema: events.Schema{Type: "string"}, Required: true},
		}},
		Output: events.Schema{Type: "array", Items: &events.Schema{Type: "number"}},
	}}
	out["TaskDefined"] = e

	e = env(6, events.AgentRetired, "math_solver", prev)
	e.Retired = &events.RetiredData{Reason: "replaced"}
	out["AgentRetired"] = e

	e = env(7, events.RootMigrated, "", prev)
	e.Migration = &events.MigratedData{To: strings.Repeat("0f", 32), Reason: "new primer"}
	out["RootMigrated"] = e

	// Version 2: a creation carries its grants and tasks.
	version = 2
	e = env(8, events.AgentCreated, "math_solver", "")
	e.Created = &events.CreatedData{
		Primer: "You solve equations.",
		Capabilities: []events.Capability{
			{Kind: events.KindModule, Name: "math", Include: []string{"pi", "sin"}, Exclude: []string{"_*"}, Visibility: events.VisibilityMedium},
			{Kind: events.KindFunc, Name: "print", Include: []string{"*"}, Exclude: []string{"_*"}, Visibility: events.VisibilityHigh},
		},
		Tasks: []events.TaskDef{
			{
				Name: "solve",
				Doc:  "Solve an equation.",
				Input: events.Schema{Type: "object", Fields: []events.Field{
					{Name: "equation", Schema: events.Schema{Type: "string"}, Required: true, Doc: "in infix notation"},
				}},
				Output: events.Schema{Type: "array", Items: &events.Schema{Type: "number"}},
			},
			{Name: "explain", Input: events.Schema{Type: "object"}, Output: events.Schema{Type: "string"}},
		},
	}
	out["AgentCreated.v2"] = e

	e = env(9, events.CapabilityGranted, "math_solver", prev)
	e.Granted = &events.GrantedData{Capability: events.Capability{
		Kind: events.KindType, Name: "Matrix", Include: []string{"*"}, Exclude: []string{"_*"},
		Visibility: events.VisibilityLow,
	}}
	out["CapabilityGranted.v2"] = e

	e = env(10, events.AgentRetired, "math_solver", prev)
	e.Retired = &events.RetiredData{Reason: "replaced"}
	out["AgentRetired.v2"] = e

	// Version 3: a task definition carries JSON Schema.
	version = 3
	e = env(11, events.TaskDefined, "math_solver/equation_parser", prev)
	e.Task = &events.TaskData{Task: events.TaskDef{
		Name: "parse",
		Doc:  "Parse an equation.",
		InputSchema: events.MustJSONSchema(`{"type":"object","properties":{"text":{"type":"string","minLength":1},` +
			`"mode":{"enum":["linear","quadratic"]}},"required":["text"],"additionalProperties":false}`),
		OutputSchema: events.MustJSONSchema(`{"type":"array","items":{"type":"number"}}`),
	}}
	out["TaskDefined.v3"] = e

	// Version 3: a grant replacing the one held, a member-level revoke.
	e = env(12, events.CapabilityGranted, "math_solver", prev)
	e.Granted = &events.GrantedData{Capability: events.Capability{
		Kind: events.KindModule, Name: "math", Include: []string{"cos", "pi", "sin"}, Exclude: []string{"_*"},
		Visibility: events.VisibilityMedium,
	}, Replace: true}
	out["CapabilityGranted.v3"] = e

	e = env(13, events.CapabilityRevoked, "math_solver", prev)
	e.Revoked = &events.RevokedData{Kind: events.KindModule, Name: "math", Members: []string{"sin", "cos"}}
	out["CapabilityRevoked.v3"] = e
	return out
}

// goldenType is the event type a golden vector's name stands for.
func goldenType(name string) string {
	t, _, _ := strings.Cut(name, ".")
	return t
}

// rawEncode encodes an event without validating it, as a buggy or hostile
// writer could.
func rawEncode(t testing.TB, e any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	require.NoError(t, enc.Encode(e))
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	evs := goldenEvents()
	require.Len(t, evs, 13, "one golden version 1 event per type, three version 2, three version 3")
	for name, e := range evs {
		t.Run(name, func(t *testing.T) {
			require.Equal(t, goldenType(name), string(e.Type))
			b, err := events.Encode(e)
			require.NoError(t, err)
			got, err := events.Decode(b)
			require.NoError(t, err)
			assert.Equal(t, e, got)
			// Encoding is deterministic.
			b2, err := events.Encode(got)
			require.NoError(t, err)
			assert.Equal(t, b, b2)
		})
	}
}

func TestGolden(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	if *update {
		require.NoError(t, os.MkdirAll(dir, 0o755))
	}
	for name, e := range goldenEvents() {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(dir, name+".msgpack")
			got, err := events.Encode(e)
			require.NoError(t, err)
			if *update {
				require.NoError(t, os.WriteFile(file, got, 0o644))
			}
			want, err := os.ReadFile(file)
			require.NoError(t, err, "run go test -update to write it")
			assert.Equal(t, want, got, "encoding of %s changed: the wire format is pinned by %s", name, file)
			dec, err := events.Decode(want)
			require.NoError(t, err)
			assert.Equal(t, e, dec)
		})
	}
	t.Run("no stray files", func(t *testing.T) {
		files, err := filepath.Glob(filepath.Join(dir, "*.msgpack"))
		require.NoError(t, err)
		assert.Len(t, files, len(goldenEvents()))
	})
}

func TestFingerprint(t *testing.T) {
	t.Run("golden", func(t *testing.T) {
		def := architectDef()
		require.NoError(t, def.Validate())
		got := def.Fingerprint()
		assert.Equal(t, architectFingerprint, got)
		assert.NoError(t, events.ValidateFingerprint(got))
		// The canonical form hashes the same.
		assert.Equal(t, got, def.Canonical().Fingerprint())
	})

	two := func() events.RootDef {
		d := architectDef()
		d.Capabilities = append(d.Capabilities,
			events.Capability{Kind: events.KindFunc, Name: "print"},
			events.Capability{Kind: events.KindType, Name: "Matrix", Visibility: events.VisibilityLow})
		d.Tasks = append(d.Tasks, events.TaskDef{
			Name: "retire_specialist", Input: events.Schema{Type: "object"}, Output: events.Schema{Type: "boolean"},
		})
		return d
	}
	base := two().Fingerprint()
	require.NotEqual(t, architectFingerprint, base)

	t.Run("order does not matter", func(t *testing.T) {
		d := two()
		slices.Reverse(d.Capabilities)
		slices.Reverse(d.Tasks)
		assert.Equal(t, base, d.Fingerprint())

		d = two()
		d.Capabilities[0].Include = []string{"pi", "sin", "cos", "sin"} // reordered, duplicated
		assert.Equal(t, base, d.Fingerprint())
	})

	t.Run("defaults do not matter", func(t *testing.T) {
		d := two()
		d.Capabilities[1] = events.Capability{
			Kind: events.KindFunc, Name: "print", Include: []string{"*"}, Exclude: []string{"_*"},
			Visibility: events.VisibilityHigh,
		}
		assert.Equal(t, base, d.Fingerprint())
	})

	for name, change := range map[string]func(*events.RootDef){
		"primer":     func(d *events.RootDef) { d.Primer += " " },
		"name":       func(d *events.RootDef) { d.Name = "architect2" },
		"include":    func(d *events.RootDef) { d.Capabilities[0].Include = []string{"sin", "cos"} },
		"exclude":    func(d *events.RootDef) { d.Capabilities[1].Exclude = []string{} },
		"visibility": func(d *events.RootDef) { d.Capabilities[2].Visibility = events.VisibilityMedium },
		"task doc":   func(d *events.RootDef) { d.Tasks[0].Doc = "" },
		"task field": func(d *events.RootDef) { d.Tasks[0].Input.Fields[0].Required = false },
		"no tasks":   func(d *events.RootDef) { d.Tasks = nil },
	} {
		t.Run("changes with "+name, func(t *testing.T) {
			d := two()
			change(&d)
			assert.NotEqual(t, base, d.Fingerprint())
		})
	}
}

func TestHash(t *testing.T) {
	assert.Equal(t, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", events.Hash(nil))
	b, err := events.Encode(goldenEvents()["AgentCreated"])
	require.NoError(t, err)
	h := events.Hash(b)
	assert.NoError(t, events.ValidateFingerprint(h), "a hash has the shape of a fingerprint")
	b[len(b)-1] ^= 1
	assert.NotEqual(t, h, events.Hash(b))
}

func TestDecodeErrors(t *testing.T) {
	valid, err := events.Encode(goldenEvents()["CapabilityGranted"])
	require.NoError(t, err)
	base := func() events.Event { return *goldenEvents()["CapabilityGranted"] }

	withType := base()
	withType.Type = "AgentCloned"
	future := base()
	future.Version = events.SchemaVersion + 1
	maxVersion := base()
	maxVersion.Version = 0xffff
	noVersion := base()
	noVersion.Version = 0
	noID := base()
	noID.ID = ""
	twoBodies := base()
	twoBodies.Created = &events.CreatedData{Primer: "x"}
	wrongBody := base()
	wrongBody.Type = events.AgentCreated
	noBody := base()
	noBody.Granted = nil
	rootWithPath := *goldenEvents()["RootRegistered"]
	rootWithPath.Path = "a"
	badPath := base()
	badPath.Path = "a/../b"
	badRoot := base()
	badRoot.Root = strings.ToUpper(badRoot.Root)

	// A map whose caps array claims 2^20 elements in a few bytes.
	bomb := []byte{0x81, 0xaa}
	bomb = append(bomb, "registered"...)
	bomb = append(bomb, 0x81, 0xa3, 'd', 'e', 'f', 0x81, 0xa4, 'c', 'a', 'p', 's', 0xdd)
	bomb = binary.BigEndian.AppendUint32(bomb, 1<<20)

	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"nil", nil, events.ErrMalformed},
		{"empty", []byte{}, events.ErrMalformed},
		{"text", []byte("hello, world"), events.ErrMalformed},
		{"never used code", []byte{0xc1}, events.ErrMalformed},
		{"msgpack nil", []byte{0xc0}, events.ErrMalformed},
		{"integer", []byte{0x2a}, events.ErrMalformed},
		{"empty map", []byte{0x80}, events.ErrMalformed},
		{"array", rawEncode(t, []any{"id", 1}), events.ErrMalformed},
		{"wrong field type", rawEncode(t, map[string]any{"id": 5, "v": "one"}), events.ErrMalformed},
		{"huge declared string", append([]byte{0x81, 0xa2, 'i', 'd', 0xdb}, 0xff, 0xff, 0xff, 0xff), events.ErrMalformed},
		{"huge declared array", bomb, events.ErrMalformed},
		{"trailing zero", append(slices.Clone(valid), 0), events.ErrMalformed},
		{"two events", append(slices.Clone(valid), valid...), events.ErrMalformed},
		{"unknown type", rawEncode(t, &withType), events.ErrUnknownType},
		{"future version", rawEncode(t, &future), events.ErrFutureVersion},
		{"max version", rawEncode(t, &maxVersion), events.ErrFutureVersion},
		{"no version", rawEncode(t, &noVersion), events.ErrMalformed},
		{"no id", rawEncode(t, &noID), events.ErrMalformed},
		{"two bodies", rawEncode(t, &twoBodies), events.ErrMalformed},
		{"body of another type", rawEncode(t, &wrongBody), events.ErrMalformed},
		{"no body", rawEncode(t, &noBody), events.ErrMalformed},
		{"root event with a path", rawEncode(t, &rootWithPath), events.ErrMalformed},
		{"invalid path", rawEncode(t, &badPath), events.ErrInvalidName},
		{"invalid root", rawEncode(t, &badRoot), events.ErrInvalidName},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := events.Decode(tc.b)
			require.Error(t, err)
			assert.Nil(t, e)
			assert.ErrorIs(t, err, tc.want)
			for _, other := range []error{events.ErrMalformed, events.ErrUnknownType, events.ErrFutureVersion, events.ErrInvalidName} {
				if other != tc.want {
					assert.False(t, errors.Is(err, other), "%v should not wrap %v", err, other)
				}
			}
		})
	}

	t.Run("truncated", func(t *testing.T) {
		for n := range len(valid) {
			_, err := events.Decode(valid[:n])
			require.ErrorIs(t, err, events.ErrMalformed, "prefix of %d of %d bytes", n, len(valid))
		}
	})

	t.Run("every byte flipped", func(t *testing.T) {
		// Never a panic; either an error or an event that validates.
		for i := range valid {
			for _, x := range []byte{0x01, 0x80, 0xff} {
				b := slices.Clone(valid)
				b[i] ^= x
				e, err := events.Decode(b)
				if err == nil {
					require.NoError(t, e.Validate())
				}
			}
		}
	})

	t.Run("Encode refuses what Decode refuses", func(t *testing.T) {
		for _, e := range []*events.Event{&withType, &future, &noVersion, &noID, &twoBodies, &wrongBody, &badPath, &badRoot} {
			_, err := events.Encode(e)
			assert.Error(t, err, "%+v", e)
		}
		_, err := events.Encode(&future)
		assert.ErrorIs(t, err, events.ErrFutureVersion)
	})
}

// TestDecodeBounded pins that hostile lengths and nesting give errors, not
// allocations or recursion proportional to what the bytes claim.
func TestDecodeBounded(t *testing.T) {
	t.Run("declared length allocates nothing", func(t *testing.T) {
		b := []byte{0x81, 0xaa}
		b = append(b, "registered"...)
		b = append(b, 0x81, 0xa3, 'd', 'e', 'f', 0x81, 0xa4, 'c', 'a', 'p', 's', 0xdd)
		b = binary.BigEndian.AppendUint32(b, 1<<20) // 2^20 capabilities of ~100 bytes
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := events.Decode(b)
		runtime.ReadMemStats(&after)
		require.ErrorIs(t, err, events.ErrMalformed)
		assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20), "bytes allocated decoding %d bytes", len(b))
	})

	nested := func(depth int) []byte {
		// A valid event with an unknown key holding depth nested arrays.
		b, err := events.Encode(goldenEvents()["AgentRetired"])
		require.NoError(t, err)
		require.Less(t, b[0], byte(0x8f), "the event is a fixmap")
		b[0]++ // one more key
		b = append(b, 0xa1, 'x')
		b = append(b, bytes.Repeat([]byte{0x91}, depth)...)
		return append(b, 0xc0)
	}
	t.Run("unknown keys are skipped", func(t *testing.T) {
		e, err := events.Decode(nested(100))
		require.NoError(t, err)
		assert.Equal(t, goldenEvents()["AgentRetired"], e)
	})
	t.Run("deep nesting is refused", func(t *testing.T) {
		_, err := events.Decode(nested(100_000)) // under MaxEventBytes
		require.ErrorIs(t, err, events.ErrMalformed)
		assert.Contains(t, err.Error(), "nest deeper")
	})
	t.Run("Encode refuses what is nested too deep", func(t *testing.T) {
		e := *goldenEvents()["TaskDefined"]
		task := e.Task.Task
		s := events.Schema{Type: "string"}
		for range 600 {
			inner := s
			s = events.Schema{Type: "array", Items: &inner}
		}
		task.Output = s
		e.Task = &events.TaskData{Task: task}
		require.NoError(t, e.Validate())
		_, err := events.Encode(&e)
		assert.Error(t, err)
	})
}

// TestVersionDoesNotWrap: a schema version beyond any small integer type is
// refused as a future version, not truncated into a known one.
func TestVersionDoesNotWrap(t *testing.T) {
	e := *goldenEvents()["AgentRetired"]
	e.Version = 65537 // 1 modulo 2^16
	raw, err := msgpack.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	_, err = events.Decode(raw)
	if !errors.Is(err, events.ErrFutureVersion) {
		t.Fatalf("Decode(version 65537) = %v, want ErrFutureVersion", err)
	}
}

// TestCreatedVersions pins how the two schema versions of AgentCreated read:
// a version 2 create carries caps and tasks; a version 1 create that carries
// either is malformed (the keys did not exist in version 1); an empty caps
// or tasks array is the same as none, in both versions.
func TestCreatedVersions(t *testing.T) {
	v2 := goldenEvents()["AgentCreated.v2"]
	v1 := goldenEvents()["AgentCreated"]
	require.Equal(t, uint64(1), v1.Version)
	require.Equal(t, uint64(2), v2.Version)

	t.Run("version 1 with caps or tasks is malformed", func(t *testing.T) {
		for name, change := range map[string]func(*events.CreatedData){
			"caps":  func(c *events.CreatedData) { c.Capabilities = v2.Created.Capabilities },
			"tasks": func(c *events.CreatedData) { c.Tasks = v2.Created.Tasks },
			"both":  func(c *events.CreatedData) { *c = *v2.Created },
		} {
			t.Run(name, func(t *testing.T) {
				e := *v1
				body := *v1.Created
				change(&body)
				e.Created = &body
				_, err := events.Decode(rawEncode(t, &e))
				require.ErrorIs(t, err, events.ErrMalformed)
				assert.Contains(t, err.Error(), "since version 2")
				_, err = events.Encode(&e)
				assert.ErrorIs(t, err, events.ErrMalformed, "Encode refuses it too")
				e.Version = 2
				_, err = events.Encode(&e)
				assert.NoError(t, err, "the same body as version 2")
			})
		}
	})

	t.Run("empty arrays are absent", func(t *testing.T) {
		for _, version := range []uint64{1, 2} {
			// created: {primer, caps: [], tasks: []} written by hand (the
			// encoder omits empty arrays).
			e := *v1
			e.Version = version
			plain := rawEncode(t, map[string]any{
				"id": e.ID, "type": string(e.Type), "v": e.Version, "root": e.Root, "path": e.Path,
				"time": e.Time, "actor": e.Actor, "corr": e.Correlation, "prev": e.Prev,
				"created": map[string]any{"primer": e.Created.Primer, "caps": []any{}, "tasks": []any{}},
			})
			got, err := events.Decode(plain)
			require.NoError(t, err, "version %d", version)
			assert.Nil(t, got.Created.Capabilities)
			assert.Nil(t, got.Created.Tasks)
			assert.Equal(t, &e, got)
		}
	})

	t.Run("fast decoder agrees with reflection", func(t *testing.T) {
		b, err := events.Encode(v2)
		require.NoError(t, err)
		type plain events.Event // no DecodeMsgpack: msgpack decodes it by reflection
		var want plain
		require.NoError(t, msgpack.Unmarshal(b, &want))
		got, err := events.Decode(b)
		require.NoError(t, err)
		assert.Equal(t, events.Event(want), *got)
		assert.Len(t, got.Created.Capabilities, 2)
		assert.Len(t, got.Created.Tasks, 2)
	})

	t.Run("wrong shapes are malformed", func(t *testing.T) {
		base := map[string]any{
			"id": v2.ID, "type": string(v2.Type), "v": v2.Version, "root": v2.Root, "path": v2.Path,
			"time": v2.Time, "actor": v2.Actor, "corr": v2.Correlation, "prev": v2.Prev,
		}
		for name, created := range map[string]any{
			"caps not an array":  map[string]any{"caps": "module:math"},
			"tasks not an array": map[string]any{"tasks": map[string]any{"name": "x"}},
			"cap not a map":      map[string]any{"caps": []any{"math"}},
			"task not a map":     map[string]any{"tasks": []any{1}},
			"cap field wrong":    map[string]any{"caps": []any{map[string]any{"include": "sin"}}},
			"task schema wrong":  map[string]any{"tasks": []any{map[string]any{"input": []any{}}}},
		} {
			t.Run(name, func(t *testing.T) {
				m := maps.Clone(base)
				m["created"] = created
				_, err := events.Decode(rawEncode(t, m))
				require.ErrorIs(t, err, events.ErrMalformed)
			})
		}
		t.Run("caps declared large", func(t *testing.T) {
			// created: {caps: array of 2^31 declared, no elements}
			m := maps.Clone(base)
			m["created"] = map[string]any{"x": nil}
			b := rawEncode(t, m)
			i := bytes.Index(b, []byte{0x81, 0xa1, 'x', 0xc0})
			require.GreaterOrEqual(t, i, 0)
			bomb := append(slices.Clone(b[:i]), 0x81, 0xa4, 'c', 'a', 'p', 's', 0xdd, 0x7f, 0xff, 0xff, 0xff)
			bomb = append(bomb, b[i+4:]...)
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := events.Decode(bomb)
			runtime.ReadMemStats(&after)
			require.ErrorIs(t, err, events.ErrMalformed)
			assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(8<<20))
		})
	})

	t.Run("every byte flipped", func(t *testing.T) {
		valid, err := events.Encode(v2)
		require.NoError(t, err)
		for i := range valid {
			for _, x := range []byte{0x01, 0x80, 0xff} {
				b := slices.Clone(valid)
				b[i] ^= x
				if e, err := events.Decode(b); err == nil {
					require.NoError(t, e.Validate())
				}
			}
		}
		for n := range len(valid) {
			_, err := events.Decode(valid[:n])
			require.ErrorIs(t, err, events.ErrMalformed, "prefix of %d of %d bytes", n, len(valid))
		}
	})
}
