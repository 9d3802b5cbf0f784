package main

import (
	"github.com/agentreg/agentreg/events"
)

// The JSON replay prints for events and capabilities is the wire format
// (ARCHITECTURE.md, "Wire format") written as JSON: the same keys, in the
// same order, with the same values. It is defined here rather than taken
// from the json tags of the events package so that replay's output stays
// what docs/replay.md documents whatever those tags become, and so that it
// round-trips: an empty list stays [] and an absent one null (an exclude
// of [] means "nothing excluded" while an absent one means the default
// ["_*"]), and wireEvent.event gives back an event that encodes to the same
// bytes.

// wireCap is events.Capability with the wire's keys. Include and Exclude
// are printed as stored: null when absent (the defaults ["*"] and ["_*"]
// apply), [] when empty.
type wireCap struct {
	Kind       events.Kind       `json:"kind"`
	Name       string            `json:"name"`
	Include    []string          `json:"include"`
	Exclude    []string          `json:"exclude"`
	Visibility events.Visibility `json:"vis"`
}

// wireRootDef is events.RootDef with the wire's keys.
type wireRootDef struct {
	Name         string           `json:"name"`
	Primer       string           `json:"primer"`
	Capabilities []wireCap        `json:"caps"`
	Tasks        []events.TaskDef `json:"tasks"`
}

type wireRegistered struct {
	Def wireRootDef `json:"def"`
}

type wireCreated struct {
	Primer       string           `json:"primer"`
	Capabilities []wireCap        `json:"caps,omitempty"`
	Tasks        []events.TaskDef `json:"tasks,omitempty"`
}

type wireGranted struct {
	Capability wireCap `json:"cap"`
	Replace    bool    `json:"replace,omitempty"` // since v3
}

type wireRevoked struct {
	Kind    events.Kind `json:"kind"`
	Name    string      `json:"name"`
	Members []string    `json:"members,omitempty"` // since v3
}

type wireTask struct {
	Task events.TaskDef `json:"task"`
}

type wireRetired struct {
	Reason string `json:"reason"`
}

type wireMigrated struct {
	To     string       `json:"to"`
	Reason string       `json:"reason"`
	Def    *wireRootDef `json:"def,omitempty"`
}

// wireEvent is events.Event with the wire's keys: the bodies that do not
// apply, obo, signer and sig are absent, as they are on the wire.
type wireEvent struct {
	ID          string          `json:"id"`
	Type        events.Type     `json:"type"`
	Version     uint64          `json:"v"`
	Root        string          `json:"root"`
	Path        string          `json:"path"`
	Time        int64           `json:"time"`
	Actor       string          `json:"actor"`
	OnBehalfOf  string          `json:"obo,omitempty"`
	Correlation string          `json:"corr"`
	Prev        string          `json:"prev"`
	Registered  *wireRegistered `json:"registered,omitempty"`
	Created     *wireCreated    `json:"created,omitempty"`
	Granted     *wireGranted    `json:"granted,omitempty"`
	Revoked     *wireRevoked    `json:"revoked,omitempty"`
	Task        *wireTask       `json:"task,omitempty"`
	Retired     *wireRetired    `json:"retired,omitempty"`
	Migration   *wireMigrated   `json:"migrated,omitempty"`
	Signer      string          `json:"signer,omitempty"`
	Sig         string          `json:"sig,omitempty"`
}

func capOf(c events.Capability) wireCap { return wireCap(c) }

func capsOf(cs []events.Capability) []wireCap {
	if cs == nil {
		return nil
	}
	out := make([]wireCap, len(cs))
	for i, c := range cs {
		out[i] = wireCap(c)
	}
	return out
}

func (c wireCap) capability() events.Capability { return events.Capability(c) }

func capsFrom(cs []wireCap) []events.Capability {
	if cs == nil {
		return nil
	}
	out := make([]events.Capability, len(cs))
	for i, c := range cs {
		out[i] = events.Capability(c)
	}
	return out
}

func rootDefOf(d *events.RootDef) *wireRootDef {
	if d == nil {
		return nil
	}
	return &wireRootDef{Name: d.Name, Primer: d.Primer, Capabilities: capsOf(d.Capabilities), Tasks: d.Tasks}
}

func (d *wireRootDef) rootDef() *events.RootDef {
	if d == nil {
		return nil
	}
	return &events.RootDef{Name: d.Name, Primer: d.Primer, Capabilities: capsFrom(d.Capabilities), Tasks: d.Tasks}
}

// eventOf is an event's JSON form.
func eventOf(e *events.Event) *wireEvent {
	if e == nil {
		return nil
	}
	w := &wireEvent{ID: e.ID, Type: e.Type, Version: e.Version, Root: e.Root, Path: e.Path, Time: e.Time, Actor: e.Actor,
		OnBehalfOf: e.OnBehalfOf, Correlation: e.Correlation, Prev: e.Prev, Signer: e.Signer, Sig: e.Sig}
	if e.Revoked != nil {
		w.Revoked = (*wireRevoked)(e.Revoked)
	}
	if e.Task != nil {
		w.Task = (*wireTask)(e.Task)
	}
	if e.Retired != nil {
		w.Retired = (*wireRetired)(e.Retired)
	}
	if e.Registered != nil {
		w.Registered = &wireRegistered{Def: *rootDefOf(&e.Registered.Def)}
	}
	if e.Created != nil {
		w.Created = &wireCreated{Primer: e.Created.Primer, Capabilities: capsOf(e.Created.Capabilities), Tasks: e.Created.Tasks}
	}
	if e.Granted != nil {
		w.Granted = &wireGranted{Capability: capOf(e.Granted.Capability), Replace: e.Granted.Replace}
	}
	if e.Migration != nil {
		w.Migration = &wireMigrated{To: e.Migration.To, Reason: e.Migration.Reason, Def: rootDefOf(e.Migration.Def)}
	}
	return w
}

// event is the event a JSON form stands for (eventOf's inverse).
func (w *wireEvent) event() *events.Event {
	if w == nil {
		return nil
	}
	e := &events.Event{ID: w.ID, Type: w.Type, Version: w.Version, Root: w.Root, Path: w.Path, Time: w.Time, Actor: w.Actor,
		OnBehalfOf: w.OnBehalfOf, Correlation: w.Correlation, Prev: w.Prev, Revoked: (*events.RevokedData)(w.Revoked), Task: (*events.TaskData)(w.Task),
		Retired: (*events.RetiredData)(w.Retired), Signer: w.Signer, Sig: w.Sig}
	if w.Registered != nil {
		e.Registered = &events.RootData{Def: *w.Registered.Def.rootDef()}
	}
	if w.Created != nil {
		e.Created = &events.CreatedData{Primer: w.Created.Primer, Capabilities: capsFrom(w.Created.Capabilities), Tasks: w.Created.Tasks}
	}
	if w.Granted != nil {
		e.Granted = &events.GrantedData{Capability: w.Granted.Capability.capability(), Replace: w.Granted.Replace}
	}
	if w.Migration != nil {
		e.Migration = &events.MigratedData{To: w.Migration.To, Reason: w.Migration.Reason, Def: w.Migration.Def.rootDef()}
	}
	return e
}
