package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// eventLine is one line of `events --json` (docs/replay.md): a stored
// message, or a marker for a sequence removed from the stream. Every key is
// always there.
type eventLine struct {
	Seq    uint64 `json:"seq"`
	Status string `json:"status"` // applied, refused, stray or deleted
	// Subject and Stored (the server's time of the message) are "" and null
	// for a deleted sequence.
	Subject string     `json:"subject"`
	Stored  *time.Time `json:"stored"`
	// Violation is why the fold refused the event (status refused), null
	// otherwise.
	Violation *lineViolation `json:"violation"`
	// Event is the decoded event (the wire format's keys), null when the
	// body does not decode (Error says why) or the sequence was deleted.
	Event *wireEvent `json:"event"`
	Error string     `json:"error"`
}

// lineViolation is a projector.Violation's code and reason.
type lineViolation struct {
	Code   string `json:"code"`
	Reason string `json:"reason"`
}

// The statuses of an events line.
const (
	statusApplied = "applied" // the fold applied the event
	statusRefused = "refused" // the fold refused it: a violation
	statusStray   = "stray"   // on a subject that belongs to no root: no fold reads it
	statusDeleted = "deleted" // the sequence was removed from the stream

	// The statuses of a rangeLine.
	statusPurged          = "purged"           // the sequences below the stream's first: purged, or never stored
	statusDeletedUnlisted = "deleted_unlisted" // deleted sequences past the first maxListedDeletes
)

