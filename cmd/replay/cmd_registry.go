package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// agentView is an agent as `registry` and `diff` show it.
type agentView struct {
	Path          string           `json:"path"`
	Primer        string           `json:"primer"`
	Creator       string           `json:"creator"`
	CreatedSeq    uint64           `json:"created_seq"`
	CreatedAt     string           `json:"created_at"`     // the writer's claimed time of the creation
	CreatedStored string           `json:"created_stored"` // when the server stored it; "" when its record was not read
	Retired       bool             `json:"retired"`
	RetiredSeq    uint64           `json:"retired_seq"`
	Granted       []wireCap        `json:"granted"`   // its own grants
	Effective     []effectiveView  `json:"effective"` // what it may use
	Tasks         []events.TaskDef `json:"tasks"`
	taskByName    map[string]events.TaskDef
	grantByKey    map[string]events.Capability
	effectiveSet  map[string]string
}

// effectiveView is a capability an agent effectively holds: its grant
// intersected with every ancestor's, as one grant.
type effectiveView struct {
	// Capability is the chain as one grant (projector.Effective.Intersected):
	// includes intersected, excludes united.
	Capability wireCap `json:"effective"` // agentd's CapabilityView names it so too
	// Exact is false when two include patterns along the chain have no
	// single-glob intersection: Capability then leaves that part out (it is
	// never wider than the chain).
	Exact bool `json:"exact"`
	// Members are the member names the chain lists (its literal includes)
	// that the chain allows, sorted; null when the chain lists none (only
	// patterns: the host's catalog has the names).
	Members []string `json:"members"`
	// Chain is the explanation: the grant of each agent from the root down.
	Chain []wireCap `json:"chain"`
}

// effectiveOf is an effective capability as replay shows it.
func effectiveOf(e projector.Effective) effectiveView {
	c, exact := e.Intersected()
	v := effectiveView{Capability: capOf(c), Exact: exact, Chain: capsOf(e.Chain)}
	var listed []string
	for _, g := range e.Chain {
		for _, p := range g.Include {
			if !events.IsPattern(p) {
				listed = append(listed, p)
			}
		}
	}
	if listed != nil {
		v.Members = e.Members(listed)
		if v.Members == nil {
			v.Members = []string{}
		}
	}
	return v
}

// String is the effective capability in one line: the grant it comes to
// and, where the chain lists names, the members it allows: all of them
// when the grant includes names only ("members"), else the named ones
// among them ("named members").
func (v effectiveView) String() string {
	c := v.Capability.capability()
	s := capString(c)
	if v.Members != nil {
		m := strings.Join(v.Members, " ")
		if m == "" {
			m = "none"
		}
		label := "members"
		if !v.Exact || slices.ContainsFunc(c.Normalized().Include, events.IsPattern) {
			label = "named members"
		}
		s += fmt.Sprintf(" (%s: %s)", label, m)
	}
	if !v.Exact {
		s += " (inexact: patterns along the chain that no single glob intersects are left out)"
	}
	return s
}

// registryView is a root's registry as `registry --json` prints it.
type registryView struct {
	Root       string          `json:"root"`
	Name       string          `json:"name"`
	Seq        uint64          `json:"seq"`
	StateHash  string          `json:"state_hash"`
	MigratedTo string          `json:"migrated_to"`
	Def        *wireRootDef    `json:"def"`
	Agents     []*agentView    `json:"agents"`
	Violations []violationView `json:"violations"`
}

// violationView is a projector.Violation with every key always present.
type violationView struct {
	Seq     uint64 `json:"seq"`
	Subject string `json:"subject"`
	EventID string `json:"id"`   // "" when the body does not decode
	Type    string `json:"type"` // likewise
	Path    string `json:"path"`
	Code    string `json:"code"`
	Reason  string `json:"reason"`
}

