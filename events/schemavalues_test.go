package events_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
)

// A schema of many tiny subschemas is refused before the validator
// compiles it (compile time grows faster than linearly with them).
func TestJSONSchemaValuesBounded(t *testing.T) {
	props := func(n int) []byte {
		var b strings.Builder
		b.WriteString(`{"type":"object","properties":{`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"p%d":{}`, i)
		}
		b.WriteString(`}}`)
		return []byte(b.String())
	}
	// The document itself and "properties" are two objects.
	_, err := events.ParseJSONSchema(props(events.MaxJSONSchemaValues - 2))
	require.NoError(t, err)
	_, err = events.ParseJSONSchema(props(events.MaxJSONSchemaValues - 1))
	require.Error(t, err)
	require.True(t, errors.Is(err, events.ErrTooLarge), "%v", err)
	require.Contains(t, err.Error(), "objects and arrays")
	// The same text stored as it is (canonical) fails Validate, as the fold runs it.
	require.ErrorIs(t, events.JSONSchema(props(events.MaxJSONSchemaValues-1)).Validate(), events.ErrTooLarge)
}

// The task schemas of one event are bounded together, before anything
// compiles them: a root definition (or a creation) of many large schemas is
// refused as a whole.
func TestEventSchemaValuesBounded(t *testing.T) {
	props := func(n int) events.JSONSchema {
		var b strings.Builder
		b.WriteString(`{"properties":{`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `"p%04d":{}`, i)
		}
		b.WriteString(`},"type":"object"}`)
		return events.JSONSchema(b.String()) // canonical: keys sorted
	}
	task := func(name string, n int) events.TaskDef {
		return events.TaskDef{Name: name, InputSchema: props(n), OutputSchema: events.JSONSchema(`{}`)}
	}
	third := events.MaxEventSchemaValues / 3
	def := events.RootDef{Name: "big", Primer: "p", Tasks: []events.TaskDef{task("a", third), task("b", third), task("c", third)}}
	err := def.Validate()
	require.ErrorIs(t, err, events.ErrTooLarge)
	require.Contains(t, err.Error(), "objects and arrays together")
	def.Tasks = def.Tasks[:2]
	require.NoError(t, def.Validate())
	require.ErrorIs(t, (&events.CreatedData{Primer: "p", Tasks: []events.TaskDef{task("a", third), task("b", third), task("c", third)}}).CheckLimits("x"), events.ErrTooLarge)
}