func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("events", "", "Print the decoded event log up to the point (--seq/--time), each event marked with what the fold\n"+
		"did with it (refused ones with their violation code), and the sequences removed from the stream.", &c, stderr)
	agentSel := fs.String("agent", "", "only this agent path and its descendants (needs a root)")
	types := fs.String("type", "", "only these event types (comma-separated, e.g. CapabilityGranted,AgentRetired); an AgentCreated\n"+
		"of schema version 2 carries the agent's initial grants and tasks and is listed as AgentCreated only")
	actor := fs.String("actor", "", "only events whose actor, or whose claimed on-behalf-of (the `obo` key), is this principal")
	fromSeq := fs.Uint64("from-seq", 0, "only events at or after this stream sequence")
	since := fs.String("since", "", "only events stored at or after this RFC3339 time")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("events", "unexpected argument %q", fs.Arg(0))
	}
	p, err := c.point("events")
	if err != nil {
		return err
	}
	from, err := parsePoint("events", *fromSeq, *since)
	if err != nil {
		return err
	}
	var typeSet []events.Type
	for _, t := range strings.Split(*types, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		if !events.Type(t).Known() {
			return usageErr("events", "--type %q is not an event type", t)
		}
		typeSet = append(typeSet, events.Type(t))
	}
	if *agentSel != "" {
		if err := events.ValidatePath(*agentSel); err != nil {
			return usageErr("events", "--agent: %v", err)
		}
	}
	src, err := c.open(ctx, "events")
	if err != nil {
		return err
	}
	defer src.Close()
	// The whole of each root is read and folded from its start, whatever
	// the filters, so that each event shows what the fold did with it.
	subjects := []string{src.cfg.Prefix + ".>"}
	var agentSubject string
	if c.root != "" || *agentSel != "" {
		root, err := src.pickRoot(ctx, "events", c.root)
		if err != nil {
			return err
		}
		subjects = events.RootSubjects(src.cfg.Prefix, root)
		if *agentSel != "" {
			agentSubject = events.Subject(src.cfg.Prefix, root, *agentSel)
		}
	}
	state, err := src.log.StreamState(ctx)
	if err != nil {
		return err
	}
	removed := removedRuns(state.FirstSeq, state.Deleted)

	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	emit := func(l any, text string) error {
		if c.json {
			return enc.Encode(l)
		}
		_, err := fmt.Fprintln(stdout, text)
		return err
	}
	// deleted prints the markers of removed sequences below seq that the
	// range selects (a removed message has no subject or time left: it is
	// shown in every view, placed by its sequence): what lies below the
	// stream's first sequence as one line, and at most maxListedDeletes
	// deleted sequences one by one; those after are counted into unlisted,
	// printed last.
	var listed int
	var unlisted rangeLine
	deleted := func(below uint64, inRange bool) error {
		for len(removed) > 0 && removed[0].lo < below {
			rm := removed[0]
			removed = removed[1:]
			rm.hi = min(rm.hi, below-1)
			if from.seq != 0 {
				rm.lo = max(rm.lo, from.seq)
			}
			if !inRange || rm.lo > rm.hi {
				continue
			}
			if rm.purged {
				if err := emit(rangeLine{Seq: rm.lo, Through: rm.hi, Status: statusPurged, Count: rm.hi - rm.lo + 1},
					fmt.Sprintf("%6d  %-20s  %-17s  %s", rm.lo, "", "PURGED", purgedString(rm.lo, rm.hi, state.FirstSeq))); err != nil {
					return err
				}
				continue
			}
			if listed == maxListedDeletes {
				if unlisted.Count == 0 {
					unlisted = rangeLine{Seq: rm.lo, Status: statusDeletedUnlisted}
				}
				unlisted.Through = rm.lo
				unlisted.Count++
				continue
			}
			listed++
			if err := emit(eventLine{Seq: rm.lo, Status: statusDeleted},
				fmt.Sprintf("%6d  %-20s  %-17s  the message was removed from the stream (an event log never deletes)", rm.lo, "", "DELETED")); err != nil {
				return err
			}
		}
		return nil
	}
	// unlistedLine prints the count of the deleted sequences not listed.
	unlistedLine := func() error {
		if unlisted.Count == 0 {
			return nil
		}
		return emit(unlisted, fmt.Sprintf("%6d  %-20s  %-17s  %s", unlisted.Seq, "", "DELETED", unlistedString(unlisted)))
	}
	regs := map[string]*projector.Registry{}
	last := uint64(0)
	err = src.scan(ctx, &c, subjects, p, func(r events.Record) error {
		last = r.Seq
		inFrom := (from.seq == 0 || r.Seq >= from.seq) && (from.at.IsZero() || !r.Time.Before(from.at))
		if err := deleted(r.Seq, inFrom); err != nil {
			return err
		}
		line := eventLine{Seq: r.Seq, Status: statusApplied, Subject: r.Subject, Stored: ptr(r.Time.UTC())}
		if root, _, err := events.ParseSubject(src.cfg.Prefix, r.Subject); err != nil || events.ValidateFingerprint(root) != nil {
			line.Status = statusStray
		} else {
			reg := regs[root]
			if reg == nil {
				reg = projector.New(root)
				reg.SetTrust(c.trust)
				regs[root] = reg
			}
			before := uint64(len(reg.Violations)) + reg.ViolationsDropped
			reg.Apply(r)
			if n := len(reg.Violations); uint64(n)+reg.ViolationsDropped > before && reg.Violations[n-1].Seq == r.Seq {
				v := reg.Violations[n-1]
				line.Status, line.Violation = statusRefused, &lineViolation{Code: v.Code, Reason: v.Reason}
			}
		}
		if !inFrom || agentSubject != "" && r.Subject != agentSubject && !strings.HasPrefix(r.Subject, agentSubject+".") {
			return nil
		}
		e, derr := events.Decode(r.Data)
		if derr == nil {
			if len(typeSet) > 0 && !slices.Contains(typeSet, e.Type) || *actor != "" && e.Actor != *actor && e.OnBehalfOf != *actor {
				return nil
			}
			line.Event = eventOf(e)
		} else {
			if len(typeSet) > 0 || *actor != "" {
				return nil
			}
			line.Error = derr.Error()
		}
		return emit(line, describeLine(src.cfg.Prefix, r, e, derr, line))
	})
	if err != nil {
		return err
	}
	// Removed sequences after the last message read, up to the point.
	below := uint64(math.MaxUint64)
	switch {
	case p.seq != 0:
		below = p.seq + 1
	case !p.at.IsZero():
		below = last + 1
	}
	if err := deleted(below, true); err != nil {
		return err
	}
	return unlistedLine()
}

// maxListedDeletes is how many deleted sequences events and audit list one
// by one; the rest are counted in one line or problem.
const maxListedDeletes = 10_000

// rangeLine is a line of `events --json` for many sequences at once
// (docs/replay.md): those below the stream's first sequence (status
// purged), or the deleted sequences past the first maxListedDeletes
// (status deleted_unlisted, the last line). Every key is always there.
type rangeLine struct {
	Seq     uint64 `json:"seq"`     // the first sequence of the range
	Through uint64 `json:"through"` // its last
	Status  string `json:"status"`
	// Count is how many sequences of the range the line stands for: all of
	// them for purged, the deleted ones among them for deleted_unlisted.
	Count uint64 `json:"count"`
}

