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
	"github.com/agentreg/agentreg/projector"
)

// step is one applied event in an agent's history.
type step struct {
	Seq uint64 `json:"seq"`
	// Stored is when the server stored the event (its message's time);
	// Claimed is the time the writer put in the event (its own clock),
	// never checked. Both RFC3339 with nanoseconds, UTC.
	Stored  string      `json:"stored"`
	Claimed string      `json:"claimed"`
	Type    events.Type `json:"type"`
	Actor   string      `json:"actor"`
	Detail  string      `json:"detail"`
	// OnBehalfOf is the event's claimed on-behalf-of (key `obo`): whom
	// the writer's caller said it was for, never checked.
	OnBehalfOf string `json:"on_behalf_of_claimed"`
	// Grants and Tasks are what an AgentCreated of schema version 2
	// carries: the agent's initial capabilities (normalized, as the fold
	// records each of them: a grant at this step's seq, time and actor) and
	// tasks. A version 1 creation has neither; its grants and tasks are
	// steps of their own.
	Grants []wireCap        `json:"grants"`
	Tasks  []events.TaskDef `json:"tasks"`
}

// stepOf is the step of an applied event stored as r.
func stepOf(r events.Record, e *events.Event) step {
	s := step{Seq: r.Seq, Stored: r.Time.UTC().Format(time.RFC3339Nano), Claimed: time.Unix(0, e.Time).UTC().Format(time.RFC3339Nano),
		Type: e.Type, Actor: e.Actor, OnBehalfOf: e.OnBehalfOf}
	if e.Type != events.AgentCreated {
		s.Detail = detail(e)
		return s
	}
	// The grants and tasks go on lines of their own (text) or in fields
	// (JSON), not into the one-line detail.
	s.Detail = primerString(e.Created)
	for _, c := range e.Created.Capabilities {
		s.Grants = append(s.Grants, capOf(c.Normalized()))
	}
	s.Tasks = slices.Clone(e.Created.Tasks)
	if s.Tasks == nil {
		s.Tasks = []events.TaskDef{}
	}
	if s.Grants == nil {
		s.Grants = []wireCap{}
	}
	return s
}

// clockSkew is how far the writer's claimed time may be from the stored
// time before lineage shows it: closer than this it is the same moment
// seen by two clocks.
const clockSkew = time.Second

// times is the step's stored time as text shows it, and a note with the
// writer's claimed time when it is clockSkew or more away ("" otherwise).
func (s step) times() (stored, claimed string) {
	st, err1 := time.Parse(time.RFC3339Nano, s.Stored)
	ct, err2 := time.Parse(time.RFC3339Nano, s.Claimed)
	if err1 != nil || err2 != nil {
		return s.Stored, ""
	}
	stored = st.Format(time.RFC3339)
	if d := st.Sub(ct); d >= clockSkew || d <= -clockSkew {
		claimed = fmt.Sprintf("  (writer's clock said %s)", ct.Format(time.RFC3339))
	}
	return stored, claimed
}

// node is an agent in a lineage: its steps and its children.
type node struct {
	Path     string  `json:"path"`
	Name     string  `json:"name"`
	Selected bool    `json:"selected"`
	Retired  bool    `json:"retired"`
	Steps    []step  `json:"steps"`
	Children []*node `json:"children"`
}

// appliedSteps groups the applied events of a root by agent path.
func appliedSteps(reg *projector.Registry, recs []events.Record) map[string][]step {
	bad := map[uint64]bool{}
	for _, v := range reg.Violations {
		bad[v.Seq] = true
	}
	out := map[string][]step{}
	for _, r := range recs {
		if bad[r.Seq] {
			continue
		}
		e, err := events.Decode(r.Data)
		if err != nil {
			continue
		}
		out[e.Path] = append(out[e.Path], stepOf(r, e))
	}
	return out
}

func runLineage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("lineage", "AGENT", "Show an agent's ancestors and descendants as of the point, each step with actor, time and sequence.\nAGENT is a path under --root, or <fingerprint>/<path>.", &c, stderr)
	format := fs.String("format", "text", "text, dot (Graphviz) or mermaid")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("lineage", "want one AGENT, got %d arguments", fs.NArg())
	}
	if !slices.Contains([]string{"text", "dot", "mermaid"}, *format) {
		return usageErr("lineage", "--format %q: want text, dot or mermaid", *format)
	}
	p, err := c.point("lineage")
	if err != nil {
		return err
	}
	sel, path := c.root, fs.Arg(0)
	if fp, rest, ok := strings.Cut(path, "/"); ok && events.ValidateFingerprint(fp) == nil {
		sel, path = fp, rest
	}
	if path != "" {
		if err := events.ValidatePath(path); err != nil {
			return usageErr("lineage", "AGENT: %v", err)
		}
	}
	src, err := c.open(ctx, "lineage")
	if err != nil {
		return err
	}
	defer src.Close()
	root, err := src.pickRoot(ctx, "lineage", sel)
	if err != nil {
		return err
	}
	reg, recs, err := src.registryAt(ctx, &c, root, p)
	if err != nil {
		return err
	}
	if path != "" && reg.Agents[path] == nil {
		return fmt.Errorf("lineage: agent %q does not exist under root %.12s as of %s", path, root, p)
	}
	tree := lineageTree(reg, appliedSteps(reg, recs), path)
	switch {
	case c.json:
		return json.NewEncoder(stdout).Encode(tree)
	case *format == "dot":
		writeDot(stdout, tree)
	case *format == "mermaid":
		writeMermaid(stdout, tree)
	default:
		writeTree(stdout, tree, "", true, true)
	}
	return nil
}

