package projector

import (
	"slices"
	"strings"
	"sync"
	"unique"

	"github.com/agentreg/agentreg/events"
)

// Interning: a registry holds the same few strings (capability kinds and
// names, patterns, actors) and the same task definitions many times over;
// sharing one copy of each keeps large registries small. Interned values
// are never changed in place.

func istr(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

var patternSets sync.Map // joined patterns -> []string

func islice(ss []string) []string {
	if ss == nil {
		return nil
	}
	key := strings.Join(ss, "\x00")
	if v, ok := patternSets.Load(key); ok && slices.Equal(v.([]string), ss) {
		return v.([]string)
	}
	c := make([]string, len(ss))
	for i, s := range ss {
		c[i] = istr(s)
	}
	// A set whose patterns contain the separator may share a key with
	// another set: it is then kept unshared.
	if v, loaded := patternSets.LoadOrStore(key, c); loaded && slices.Equal(v.([]string), ss) {
		return v.([]string)
	}
	return c
}

func icap(c events.Capability) events.Capability {
	return events.Capability{Kind: events.Kind(istr(string(c.Kind))), Name: istr(c.Name),
		Include: islice(c.Include), Exclude: islice(c.Exclude), Visibility: events.Visibility(istr(string(c.Visibility)))}
}

// itask returns a shared copy of an equal task definition seen before in
// this registry, or interns t.
func (r *Registry) itask(t events.TaskDef) *events.TaskDef {
	key := taskKey(t)
	if r.tasks == nil {
		r.tasks = map[string]*events.TaskDef{}
	}
	if v, ok := r.tasks[key]; ok {
		return v
	}
	t.Name, t.Doc = istr(t.Name), istr(t.Doc)
	r.tasks[key] = &t
	return &t
}

func taskKey(t events.TaskDef) string {
	var b strings.Builder
	b.WriteString(t.Name)
	b.WriteByte(0)
	b.WriteString(t.Doc)
	b.WriteByte(0)
	schemaKey(&b, t.Input)
	b.WriteByte(0)
	schemaKey(&b, t.Output)
	b.WriteByte(0)
	b.WriteString(string(t.InputSchema))
	b.WriteByte(0)
	b.WriteString(string(t.OutputSchema))
	return b.String()
}

func schemaKey(b *strings.Builder, s events.Schema) {
	b.WriteString(s.Type)
	b.WriteByte('{')
	for _, f := range s.Fields {
		b.WriteString(f.Name)
		if f.Required {
			b.WriteByte('!')
		}
		b.WriteByte(':')
		b.WriteString(f.Doc)
		b.WriteByte(':')
		schemaKey(b, f.Schema)
		b.WriteByte(',')
	}
	b.WriteByte('}')
	if s.Items != nil {
		b.WriteByte('[')
		schemaKey(b, *s.Items)
		b.WriteByte(']')
	}
}