// run is a run of sequences removed from a stream, lo to hi: those below
// its first sequence (purged), or one deleted message.
type run struct {
	lo, hi uint64
	purged bool
}

// removedRuns lists what was removed from a stream, in order: what lies
// below its first sequence as one run (a stream agentreg created starts at
// 1; a purge, or the deletion of its first messages, moves that up, and a
// purge up to a sequence past the last stored one skips sequences that
// never held a message), then each sequence deleted inside it.
func removedRuns(first uint64, deleted []uint64) []run {
	var out []run
	if first > 1 {
		out = append(out, run{lo: 1, hi: first - 1, purged: true})
	}
	deleted = slices.Clone(deleted)
	slices.Sort(deleted)
	for _, d := range slices.Compact(deleted) {
		if d >= first {
			out = append(out, run{lo: d, hi: d})
		}
	}
	return out
}

// purgedString says what lies below the stream's first sequence.
func purgedString(lo, hi, first uint64) string {
	seqs := fmt.Sprintf("seq %d–%d", lo, hi)
	if lo == hi {
		seqs = fmt.Sprintf("seq %d", lo)
	}
	return fmt.Sprintf("%s purged or never stored: the stream starts at %d", seqs, first)
}

// unlistedString says how many deleted sequences were not listed.
func unlistedString(l rangeLine) string {
	return fmt.Sprintf("%d more deleted sequence(s) from seq %d to %d, not listed one by one (at most %d are)", l.Count, l.Seq, l.Through, maxListedDeletes)
}

func ptr[T any](v T) *T { return &v }

// describeLine is describeRecord with what the fold did with the event.
func describeLine(prefix string, r events.Record, e *events.Event, derr error, l eventLine) string {
	s := describeRecord(prefix, r, e, derr)
	switch l.Status {
	case statusRefused:
		if l.Violation.Reason == l.Error { // said already, as why it does not decode
			s += fmt.Sprintf("  [REFUSED %s]", l.Violation.Code)
		} else {
			s += fmt.Sprintf("  [REFUSED %s: %s]", l.Violation.Code, l.Violation.Reason)
		}
	case statusStray:
		s += "  [STRAY: on a subject of no root, read by no fold]"
	}
	return s
}

// describeRecord renders one record as a line of text.
func describeRecord(prefix string, r events.Record, e *events.Event, derr error) string {
	if derr != nil {
		return fmt.Sprintf("%6d  %s  %-17s  %s  (%v)", r.Seq, r.Time.UTC().Format(time.RFC3339), "UNDECODABLE", r.Subject, derr)
	}
	where := "(root)"
	if e.Path != "" {
		where = e.Path
	}
	return fmt.Sprintf("%6d  %s  %-17s  %.12s %-28s by %-18s %s", r.Seq, r.Time.UTC().Format(time.RFC3339), e.Type, e.Root, where, byString(e.Actor, e.OnBehalfOf), detail(e))
}

// byString is who wrote an event, and whom its writer's caller said it
// was for: a claim nobody checked, marked as such.
func byString(actor, onBehalfOf string) string {
	if onBehalfOf == "" {
		return actor
	}
	return fmt.Sprintf("%s [on behalf of %s (claimed)]", actor, onBehalfOf)
}