// viewOf is the view of a registry folded from recs (the records up to its
// point, in order; they give the stored times).
func viewOf(reg *projector.Registry, recs []events.Record) (*registryView, error) {
	hash, err := reg.StateHash()
	if err != nil {
		return nil, err
	}
	v := &registryView{Root: reg.Root, Seq: reg.Seq, StateHash: hash, MigratedTo: reg.MigratedTo, Def: rootDefOf(reg.Def),
		Agents: []*agentView{}, Violations: []violationView{}}
	if reg.Def != nil {
		v.Name = reg.Def.Name
	}
	for _, x := range reg.Violations {
		v.Violations = append(v.Violations, violationView(x))
	}
	for _, p := range reg.Paths() {
		a := reg.Agents[p]
		av := &agentView{Path: p, Primer: a.Primer, Creator: a.Creator, CreatedSeq: a.CreatedSeq, CreatedAt: time.Unix(0, a.CreatedAt).UTC().Format(time.RFC3339Nano),
			Retired: a.Retired, RetiredSeq: a.RetiredSeq, Granted: []wireCap{}, Effective: []effectiveView{}, Tasks: []events.TaskDef{},
			taskByName: map[string]events.TaskDef{}, grantByKey: map[string]events.Capability{}, effectiveSet: map[string]string{}}
		for _, k := range slices.Sorted(mapsKeys(a.Capabilities)) {
			g, _ := reg.Grant(p, k) // as it stands: narrowed by the member revocations made after it
			av.Granted = append(av.Granted, capOf(g.Capability))
			av.grantByKey[k] = g.Capability
		}
		if reg.Def != nil {
			eff, err := reg.Effective(p)
			if err != nil {
				return nil, err
			}
			for _, e := range eff {
				ev := effectiveOf(e)
				av.Effective = append(av.Effective, ev)
				// diff labels it with the key (kind:name).
				av.effectiveSet[e.Capability.Key()] = strings.TrimPrefix(ev.String(), fmt.Sprintf("%s %s ", e.Capability.Kind, e.Capability.Name))
			}
		}
		for _, n := range slices.Sorted(mapsKeys(a.Tasks)) {
			av.Tasks = append(av.Tasks, *a.Tasks[n])
			av.taskByName[n] = *a.Tasks[n]
		}
		if i, ok := slices.BinarySearchFunc(recs, a.CreatedSeq, func(r events.Record, seq uint64) int { return cmp.Compare(r.Seq, seq) }); ok {
			av.CreatedStored = recs[i].Time.UTC().Format(time.RFC3339Nano)
		}
		v.Agents = append(v.Agents, av)
	}
	return v, nil
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func runRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("registry", "", "Print the registry of each root (or of --root) as of the point: agents, effective capabilities,\n"+
		"tasks with schemas, retired ones marked. With --json, one object per root, a line each.", &c, stderr)
	list := fs.Bool("list", false, "list the roots with their counts (events, agents, retired, violations) instead")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("registry", "unexpected argument %q", fs.Arg(0))
	}
	p, err := c.point("registry")
	if err != nil {
		return err
	}
	src, err := c.open(ctx, "registry")
	if err != nil {
		return err
	}
	defer src.Close()
	var roots []string
	if c.root != "" {
		root, err := src.pickRoot(ctx, "registry", c.root)
		if err != nil {
			return err
		}
		roots = []string{root}
	} else {
		infos, err := src.roots(ctx)
		if err != nil {
			return err
		}
		if len(infos) == 0 {
			return fmt.Errorf("registry: the stream %s has no roots", src.cfg.Stream)
		}
		for _, ri := range infos {
			roots = append(roots, ri.Fingerprint)
		}
	}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for i, root := range roots {
		reg, recs, err := src.registryAt(ctx, &c, root, p)
		if err != nil {
			return err
		}
		if *list {
			rl := rootLine(reg, len(recs))
			if c.json {
				err = enc.Encode(rl)
			} else {
				_, err = fmt.Fprintf(stdout, "%-20s %s  seq %-7d events %-7d agents %-6d retired %-6d violations %d\n",
					rl.Name, rl.Root, rl.Seq, rl.Events, rl.Agents, rl.Retired, rl.Violations)
			}
			if err != nil {
				return err
			}
			continue
		}
		v, err := viewOf(reg, recs)
		if err != nil {
			return err
		}
		if c.json {
			if err := enc.Encode(v); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(stdout)
		}
		printRegistry(stdout, v, p)
	}
	return nil
}

// rootSummary is one line of `registry --list`.
type rootSummary struct {
	Root       string `json:"root"`
	Name       string `json:"name"`
	Seq        uint64 `json:"seq"`    // the last sequence folded
	Events     int    `json:"events"` // messages on the root's subjects up to the point
	Agents     int    `json:"agents"` // dynamic agents, retired ones included
	Retired    int    `json:"retired"`
	Violations uint64 `json:"violations"` // events the fold refused
}