// lineageTree builds the chain from the root down to path, with path's whole
// subtree below it.
func lineageTree(reg *projector.Registry, steps map[string][]step, path string) *node {
	name := "(root)"
	if reg.Def != nil {
		name = reg.Def.Name
	}
	top := &node{Path: "", Name: name, Steps: orEmpty(steps[""]), Selected: path == "", Children: []*node{}}
	cur := top
	for _, anc := range append(events.Ancestors(path), path) {
		if anc == "" {
			break
		}
		n := newNode(reg, steps, anc, anc == path)
		cur.Children = append(cur.Children, n)
		cur = n
	}
	var grow func(n *node)
	grow = func(n *node) {
		for _, c := range reg.Children(n.Path) {
			child := newNode(reg, steps, c, false)
			n.Children = append(n.Children, child)
			grow(child)
		}
	}
	grow(cur)
	return top
}

func newNode(reg *projector.Registry, steps map[string][]step, p string, selected bool) *node {
	a := reg.Agents[p]
	return &node{Path: p, Name: p[strings.LastIndexByte(p, '/')+1:], Selected: selected, Retired: a != nil && a.Retired, Steps: orEmpty(steps[p]), Children: []*node{}}
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func writeTree(w io.Writer, n *node, indent string, last, top bool) {
	branch, next := "", ""
	if !top {
		branch, next = "├─ ", "│  "
		if last {
			branch, next = "└─ ", "   "
		}
	}
	mark := ""
	if n.Selected {
		mark = "  ◀"
	}
	if n.Retired {
		mark += "  [retired]"
	}
	fmt.Fprintf(w, "%s%s%s%s\n", indent, branch, n.Name, mark)
	for _, s := range n.Steps {
		stored, claimed := s.times()
		fmt.Fprintf(w, "%s%s   seq %-5d %s  %-17s by %-18s %s%s\n", indent, next, s.Seq, stored, s.Type, byString(s.Actor, s.OnBehalfOf), s.Detail, claimed)
		// What a creation carries, under the event type.
		pad := strings.Repeat(" ", len(fmt.Sprintf("seq %-5d %s  ", s.Seq, stored)))
		for _, c := range s.Grants {
			fmt.Fprintf(w, "%s%s   %s+ grant %s\n", indent, next, pad, capString(c.capability()))
		}
		for _, t := range s.Tasks {
			fmt.Fprintf(w, "%s%s   %s+ task  %s\n", indent, next, pad, taskString(t))
		}
	}
	for i, c := range n.Children {
		writeTree(w, c, indent+next, i == len(n.Children)-1, false)
	}
}

// nodeIDs names the nodes of a tree for DOT and Mermaid: the root "root",
// the others n1, n2, ... in pre-order. Paths are not used as identifiers:
// no mangling of them into identifier characters is both readable and
// one-to-one ("math-solver" and "math_solver" are different agents).
func nodeIDs(top *node) map[*node]string {
	ids := map[*node]string{top: "root"}
	var walk func(n *node)
	walk = func(n *node) {
		for _, c := range n.Children {
			ids[c] = fmt.Sprintf("n%d", len(ids))
			walk(c)
		}
	}
	walk(top)
	return ids
}

func created(n *node) string {
	for _, s := range n.Steps {
		if s.Type == events.AgentCreated || s.Type == events.RootRegistered {
			return fmt.Sprintf("seq %d by %s", s.Seq, byString(s.Actor, s.OnBehalfOf))
		}
	}
	return ""
}

func writeDot(w io.Writer, top *node) {
	id := nodeIDs(top)
	fmt.Fprintln(w, "digraph lineage {")
	fmt.Fprintln(w, "  rankdir=TB; node [shape=box];")
	var walk func(n *node)
	walk = func(n *node) {
		style := ""
		if n.Selected {
			style = ", style=bold"
		}
		if n.Retired {
			style += ", color=gray"
		}
		fmt.Fprintf(w, "  %s [label=%q%s];\n", id[n], fmt.Sprintf("%s\n%s", n.Name, created(n)), style)
		for _, c := range n.Children {
			fmt.Fprintf(w, "  %s -> %s [label=%q];\n", id[n], id[c], created(c))
			walk(c)
		}
	}
	walk(top)
	fmt.Fprintln(w, "}")
}

func writeMermaid(w io.Writer, top *node) {
	id := nodeIDs(top)
	fmt.Fprintln(w, "graph TD")
	// Labels are quoted; a quote inside one (an actor may hold any
	// character) is written as Mermaid's entity code.
	quote := strings.NewReplacer(`"`, "#quot;").Replace
	var walk func(n *node)
	walk = func(n *node) {
		label := n.Name
		if n.Retired {
			label += " (retired)"
		}
		fmt.Fprintf(w, "  %s[\"%s\"]\n", id[n], quote(label))
		if n.Selected {
			fmt.Fprintf(w, "  style %s stroke-width:3px\n", id[n])
		}
		for _, c := range n.Children {
			fmt.Fprintf(w, "  %s -->|\"%s\"| %s\n", id[n], quote(created(c)), id[c])
			walk(c)
		}
	}
	walk(top)
}
