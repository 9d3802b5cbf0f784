package events_test

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/events"
)

// TestCapabilityJSON: the JSON keys are the wire keys, and an explicit
// empty exclude survives a round trip (it excludes nothing; a nil one
// excludes "_*").
func TestCapabilityJSON(t *testing.T) {
	t.Run("EmptyExcludeStaysEmpty", func(t *testing.T) {
		c := events.Capability{Kind: events.KindModule, Name: "math", Include: []string{"*"}, Exclude: []string{}, Visibility: events.VisibilityLow}
		b, err := json.Marshal(c)
		require.NoError(t, err)
		assert.JSONEq(t, `{"kind":"module","name":"math","include":["*"],"exclude":[],"vis":"low"}`, string(b))
		var got events.Capability
		require.NoError(t, json.Unmarshal(b, &got))
		require.NotNil(t, got.Exclude, "an empty exclude read back as nil would exclude _*")
		assert.Empty(t, got.Exclude)
		assert.True(t, got.Allows("_private"), "the round-tripped capability still allows _private")
		assert.Equal(t, c.Normalized(), got.Normalized())
	})
	t.Run("NilExcludeStaysDefault", func(t *testing.T) {
		c := events.Capability{Kind: events.KindFunc, Name: "search"}
		b, err := json.Marshal(c)
		require.NoError(t, err)
		assert.JSONEq(t, `{"kind":"fn","name":"search"}`, string(b))
		var got events.Capability
		require.NoError(t, json.Unmarshal(b, &got))
		assert.Nil(t, got.Exclude)
		assert.False(t, got.Allows("_private"))
	})
	t.Run("RootDefCaps", func(t *testing.T) {
		b, err := json.Marshal(architectDef())
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		assert.Contains(t, m, "caps")
		assert.NotContains(t, m, "capabilities")
		var got events.RootDef
		require.NoError(t, json.Unmarshal(b, &got))
		assert.Equal(t, architectFingerprint, got.Fingerprint())
	})
}

// TestEventJSONRoundTrip: every event of the golden and conformance
// vectors survives JSON (encoding to the same bytes after it), and every
// JSON key is the wire key at the same place.
func TestEventJSONRoundTrip(t *testing.T) {
	var evs []*events.Event
	for _, e := range goldenEvents() {
		evs = append(evs, e)
	}
	files, err := filepath.Glob(filepath.Join(conformanceDir, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		b, err := os.ReadFile(file)
		require.NoError(t, err)
		var f vecFile
		require.NoError(t, json.Unmarshal(b, &f))
		for _, m := range f.Messages {
			data, err := base64.StdEncoding.DecodeString(m.Data)
			require.NoError(t, err)
			if e, err := events.Decode(data); err == nil && canonicalSchemas(e) {
				evs = append(evs, e)
			}
		}
	}
	require.Greater(t, len(evs), 100)
	for _, e := range evs {
		want, err := events.Encode(e)
		require.NoError(t, err)
		j, err := json.Marshal(e)
		require.NoError(t, err)
		var back events.Event
		require.NoError(t, json.Unmarshal(j, &back), "%s", j)
		got, err := events.Encode(&back)
		require.NoError(t, err)
		require.Equal(t, want, got, "event %s changed through JSON:\n%s", e.ID, j)

		var jm, wm any
		require.NoError(t, json.Unmarshal(j, &jm))
		require.NoError(t, msgpack.Unmarshal(want, &wm))
		assertKeysOnWire(t, e.ID, "", jm, wm)
	}
}

// assertKeysOnWire checks that every key of the JSON value j is a key of
// the wire value w at the same place.
func assertKeysOnWire(t *testing.T, id, at string, j, w any) {
	t.Helper()
	switch jv := j.(type) {
	case map[string]any:
		if strings.HasSuffix(at, "input_schema.") || strings.HasSuffix(at, "output_schema.") {
			// A task's JSON Schema: an object in JSON, its canonical
			// JSON text on the wire (docs/wire.md).
			text, ok := w.(string)
			require.True(t, ok, "event %s: %s is not JSON text on the wire", id, at)
			require.JSONEq(t, text, mustJSON(t, jv), "event %s: %s differs from the wire's text", id, at)
			return
		}
		wv, ok := w.(map[string]any)
		require.True(t, ok, "event %s: %s is a map in JSON, not on the wire", id, at)
		for k, v := range jv {
			require.Contains(t, wv, k, "event %s: JSON key %s%s is not a wire key", id, at, k)
			assertKeysOnWire(t, id, at+k+".", v, wv[k])
		}
	case []any:
		wv, ok := w.([]any)
		require.True(t, ok, "event %s: %s is a list in JSON, not on the wire", id, at)
		require.Len(t, wv, len(jv))
		for i := range jv {
			assertKeysOnWire(t, id, at, jv[i], wv[i])
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// canonicalSchemas reports whether every JSON Schema the event's task
// definitions carry is canonical text. One that is not is refused by the
// fold (malformed), and its JSON form, the schema as an object, comes back
// canonicalized: it cannot survive JSON byte for byte, and need not.
func canonicalSchemas(e *events.Event) bool {
	var tasks []events.TaskDef
	switch {
	case e.Task != nil:
		tasks = append(tasks, e.Task.Task)
	case e.Created != nil:
		tasks = e.Created.Tasks
	case e.Registered != nil:
		tasks = e.Registered.Def.Tasks
	case e.Migration != nil && e.Migration.Def != nil:
		tasks = e.Migration.Def.Tasks
	}
	for _, t := range tasks {
		for _, s := range []events.JSONSchema{t.InputSchema, t.OutputSchema} {
			if s == "" {
				continue
			}
			c, err := events.CanonicalJSON([]byte(s))
			if err != nil || string(c) != string(s) {
				return false
			}
		}
	}
	return true
}