func rootLine(reg *projector.Registry, n int) rootSummary {
	rl := rootSummary{Root: reg.Root, Seq: reg.Seq, Events: n, Agents: len(reg.Agents),
		Violations: uint64(len(reg.Violations)) + reg.ViolationsDropped}
	if reg.Def != nil {
		rl.Name = reg.Def.Name
	}
	for _, a := range reg.Agents {
		if a.Retired {
			rl.Retired++
		}
	}
	return rl
}

func printRegistry(w io.Writer, v *registryView, p point) {
	fmt.Fprintf(w, "root %s (%s) as of %s: folded up to seq %d, state hash %.16s\n", v.Name, v.Root, p, v.Seq, v.StateHash)
	if v.Def == nil {
		fmt.Fprintf(w, "  (no RootRegistered event at this point)\n")
		return
	}
	if v.MigratedTo != "" {
		fmt.Fprintf(w, "  migrated to %s\n", v.MigratedTo)
	}
	for _, c := range v.Def.Capabilities {
		fmt.Fprintf(w, "  cap  %s\n", capString(c.capability()))
	}
	for _, t := range v.Def.Tasks {
		fmt.Fprintf(w, "  task %s\n", taskString(t))
	}
	for _, a := range v.Agents {
		ind := strings.Repeat("  ", strings.Count(a.Path, "/")+1)
		mark := ""
		if a.Retired {
			mark = fmt.Sprintf("  [RETIRED at seq %d]", a.RetiredSeq)
		}
		fmt.Fprintf(w, "%s%s%s\n", ind, a.Path, mark)
		stored, claimed := step{Stored: a.CreatedStored, Claimed: a.CreatedAt}.times()
		if a.CreatedStored == "" {
			stored, claimed = fmtTimeString(a.CreatedAt), ""
		}
		fmt.Fprintf(w, "%s  created at seq %d, %s, by %s; primer %q%s\n", ind, a.CreatedSeq, stored, a.Creator, clip(a.Primer, 60), claimed)
		for _, e := range a.Effective {
			fmt.Fprintf(w, "%s  cap  %s\n", ind, e)
		}
		for _, g := range a.Granted {
			if _, ok := a.effectiveSet[g.capability().Key()]; !ok {
				fmt.Fprintf(w, "%s  cap  %s %s: granted but not effective (an ancestor lacks it)\n", ind, g.Kind, g.Name)
			}
		}
		for _, t := range a.Tasks {
			fmt.Fprintf(w, "%s  task %s\n", ind, taskString(t))
		}
	}
	if n := len(v.Violations); n > 0 {
		fmt.Fprintf(w, "%d violation(s) (events not applied):\n", n)
		for _, x := range v.Violations {
			fmt.Fprintf(w, "  seq %d %s %s: %s\n", x.Seq, x.Code, x.Subject, x.Reason)
		}
	}
}

func runResolve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("resolve", "REF", "Show what a task ref (<fingerprint>/<path>#<task>) resolves to as of the point, or why it fails.", &c, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("resolve", "want one task ref, got %d arguments", fs.NArg())
	}
	ref, err := parseRef(fs.Arg(0))
	if err != nil {
		return usageErr("resolve", "%v", err)
	}
	p, err := c.point("resolve")
	if err != nil {
		return err
	}
	src, err := c.open(ctx, "resolve")
	if err != nil {
		return err
	}
	defer src.Close()
	res, rerr := resolveAt(ctx, src, &c, ref, p)
	if c.json {
		out := resolveOutput{Ref: fs.Arg(0), Point: p.String(), Resolved: res}
		if rerr != nil {
			out.Error = rerr.Error()
		}
		if err := json.NewEncoder(stdout).Encode(out); err != nil {
			return err
		}
		return rerr
	}
	if rerr != nil {
		fmt.Fprintf(stdout, "%s does not resolve as of %s:\n  %v\n", fs.Arg(0), p, rerr)
		return rerr
	}
	fmt.Fprintf(stdout, "%s resolves as of %s (registry at seq %d):\n", fs.Arg(0), p, res.Seq)
	fmt.Fprintf(stdout, "  root    %s (%.12s)%s\n", res.RootName, res.Root, map[bool]string{true: " via migration to " + res.ResolvedUnder[:12], false: ""}[res.Migrated])
	fmt.Fprintf(stdout, "  agent   %s\n  primer  %q\n", orRoot(res.Path), res.Primer)
	for _, e := range res.Capabilities {
		fmt.Fprintf(stdout, "  cap     %s\n", e)
	}
	fmt.Fprintf(stdout, "  task    %s\n", taskString(res.Task))
	if res.Task.Doc != "" {
		fmt.Fprintf(stdout, "          %q\n", res.Task.Doc)
	}
	return nil
}

func orRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}

// refParts is a parsed task ref (the agent package's TaskRef, kept local so
// the tool does not need a runtime).
type refParts struct{ Root, Path, Task string }

func parseRef(s string) (refParts, error) {
	root, rest, ok := strings.Cut(s, "/")
	i := strings.LastIndexByte(rest, '#')
	if !ok || i < 0 {
		return refParts{}, fmt.Errorf("task ref %q: want <fingerprint>/<path>#<task>", s)
	}
	r := refParts{Root: root, Path: rest[:i], Task: rest[i+1:]}
	if err := events.ValidateFingerprint(r.Root); err != nil {
		return r, err
	}
	if r.Path != "" {
		if err := events.ValidatePath(r.Path); err != nil {
			return r, err
		}
	}
	return r, events.ValidateSegment(r.Task)
}

// resolution is what `resolve` reports.
type resolution struct {
	Root          string          `json:"root"`
	RootName      string          `json:"root_name"`
	ResolvedUnder string          `json:"resolved_under"` // the root definition whose capabilities apply
	Migrated      bool            `json:"migrated"`
	Path          string          `json:"path"`
	Primer        string          `json:"primer"`
	Capabilities  []effectiveView `json:"caps"`
	Task          events.TaskDef  `json:"task"`
	Seq           uint64          `json:"seq"`
}

// resolveOutput is what `resolve --json` prints.
type resolveOutput struct {
	Ref      string      `json:"ref"`
	Point    string      `json:"point"`
	Resolved *resolution `json:"resolved"` // null when the ref does not resolve
	Error    string      `json:"error"`    // why not; "" when it resolves
}

var errUnresolvable = errors.New("does not resolve")

// resolveAt does what Runtime.Resolve does, from the log alone: the root
// definition is the one recorded in RootRegistered (following recorded
// migrations); capabilities stay symbolic.
func resolveAt(ctx context.Context, src *source, c *common, ref refParts, p point) (*resolution, error) {
	reg, _, err := src.registryAt(ctx, c, ref.Root, p)
	if err != nil {
		return nil, err
	}
	if reg.Def == nil {
		return nil, fmt.Errorf("root %.12s has no RootRegistered event as of %s: %w", ref.Root, p, errUnresolvable)
	}
	res := &resolution{Root: ref.Root, RootName: reg.Def.Name, ResolvedUnder: ref.Root, Path: ref.Path, Seq: reg.Seq, Capabilities: []effectiveView{}}
	def := *reg.Def
	for cur, hops := reg, 0; cur.MigratedTo != "" && hops < 16; hops++ {
		next, _, err := src.registryAt(ctx, c, cur.MigratedTo, p)
		if err != nil {
			return nil, err
		}
		if next.Def == nil {
			return nil, fmt.Errorf("root migrated to %.12s, which has no RootRegistered event as of %s: %w", cur.MigratedTo, p, errUnresolvable)
		}
		def, res.ResolvedUnder, res.Migrated, cur = *next.Def, cur.MigratedTo, true, next
	}
	tasks := map[string]*events.TaskDef{}
	if ref.Path == "" {
		res.Primer = def.Primer
		for i := range def.Tasks {
			tasks[def.Tasks[i].Name] = &def.Tasks[i]
		}
	} else {
		a := reg.Agents[ref.Path]
		if a == nil {
			return nil, fmt.Errorf("agent %q does not exist as of %s: %w", ref.Path, p, errUnresolvable)
		}
		if a.Retired {
			return nil, fmt.Errorf("agent %q was retired at seq %d by %s: %w", ref.Path, a.RetiredSeq, a.RetiredBy, errUnresolvable)
		}
		res.Primer, tasks = a.Primer, a.Tasks
	}
	t, ok := tasks[ref.Task]
	if !ok {
		return nil, fmt.Errorf("agent %s has no task %q as of %s (it has: %s): %w", orRoot(ref.Path), ref.Task, p,
			strings.Join(slices.Sorted(mapsKeys(tasks)), ", "), errUnresolvable)
	}
	res.Task = *t
	eff, err := reg.EffectiveUnder(def.Capabilities, ref.Path)
	if err != nil {
		return nil, err
	}
	for _, e := range eff {
		res.Capabilities = append(res.Capabilities, effectiveOf(e))
	}
	return res, nil
}
