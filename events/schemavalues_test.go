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