// detail is the type-specific part of an event, briefly.
func detail(e *events.Event) string {
	switch e.Type {
	case events.RootRegistered:
		d := e.Registered.Def
		var caps []string
		for _, c := range d.Capabilities {
			caps = append(caps, capString(c))
		}
		return fmt.Sprintf("root %q caps [%s] tasks %d", d.Name, strings.Join(caps, "; "), len(d.Tasks))
	case events.AgentCreated:
		// Since schema version 2 a creation carries the agent's initial
		// grants and tasks (a version 1 creation has neither: its grants
		// and tasks are events of their own).
		var b strings.Builder
		b.WriteString(primerString(e.Created))
		if cs := e.Created.Capabilities; len(cs) > 0 {
			parts := make([]string, len(cs))
			for i, c := range cs {
				parts[i] = capString(c)
			}
			fmt.Fprintf(&b, " caps [%s]", strings.Join(parts, "; "))
		}
		if ts := e.Created.Tasks; len(ts) > 0 {
			parts := make([]string, len(ts))
			for i, t := range ts {
				parts[i] = taskString(t)
			}
			fmt.Fprintf(&b, " tasks [%s]", strings.Join(parts, "; "))
		}
		return b.String()
	case events.CapabilityGranted:
		return capString(e.Granted.Capability)
	case events.CapabilityRevoked:
		return fmt.Sprintf("%s %s", e.Revoked.Kind, e.Revoked.Name)
	case events.TaskDefined:
		return taskString(e.Task.Task)
	case events.AgentRetired:
		return fmt.Sprintf("reason %q", e.Retired.Reason)
	case events.RootMigrated:
		return fmt.Sprintf("to %.12s reason %q", e.Migration.To, e.Migration.Reason)
	}
	return ""
}

func primerString(c *events.CreatedData) string {
	return fmt.Sprintf("primer %q", clip(c.Primer, 60))
}

func capString(c events.Capability) string {
	c = c.Normalized()
	return fmt.Sprintf("%s %s include=%v exclude=%v vis=%s", c.Kind, c.Name, c.Include, c.Exclude, c.Visibility)
}

func taskString(t events.TaskDef) string {
	if t.InputSchema != "" || t.OutputSchema != "" {
		in := jsonSchemaString([]byte(t.InputSchema), 0)
		in = strings.TrimSuffix(strings.TrimPrefix(in, "{"), "}")
		return fmt.Sprintf("%s(%s) -> %s", t.Name, in, jsonSchemaString([]byte(t.OutputSchema), 0))
	}
	return fmt.Sprintf("%s(%s) -> %s", t.Name, fieldsString(t.Input), schemaString(t.Output))
}

// jsonSchemaString is a one-line signature of a JSON Schema document:
// objects as {name: type, optional?: type}, arrays as []items, a $ref by
// its last segment, several types joined by '|'. The full document is in
// the --json output.
func jsonSchemaString(doc []byte, depth int) string {
	var s struct {
		Type       any                        `json:"type"`
		Ref        string                     `json:"$ref"`
		Enum       []any                      `json:"enum"`
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
		Items      json.RawMessage            `json:"items"`
	}
	if len(doc) == 0 || json.Unmarshal(doc, &s) != nil {
		return "any"
	}
	if s.Ref != "" {
		return s.Ref[strings.LastIndex(s.Ref, "/")+1:]
	}
	if len(s.Enum) > 0 {
		b, _ := json.Marshal(s.Enum)
		return "enum" + string(b)
	}
	var types []string
	switch t := s.Type.(type) {
	case string:
		types = []string{t}
	case []any:
		for _, x := range t {
			types = append(types, fmt.Sprint(x))
		}
	}
	for i, t := range types {
		switch {
		case t == "array" && len(s.Items) > 0 && depth < 4:
			types[i] = "[]" + jsonSchemaString(s.Items, depth+1)
		case t == "object" && len(s.Properties) > 0 && depth < 4:
			names := slices.Sorted(maps.Keys(s.Properties))
			parts := make([]string, len(names))
			for j, n := range names {
				opt := "?"
				if slices.Contains(s.Required, n) {
					opt = ""
				}
				parts[j] = n + opt + ": " + jsonSchemaString(s.Properties[n], depth+1)
			}
			types[i] = "{" + strings.Join(parts, ", ") + "}"
		}
	}
	if len(types) == 0 {
		if len(s.Properties) > 0 {
			return jsonSchemaString(append([]byte(`{"type":"object",`), doc[1:]...), depth)
		}
		return "any"
	}
	return strings.Join(types, "|")
}

func fieldsString(s events.Schema) string {
	var parts []string
	for _, f := range s.Fields {
		opt := ""
		if !f.Required {
			opt = "?"
		}
		parts = append(parts, f.Name+opt+": "+schemaString(f.Schema))
	}
	return strings.Join(parts, ", ")
}

func schemaString(s events.Schema) string {
	switch s.Type {
	case "array":
		if s.Items != nil {
			return "[]" + schemaString(*s.Items)
		}
	case "object":
		if len(s.Fields) > 0 {
			return "{" + fieldsString(s) + "}"
		}
	}
	return s.Type
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}
