package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// agentView is an agent as `registry` and `diff` show it.
type agentView struct {
	Path         string              `json:"path"`
	Primer       string              `json:"primer"`
	Creator      string              `json:"creator"`
	CreatedSeq   uint64              `json:"created_seq"`
	CreatedAt    string              `json:"created_at"`
	Retired      bool                `json:"retired"`
	RetiredSeq   uint64              `json:"retired_seq,omitempty"`
	Granted      []events.Capability `json:"granted"`   // its own grants
	Effective    []effectiveView     `json:"effective"` // what it may use
	Tasks        []events.TaskDef    `json:"tasks"`
	taskByName   map[string]events.TaskDef
	grantByKey   map[string]events.Capability
	effectiveSet map[string]string
}

type effectiveView struct {
	Capability events.Capability   `json:"capability"`
	Chain      []events.Capability `json:"chain"` // root first
}

// registryView is a root's registry as `registry --json` prints it.
type registryView struct {
	Root       string                `json:"root"`
	Name       string                `json:"name"`
	Seq        uint64                `json:"seq"`
	StateHash  string                `json:"state_hash"`
	MigratedTo string                `json:"migrated_to,omitempty"`
	Def        *events.RootDef       `json:"def"`
	Agents     []*agentView          `json:"agents"`
	Violations []projector.Violation `json:"violations"`
}

func viewOf(reg *projector.Registry) (*registryView, error) {
	hash, err := reg.StateHash()
	if err != nil {
		return nil, err
	}
	v := &registryView{Root: reg.Root, Seq: reg.Seq, StateHash: hash, MigratedTo: reg.MigratedTo, Def: reg.Def, Violations: reg.Violations}
	if reg.Def != nil {
		v.Name = reg.Def.Name
	}
	if v.Violations == nil {
		v.Violations = []projector.Violation{}
	}
	for _, p := range reg.Paths() {
		a := reg.Agents[p]
		av := &agentView{Path: p, Primer: a.Primer, Creator: a.Creator, CreatedSeq: a.CreatedSeq, CreatedAt: fmtTime(a.CreatedAt),
			Retired: a.Retired, RetiredSeq: a.RetiredSeq, Granted: []events.Capability{}, Effective: []effectiveView{}, Tasks: []events.TaskDef{},
			taskByName: map[string]events.TaskDef{}, grantByKey: map[string]events.Capability{}, effectiveSet: map[string]string{}}
		for _, k := range slices.Sorted(mapsKeys(a.Capabilities)) {
			av.Granted = append(av.Granted, a.Capabilities[k].Capability)
			av.grantByKey[k] = a.Capabilities[k].Capability
		}
		if reg.Def != nil {
			eff, err := reg.Effective(p)
			if err != nil {
				return nil, err
			}
			for _, e := range eff {
				av.Effective = append(av.Effective, effectiveView{Capability: e.Capability, Chain: e.Chain})
				av.effectiveSet[e.Capability.Key()] = chainString(e.Chain)
			}
		}
		for _, n := range slices.Sorted(mapsKeys(a.Tasks)) {
			av.Tasks = append(av.Tasks, *a.Tasks[n])
			av.taskByName[n] = *a.Tasks[n]
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

// chainString renders an effective capability as the patterns of each link.
func chainString(chain []events.Capability) string {
	var parts []string
	for _, c := range chain {
		parts = append(parts, fmt.Sprintf("include=%v exclude=%v", c.Include, c.Exclude))
	}
	return strings.Join(parts, " ∩ ")
}

func runRegistry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("registry", "", "Print a root's registry as of the point: agents, effective capabilities, tasks with schemas, retired ones marked.", &c, stderr)
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
	root, err := src.pickRoot(ctx, "registry", c.root)
	if err != nil {
		return err
	}
	reg, _, err := src.registryAt(ctx, &c, root, p)
	if err != nil {
		return err
	}
	v, err := viewOf(reg)
	if err != nil {
		return err
	}
	if c.json {
		return json.NewEncoder(stdout).Encode(v)
	}
	printRegistry(stdout, v, p)
	return nil
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
		fmt.Fprintf(w, "  cap  %s\n", capString(c))
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
		fmt.Fprintf(w, "%s  created at seq %d, %s, by %s; primer %q\n", ind, a.CreatedSeq, a.CreatedAt, a.Creator, clip(a.Primer, 60))
		for _, e := range a.Effective {
			fmt.Fprintf(w, "%s  cap  %s %s: %s\n", ind, e.Capability.Kind, e.Capability.Name, chainString(e.Chain))
		}
		for _, g := range a.Granted {
			if _, ok := a.effectiveSet[g.Key()]; !ok {
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
		out := map[string]any{"ref": fs.Arg(0), "point": p.String()}
		if rerr != nil {
			out["error"] = rerr.Error()
		} else {
			out["resolved"] = res
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
		fmt.Fprintf(stdout, "  cap     %s %s: %s\n", e.Capability.Kind, e.Capability.Name, chainString(e.Chain))
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
	Capabilities  []effectiveView `json:"capabilities"`
	Task          events.TaskDef  `json:"task"`
	Seq           uint64          `json:"seq"`
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
	res := &resolution{Root: ref.Root, RootName: reg.Def.Name, ResolvedUnder: ref.Root, Path: ref.Path, Seq: reg.Seq}
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
		res.Capabilities = append(res.Capabilities, effectiveView{Capability: e.Capability, Chain: e.Chain})
	}
	return res, nil
}
