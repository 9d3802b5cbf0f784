package main

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/agentreg/agentreg/events"
)

func TestTaskStringJSONSchema(t *testing.T) {
	td := events.TaskDef{
		Name:         "solve",
		InputSchema:  `{"$defs":{"Eq":{"type":"string"}},"properties":{"eq":{"$ref":"#/$defs/Eq"},"tags":{"items":{"type":"string"},"type":"array"},"mode":{"enum":["fast","exact"]},"note":{"type":["string","null"]}},"required":["eq"],"type":"object"}`,
		OutputSchema: `{"type":"number"}`,
	}
	assert.Equal(t, `solve(eq: Eq, mode?: enum["fast","exact"], note?: string|null, tags?: []string) -> number`, taskString(td))
	legacy := events.TaskDef{Name: "old", Input: events.Schema{Type: "object", Fields: []events.Field{{Name: "x", Schema: events.Schema{Type: "integer"}, Required: true}}}, Output: events.Schema{Type: "string"}}
	assert.Equal(t, "old(x: integer) -> string", taskString(legacy))
}
