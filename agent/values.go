package agent

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// What a registry holds, as values: Describe, List and Lineage copy what
// they return out of the registry under its lock, so the caller owns every
// slice and pointer in it and no later write changes it.

// AgentInfo describes an agent (or a root: Ref.Path "") as the registry
// holds it at Seq.
type AgentInfo struct {
	Ref    AgentRef
	Primer string
	// Creator is the actor of the AgentCreated (RootRegistered for a root)
	// event; CreatorOnBehalfOf its claimed principal, never checked.
	Creator           string
	CreatorOnBehalfOf string
	CreatedSeq        uint64
	CreatedAt         time.Time
	Retired           bool
	RetiredSeq        uint64
	RetiredBy         string
	RetiredAt         time.Time // zero unless Retired
	// Granted are the agent's own grants, sorted by kind and name (a
	// root's are its definition's capabilities).
	Granted []GrantInfo
	// Effective are the capabilities the agent may use: each own grant
	// intersected with every ancestor's, sorted by kind and name.
	Effective []EffectiveCapability
	Tasks     []events.TaskDef // sorted by name
	Seq       uint64           // the stream sequence the registry was folded up to
}

// GrantInfo is one grant an agent holds, with who made it and when.
type GrantInfo struct {
	Capability events.Capability // normalized
	Seq        uint64
	Time       time.Time
	Actor      string
	OnBehalfOf string // claimed, never checked
	// Revoked are the members taken from this grant by member-level
	// revocations of the agent or of an ancestor made since it was granted
	// (Runtime.RevokeMembers), sorted; each is also in Capability.Exclude.
	Revoked []string
}

// EffectiveCapability is a capability an agent may use.
type EffectiveCapability struct {
	// Capability is the agent's own grant (normalized).
	Capability events.Capability
	// Chain is every grant that limits it, from the root down to the agent:
	// a member is usable only if each of them allows it.
	Chain []events.Capability
	// Intersected is the chain written as one grant: the includes
	// intersected, the excludes united. Exact is false when some includes
	// overlap in a way one glob cannot say; Intersected is then narrower
	// than the chain and Chain is the authority.
	Intersected events.Capability
	Exact       bool
	// Members are the member names the chain allows among those known: for
	// a module, the members this process's catalog offers and the names the
	// chain's includes list; for a fn or type, its own name. Sorted; empty
	// when no known name passes.
	Members []string
}

// ListOptions pages List: the agents below Path after After (a path, ""
// for the first page) in depth-first order with siblings sorted, at most
// Limit of them (<= 0 or over 1000: 1000). The first page (no After)
// starts with the agent at Path itself when Path is not "", and After
// equal to Path resumes after it, at its first descendant. After must be
// "", Path, or a path below Path (else ErrInvalidCursor); it need not
// exist any more: the page resumes where it would stand in the order.
type ListOptions struct {
	Path  string
	After string
	Limit int
}

// maxListPage is the most agents one List page holds.
const maxListPage = 1000

// ErrInvalidCursor is List's error for an After that is not in the listed
// subtree (neither Path nor below it): a stale or wrong cursor.
var ErrInvalidCursor = projector.ErrInvalidCursor

// AgentPage is one page of List.
type AgentPage struct {
	Root       RootID
	Name       string // the root's name
	Agents     []AgentInfo
	Next       string // the After of the next page; "" on the last page
	Seq        uint64
	Violations int // events of the root the fold refused so far (all of them, not only those the registry keeps)
}

// Relation is where a lineage entry's agent stands from the agent asked
// about.
type Relation string

// Relations.
const (
	Ancestor   Relation = "ancestor" // the root and every agent up the path
	Self       Relation = "self"
	Descendant Relation = "descendant"
)

// LineageEntry is one fact of an agent's lineage: a creation, a grant the
// agent still holds, a retirement, or the root's registration.
type LineageEntry struct {
	Relation   Relation
	Path       string
	What       string // "root <name> registered", "created", "granted <kind> <name>", "retired"
	Seq        uint64
	Time       time.Time
	Actor      string
	OnBehalfOf string // claimed, never checked
}

// Describe returns what the registry holds about an agent (or, for a ref
// with Path "", about the root), caught up as View is. An unknown root or
// agent gives ErrNotFound.
func (rt *Runtime) Describe(ctx context.Context, a AgentRef) (AgentInfo, error) {
	if a.Path != "" {
		if err := events.ValidatePath(a.Path); err != nil {
			return AgentInfo{}, fmt.Errorf("describe: %w", err)
		}
	}
	var out AgentInfo
	err := rt.readRegistry(ctx, a.Root, func(reg *projector.Registry) error {
		var err error
		out, err = rt.agentInfo(reg, a.Path)
		return err
	})
	if err != nil {
		return AgentInfo{}, fmt.Errorf("describe %s: %w", a, err)
	}
	return out, nil
}

