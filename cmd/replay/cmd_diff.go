package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// change is one difference between two registries.
type change struct {
	Op     string `json:"op"` // "+", "-", "~"
	Path   string `json:"path"`
	What   string `json:"what"`   // agent, retired, primer, grant, effective, task, violation, migrated
	Before string `json:"before"` // "" for an addition
	After  string `json:"after"`  // "" for a removal
}

func (c change) String() string {
	switch c.Op {
	case "+":
		return fmt.Sprintf("+ %-10s %s  %s", c.What, orRoot(c.Path), c.After)
	case "-":
		return fmt.Sprintf("- %-10s %s  %s", c.What, orRoot(c.Path), c.Before)
	}
	return fmt.Sprintf("~ %-10s %s  %s  ->  %s", c.What, orRoot(c.Path), c.Before, c.After)
}

func runDiff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("diff", "", "Show what changed in a root's registry between two points: --from-seq/--from-time and the point (--seq/--time, default now).", &c, stderr)
	fromSeq := fs.Uint64("from-seq", 0, "the earlier point: a stream sequence")
	fromTime := fs.String("from-time", "", "the earlier point: an RFC3339 time")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("diff", "unexpected argument %q", fs.Arg(0))
	}
	if *fromSeq == 0 && *fromTime == "" {
		return usageErr("diff", "give the earlier point with --from-seq or --from-time")
	}
	from, err := parsePoint("diff", *fromSeq, *fromTime)
	if err != nil {
		return err
	}
	to, err := c.point("diff")
	if err != nil {
		return err
	}
	src, err := c.open(ctx, "diff")
	if err != nil {
		return err
	}
	defer src.Close()
	root, err := src.pickRoot(ctx, "diff", c.root)
	if err != nil {
		return err
	}
	recs, err := src.records(ctx, &c, root, to)
	if err != nil {
		return err
	}
	var early []int
	for i, r := range recs {
		if from.includes(r) {
			early = append(early, i)
		}
	}
	a, err := viewOf(foldTrusted(root, recs[:len(early)], c.trust), recs[:len(early)])
	if err != nil {
		return err
	}
	b, err := viewOf(foldTrusted(root, recs, c.trust), recs)
	if err != nil {
		return err
	}
	changes := diffViews(a, b)
	if c.json {
		enc := json.NewEncoder(stdout)
		for _, ch := range changes {
			if err := enc.Encode(ch); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(stdout, "root %s (%.12s): %s (seq %d) -> %s (seq %d): %d change(s)\n", b.Name, root, from, a.Seq, to, b.Seq, len(changes))
	for _, ch := range changes {
		fmt.Fprintln(stdout, ch)
	}
	return nil
}

// diffViews lists the changes from a to b, agents in path order.
func diffViews(a, b *registryView) []change {
	var out []change
	if a.MigratedTo != b.MigratedTo {
		out = append(out, change{Op: "~", What: "migrated", Before: a.MigratedTo, After: b.MigratedTo})
	}
	if a.Def == nil && b.Def != nil {
		out = append(out, change{Op: "+", What: "root", After: b.Def.Name})
	}
	before := map[string]*agentView{}
	for _, av := range a.Agents {
		before[av.Path] = av
	}
	after := map[string]*agentView{}
	for _, bv := range b.Agents {
		after[bv.Path] = bv
	}
	paths := slices.Sorted(mapsKeys(after))
	for p := range before {
		if after[p] == nil {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	paths = slices.Compact(paths)
	for _, p := range paths {
		x, y := before[p], after[p]
		if y == nil {
			out = append(out, change{Op: "-", Path: p, What: "agent"})
			continue
		}
		if x == nil {
			out = append(out, change{Op: "+", Path: p, What: "agent", After: fmt.Sprintf("created at seq %d by %s", y.CreatedSeq, y.Creator)})
			x = &agentView{}
		}
		if x.Retired != y.Retired {
			out = append(out, change{Op: "~", Path: p, What: "retired", Before: fmt.Sprint(x.Retired), After: fmt.Sprintf("%v (seq %d)", y.Retired, y.RetiredSeq)})
		}
		if x.Primer != y.Primer && before[p] != nil {
			out = append(out, change{Op: "~", Path: p, What: "primer", Before: x.Primer, After: y.Primer})
		}
		out = append(out, diffMaps(p, "grant", capMap(x), capMap(y))...)
		out = append(out, diffMaps(p, "effective", x.effectiveSet, y.effectiveSet)...)
		out = append(out, diffMaps(p, "task", taskMap(x), taskMap(y))...)
	}
	seen := map[uint64]bool{}
	for _, v := range a.Violations {
		seen[v.Seq] = true
	}
	for _, v := range b.Violations {
		if !seen[v.Seq] {
			out = append(out, change{Op: "+", Path: v.Path, What: "violation", After: fmt.Sprintf("seq %d %s: %s", v.Seq, v.Code, v.Reason)})
		}
	}
	return out
}

func diffMaps(path, what string, a, b map[string]string) []change {
	var out []change
	keys := slices.Sorted(mapsKeys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		x, inA := a[k]
		y, inB := b[k]
		switch {
		case !inA:
			out = append(out, change{Op: "+", Path: path, What: what, After: label(k, y)})
		case !inB:
			out = append(out, change{Op: "-", Path: path, What: what, Before: label(k, x)})
		case x != y:
			out = append(out, change{Op: "~", Path: path, What: what, Before: label(k, x), After: label(k, y)})
		}
	}
	return out
}

func label(key, value string) string {
	if strings.HasPrefix(value, key) {
		return value
	}
	return key + " " + value
}

func capMap(a *agentView) map[string]string {
	out := map[string]string{}
	for k, c := range a.grantByKey {
		out[k] = capString(c)
	}
	return out
}

func taskMap(a *agentView) map[string]string {
	out := map[string]string{}
	for n, t := range a.taskByName {
		out[n] = taskString(t) + fmt.Sprintf(" doc=%q", t.Doc)
	}
	return out
}
