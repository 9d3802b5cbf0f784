package agent_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/agent"
)

// A task ref round-trips through its text form, and so through JSON and
// msgpack inside a struct, as the text form (a string).
func TestTaskRefRoundTrip(t *testing.T) {
	fp := architectDef().Fingerprint()
	for _, tc := range []struct {
		name string
		ref  agent.TaskRef
		text string
	}{
		{"Nested", agent.TaskRef{Root: agent.RootID(fp), Path: "math_solver/equation_parser", Task: "parse_equation"},
			fp + "/math_solver/equation_parser#parse_equation"},
		{"TopLevel", agent.TaskRef{Root: agent.RootID(fp), Path: "math_solver", Task: "solve_math_problem"},
			fp + "/math_solver#solve_math_problem"},
		{"Root", agent.TaskRef{Root: agent.RootID(fp), Task: "create_specialist"}, fp + "/#create_specialist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, tc.ref.Validate())
			require.Equal(t, tc.text, tc.ref.String())
			require.Equal(t, agent.AgentRef{Root: agent.RootID(fp), Path: tc.ref.Path}, tc.ref.Agent())

			t.Run("Text", func(t *testing.T) {
				b, err := tc.ref.MarshalText()
				require.NoError(t, err)
				require.Equal(t, tc.text, string(b))
				var got agent.TaskRef
				require.NoError(t, got.UnmarshalText(b))
				require.Equal(t, tc.ref, got)
				parsed, err := agent.ParseTaskRef(tc.text)
				require.NoError(t, err)
				require.Equal(t, tc.ref, parsed)
			})

			type envelope struct {
				Ref   agent.TaskRef   `json:"ref" msgpack:"ref"`
				Ptr   *agent.TaskRef  `json:"ptr" msgpack:"ptr"`
				Refs  []agent.TaskRef `json:"refs" msgpack:"refs"`
				Other string          `json:"other" msgpack:"other"`
			}
			ref := tc.ref
			in := envelope{Ref: tc.ref, Ptr: &ref, Refs: []agent.TaskRef{tc.ref, tc.ref}, Other: "x"}

			t.Run("JSON", func(t *testing.T) {
				b, err := json.Marshal(in)
				require.NoError(t, err)
				var raw map[string]any
				require.NoError(t, json.Unmarshal(b, &raw))
				require.Equal(t, tc.text, raw["ref"], "the ref is not encoded as its text form")
				var out envelope
				require.NoError(t, json.Unmarshal(b, &out))
				require.Equal(t, in, out)
			})

			t.Run("Msgpack", func(t *testing.T) {
				b, err := msgpack.Marshal(in)
				require.NoError(t, err)
				var raw struct {
					Ref string `msgpack:"ref"`
				}
				require.NoError(t, msgpack.Unmarshal(b, &raw))
				require.Equal(t, tc.text, raw.Ref, "the ref is not encoded as its text form")
				var out envelope
				require.NoError(t, msgpack.Unmarshal(b, &out))
				require.Equal(t, in, out)
			})
		})
	}

	t.Run("ErrInvalidName", func(t *testing.T) {
		// An invalid ref is not encoded, and bad text is not decoded.
		_, err := json.Marshal(struct{ Ref agent.TaskRef }{agent.TaskRef{Root: agent.RootID(fp), Path: "a.b", Task: "t"}})
		require.ErrorIs(t, err, agent.ErrInvalidName)
		_, err = msgpack.Marshal(struct{ Ref agent.TaskRef }{})
		require.ErrorIs(t, err, agent.ErrInvalidName)

		var out struct{ Ref agent.TaskRef }
		err = json.Unmarshal([]byte(`{"Ref":"`+fp+`/a.b#t"}`), &out)
		require.ErrorIs(t, err, agent.ErrInvalidName)
		b, err := msgpack.Marshal(struct{ Ref string }{fp + "/x#a b"})
		require.NoError(t, err)
		require.ErrorIs(t, msgpack.Unmarshal(b, &out), agent.ErrInvalidName)
	})
}