// List returns a page of a root's agents (see ListOptions).
func (rt *Runtime) List(ctx context.Context, root RootID, opts ListOptions) (AgentPage, error) {
	for _, p := range []string{opts.Path, opts.After} {
		if p == "" {
			continue
		}
		if err := events.ValidatePath(p); err != nil {
			return AgentPage{}, fmt.Errorf("list root %.12s: %w", root, err)
		}
	}
	limit := opts.Limit
	if limit <= 0 || limit > maxListPage {
		limit = maxListPage
	}
	var out AgentPage
	err := rt.readRegistry(ctx, root, func(reg *projector.Registry) error {
		out = AgentPage{Root: root, Name: reg.Def.Name, Agents: []AgentInfo{}, Seq: reg.Seq, Violations: violations(reg)}
		paths, next, err := reg.Page(opts.Path, opts.After, limit)
		if err != nil {
			return err
		}
		for _, p := range paths {
			info, err := rt.agentInfo(reg, p)
			if err != nil {
				return err
			}
			out.Agents = append(out.Agents, info)
		}
		out.Next = next
		return nil
	})
	if err != nil {
		return AgentPage{}, fmt.Errorf("list root %.12s: %w", root, err)
	}
	return out, nil
}

// Lineage returns an agent's lineage: the root's registration and every
// ancestor's facts (root first), the agent's own, then its descendants'
// (sorted by path); each agent's facts in stream order.
func (rt *Runtime) Lineage(ctx context.Context, a AgentRef) ([]LineageEntry, error) {
	if err := events.ValidatePath(a.Path); err != nil {
		return nil, fmt.Errorf("lineage: %w", err)
	}
	var out []LineageEntry
	err := rt.readRegistry(ctx, a.Root, func(reg *projector.Registry) error {
		ag, err := reg.Agent(a.Path)
		if err != nil {
			return err
		}
		out = append(out, LineageEntry{Relation: Ancestor, What: "root " + reg.Def.Name + " registered", Seq: reg.RootSeq,
			Time: unixTime(reg.RootTime), Actor: reg.RootActor, OnBehalfOf: reg.RootOnBehalfOf})
		for _, p := range events.Ancestors(a.Path) {
			out = append(out, lineageOf(Ancestor, reg.Agents[p])...)
		}
		out = append(out, lineageOf(Self, ag)...)
		for _, p := range reg.Descendants(a.Path) {
			out = append(out, lineageOf(Descendant, reg.Agents[p])...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lineage of %s: %w", a, err)
	}
	return out, nil
}

// violations is how many events of the root the fold refused: those the
// registry keeps (at most projector.MaxViolations) and those it dropped.
func violations(reg *projector.Registry) int {
	return len(reg.Violations) + int(reg.ViolationsDropped)
}

// readRegistry runs fn on a root's registry caught up as View is; a root
// with no history is ErrNotFound.
func (rt *Runtime) readRegistry(ctx context.Context, root RootID, fn func(*projector.Registry) error) error {
	return rt.view(ctx, string(root), func(reg *projector.Registry) error {
		if reg.Def == nil {
			return fmt.Errorf("root %.12s has no history: %w", root, ErrNotFound)
		}
		return fn(reg)
	})
}

// lineageOf returns an agent's facts kept in the registry: its creation,
// each grant it holds, its retirement; in stream order.
func lineageOf(rel Relation, a *projector.Agent) []LineageEntry {
	out := []LineageEntry{{Relation: rel, Path: a.Path, What: "created", Seq: a.CreatedSeq, Time: unixTime(a.CreatedAt),
		Actor: a.Creator, OnBehalfOf: a.CreatorOnBehalfOf}}
	for _, k := range sortedKeys(a.Capabilities) {
		g := a.Capabilities[k]
		out = append(out, LineageEntry{Relation: rel, Path: a.Path, What: "granted " + string(g.Capability.Kind) + " " + g.Capability.Name,
			Seq: g.Seq, Time: unixTime(g.Time), Actor: g.Actor, OnBehalfOf: g.OnBehalfOf})
	}
	if a.Retired {
		out = append(out, LineageEntry{Relation: rel, Path: a.Path, What: "retired", Seq: a.RetiredSeq, Time: unixTime(a.RetiredAt),
			Actor: a.RetiredBy, OnBehalfOf: a.RetiredOnBehalfOf})
	}
	slices.SortStableFunc(out, func(x, y LineageEntry) int {
		switch {
		case x.Seq < y.Seq:
			return -1
		case x.Seq > y.Seq:
			return 1
		}
		return 0
	})
	return out
}

// agentInfo copies what the registry holds about the agent at path.
func (rt *Runtime) agentInfo(reg *projector.Registry, path string) (AgentInfo, error) {
	info := AgentInfo{Ref: AgentRef{Root: RootID(reg.Root), Path: path}, Granted: []GrantInfo{}, Tasks: []events.TaskDef{}, Seq: reg.Seq}
	if path == "" {
		d := reg.Def
		info.Primer, info.Creator, info.CreatorOnBehalfOf = d.Primer, reg.RootActor, reg.RootOnBehalfOf
		info.CreatedSeq, info.CreatedAt = reg.RootSeq, unixTime(reg.RootTime)
		for _, c := range d.Capabilities {
			info.Granted = append(info.Granted, GrantInfo{Capability: cloneCap(c.Normalized()), Seq: reg.RootSeq,
				Time: info.CreatedAt, Actor: reg.RootActor, OnBehalfOf: reg.RootOnBehalfOf})
		}
		slices.SortFunc(info.Granted, func(x, y GrantInfo) int { return cmpKey(x.Capability, y.Capability) })
		for _, t := range d.Tasks {
			c, err := cloneTask(&t)
			if err != nil {
				return AgentInfo{}, err
			}
			info.Tasks = append(info.Tasks, c)
		}
		slices.SortFunc(info.Tasks, func(x, y events.TaskDef) int { return strings.Compare(x.Name, y.Name) })
	} else {
		a, err := reg.Agent(path)
		if err != nil {
			return AgentInfo{}, err
		}
		info.Primer, info.Creator, info.CreatorOnBehalfOf = a.Primer, a.Creator, a.CreatorOnBehalfOf
		info.CreatedSeq, info.CreatedAt = a.CreatedSeq, unixTime(a.CreatedAt)
		info.Retired, info.RetiredSeq, info.RetiredBy = a.Retired, a.RetiredSeq, a.RetiredBy
		if a.Retired {
			info.RetiredAt = unixTime(a.RetiredAt)
		}
		for _, k := range sortedKeys(a.Capabilities) {
			g, _ := reg.Grant(path, k) // as narrowed by the revocations made after it
			info.Granted = append(info.Granted, GrantInfo{Capability: cloneCap(g.Capability), Seq: g.Seq, Time: unixTime(g.Time),
				Actor: g.Actor, OnBehalfOf: g.OnBehalfOf, Revoked: slices.Clone(g.Revoked)})
		}
		for _, k := range sortedKeys(a.Tasks) {
			c, err := cloneTask(a.Tasks[k])
			if err != nil {
				return AgentInfo{}, err
			}
			info.Tasks = append(info.Tasks, c)
		}
	}
	effs, err := reg.Effective(path)
	if err != nil {
		return AgentInfo{}, err
	}
	info.Effective = make([]EffectiveCapability, 0, len(effs))
	for _, e := range effs {
		info.Effective = append(info.Effective, rt.cfg.catalog.effective(e))
	}
	return info, nil
}

// effective is an effective capability as a value, with the member names
// the chain allows among those this catalog offers and the chain lists.
func (c *Catalog) effective(e projector.Effective) EffectiveCapability {
	in, exact := e.Intersected()
	out := EffectiveCapability{Capability: cloneCap(e.Capability), Intersected: cloneCap(in), Exact: exact,
		Chain: make([]events.Capability, 0, len(e.Chain))}
	for _, g := range e.Chain {
		out.Chain = append(out.Chain, cloneCap(g))
	}
	var known []string
	if e.Capability.Kind == events.KindModule {
		known = c.moduleMembers(e.Capability.Name)
		for _, g := range e.Chain {
			for _, p := range g.Include {
				if !events.IsPattern(p) {
					known = append(known, p)
				}
			}
		}
	} else {
		known = []string{e.Capability.Name}
	}
	out.Members = e.Members(known)
	if out.Members == nil {
		out.Members = []string{}
	}
	return out
}

func cloneCap(c events.Capability) events.Capability {
	c.Include, c.Exclude = slices.Clone(c.Include), slices.Clone(c.Exclude)
	return c
}

// cloneTask returns a deep copy of a task definition (its wire form read
// back), so that no caller shares the registry's interned one.
func cloneTask(t *events.TaskDef) (events.TaskDef, error) {
	b, err := msgpack.Marshal(t)
	if err != nil {
		return events.TaskDef{}, fmt.Errorf("copy task %q: %w", t.Name, err)
	}
	var out events.TaskDef
	if err := msgpack.Unmarshal(b, &out); err != nil {
		return events.TaskDef{}, fmt.Errorf("copy task %q: %w", t.Name, err)
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func cmpKey(a, b events.Capability) int { return strings.Compare(a.Key(), b.Key()) }

func unixTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }
