package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/agentreg/agentreg/events"
)

// eventLine is one line of `events --json`.
type eventLine struct {
	Seq     uint64        `json:"seq"`
	Subject string        `json:"subject"`
	Stored  time.Time     `json:"stored"`
	Event   *events.Event `json:"event,omitempty"`
	Error   string        `json:"error,omitempty"`
}

func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("events", "", "Print the decoded event log up to the point (--seq/--time).", &c, stderr)
	agentSel := fs.String("agent", "", "only this agent path and its descendants (needs a root)")
	types := fs.String("type", "", "only these event types (comma-separated, e.g. CapabilityGranted,AgentRetired); an AgentCreated\n"+
		"of schema version 2 carries the agent's initial grants and tasks and is listed as AgentCreated only")
	actor := fs.String("actor", "", "only events whose actor, or whose claimed on-behalf-of (the `obo` key), is this principal")
	fromSeq := fs.Uint64("from-seq", 0, "only events at or after this stream sequence")
	since := fs.String("since", "", "only events stored at or after this RFC3339 time")
	if err := parse(fs, args); err != nil || fs.Parsed() && fs.NArg() > 0 {
		if err == nil {
			err = usageErr("events", "unexpected argument %q", fs.Arg(0))
		}
		return err
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
	subjects := []string{src.cfg.Prefix + ".>"}
	if c.root != "" || *agentSel != "" {
		root, err := src.pickRoot(ctx, "events", c.root)
		if err != nil {
			return err
		}
		subjects = events.RootSubjects(src.cfg.Prefix, root)
		if *agentSel != "" {
			s := events.Subject(src.cfg.Prefix, root, *agentSel)
			subjects = []string{s, s + ".>"}
		}
	}
	enc := json.NewEncoder(stdout)
	return src.scan(ctx, &c, subjects, p, func(r events.Record) error {
		if from.seq != 0 && r.Seq < from.seq || !from.at.IsZero() && r.Time.Before(from.at) {
			return nil
		}
		e, derr := events.Decode(r.Data)
		if derr == nil {
			if len(typeSet) > 0 && !slices.Contains(typeSet, e.Type) || *actor != "" && e.Actor != *actor && e.OnBehalfOf != *actor {
				return nil
			}
		} else if len(typeSet) > 0 || *actor != "" {
			return nil
		}
		if c.json {
			line := eventLine{Seq: r.Seq, Subject: r.Subject, Stored: r.Time.UTC(), Event: e}
			if derr != nil {
				line.Error = derr.Error()
			}
			return enc.Encode(line)
		}
		_, err := fmt.Fprintln(stdout, describeRecord(src.cfg.Prefix, r, e, derr))
		return err
	})
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
	return fmt.Sprintf("%s(%s) -> %s", t.Name, fieldsString(t.Input), schemaString(t.Output))
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
