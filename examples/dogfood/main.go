// Command dogfood runs the pattern agentreg exists for, end to end, on the
// embedded default: an `architect` root creates a math specialist at run
// time, this process prints the specialist's task refs and exits, and a new
// process resolves the refs from the log and calls them.
//
//	go run ./examples/dogfood             # both phases, the second in a new process
//	go run ./examples/dogfood -phase create
//	go run ./examples/dogfood -phase resolve REF...
//	go run ./examples/dogfood -phase snapshot
//
// The executor here is small and deterministic; it stands where a real
// deployment plugs in its model loop (see agent.Executor).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := Run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dogfood:", err)
		os.Exit(1)
	}
}

// Report is what a phase prints with -json.
type Report struct {
	Phase     string            `json:"phase"`
	Refs      map[string]string `json:"refs,omitempty"`    // agent path -> task ref
	Results   map[string]any    `json:"results,omitempty"` // task ref -> result
	StateHash string            `json:"state_hash"`
	Seq       uint64            `json:"seq"`
	Reused    bool              `json:"reused,omitempty"`
	// SnapshotSeq is the sequence of the snapshot the registry was restored
	// from, 0 if it was replayed from the log's start.
	SnapshotSeq uint64 `json:"snapshot_seq"`
}

// Run runs one invocation of the demo.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dogfood", flag.ContinueOnError)
	dataDir := fs.String("data", "dogfood-data", "data directory of the embedded NATS server")
	natsURL := fs.String("nats-url", os.Getenv("NATS_URL"), "connect to this NATS server instead of embedding one (env NATS_URL)")
	phase := fs.String("phase", "", "create, resolve or snapshot; empty runs create here and resolve in a new process")
	asJSON := fs.Bool("json", false, "print one JSON report instead of text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out := &printer{w: stdout, quiet: *asJSON}
	opts := []agent.Option{
		agent.WithCatalog(catalog()),
		agent.WithExecutor(agent.ExecutorFunc(execute)),
		agent.WithDefaultActor("user:dogfood"),
		agent.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
	}
	if *natsURL != "" {
		opts = append(opts, agent.WithNATSURL(*natsURL))
	} else {
		opts = append(opts, agent.WithDataDir(*dataDir))
	}
	var rep *Report
	var err error
	switch *phase {
	case "":
		if err := phaseRun(ctx, opts, "create", nil, out); err != nil {
			return err
		}
		return respawn(ctx, args, out.refs, stdout)
	case "create", "resolve", "snapshot":
		rep = &Report{Phase: *phase}
		err = phaseRun(ctx, opts, *phase, fs.Args(), out)
	default:
		return fmt.Errorf("-phase %q: want create, resolve or snapshot\nusage: dogfood [-data DIR] [-nats-url URL] [-phase create|resolve|snapshot] [-json] [REF...]", *phase)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		rep.Refs, rep.Results, rep.StateHash, rep.Seq, rep.Reused, rep.SnapshotSeq = out.refs, out.results, out.hash, out.seq, out.reused, out.snapSeq
		return json.NewEncoder(stdout).Encode(rep)
	}
	return nil
}

// printer collects what a phase found and prints it as text unless quiet.
type printer struct {
	w       io.Writer
	quiet   bool
	refs    map[string]string
	results map[string]any
	hash    string
	seq     uint64
	reused  bool
	snapSeq uint64
}

func (p *printer) printf(format string, a ...any) {
	if !p.quiet {
		fmt.Fprintf(p.w, format, a...)
	}
}

func phaseRun(ctx context.Context, opts []agent.Option, phase string, refs []string, out *printer) error {
	rt, err := agent.Open(ctx, opts...)
	if err != nil {
		return err
	}
	defer rt.Close()
	ctx = agent.WithActor(ctx, "user:dogfood")
	root, err := rt.RegisterRoot(ctx, architect())
	if err != nil {
		return err
	}
	switch phase {
	case "create":
		err = create(ctx, rt, root, out)
	case "resolve":
		err = resolve(ctx, rt, root, refs, out)
	case "snapshot":
		hdr, serr := rt.Snapshot(ctx, root.Root)
		if err = serr; err == nil {
			out.printf("snapshot %s taken: seq %d, %d bytes\n", hdr.Name(), hdr.Seq, hdr.Size)
		}
	}
	if err != nil {
		return err
	}
	out.hash, out.seq, err = rt.StateHash(ctx, root.Root)
	if err != nil {
		return err
	}
	if h, ok := rt.RestoredFrom(root.Root); ok {
		out.snapSeq = h.Seq
		out.printf("registry restored from the snapshot at seq %d, then the log's tail\n", h.Seq)
	}
	out.printf("registry of root %.12s: state hash %.16s at seq %d\n", root.Root, out.hash, out.seq)
	return nil
}

// create asks the architect for a specialist, as the framework would.
func create(ctx context.Context, rt *agent.Runtime, root agent.AgentRef, out *printer) error {
	url := rt.URL()
	if url != "" {
		out.printf("embedded NATS server at %s\n", url)
	}
	out.printf("root %q registered, fingerprint %s\n", "architect", root.Root)
	t, err := rt.Resolve(ctx, agent.TaskRef{Root: root.Root, Task: "create_specialist"})
	if err != nil {
		return err
	}
	res, err := t.Call(ctx, map[string]any{"prompt": "a specialist that solves math problems"})
	if err != nil {
		return err
	}
	reply := res.(map[string]any)
	out.reused = reply["reused"].(bool)
	if out.reused {
		out.printf("math_solver was stored by an earlier run: reusing it\n")
	} else {
		out.printf("architect created math_solver and math_solver/equation_parser\n")
	}
	out.refs = map[string]string{
		"math_solver":                 reply["solver"].(string),
		"math_solver/equation_parser": reply["parser"].(string),
	}
	out.printf("task refs (they resolve in any process):\n  %s\n  %s\n", out.refs["math_solver"], out.refs["math_solver/equation_parser"])
	return nil
}

// resolve resolves each ref from the log and calls it.
func resolve(ctx context.Context, rt *agent.Runtime, root agent.AgentRef, refs []string, out *printer) error {
	if len(refs) == 0 {
		return fmt.Errorf("-phase resolve: no task refs given\nusage: dogfood -phase resolve REF...")
	}
	out.results = map[string]any{}
	for _, s := range refs {
		ref, err := agent.ParseTaskRef(s)
		if err != nil {
			return err
		}
		t, err := rt.Resolve(ctx, ref)
		if err != nil {
			return err
		}
		var caps []string
		for _, c := range t.Capabilities {
			caps = append(caps, fmt.Sprintf("%s %s %v", c.Ref.Kind, c.Ref.Name, c.MemberNames()))
		}
		res, err := t.Call(ctx, map[string]any{"equation": "4x + 5 = 13"})
		if err != nil {
			return err
		}
		out.results[s] = res
		out.printf("resolved %s#%s (capabilities: %s)\n  %s(%q) = %v\n", ref.Path, ref.Task, strings.Join(caps, "; "), ref.Task, "4x + 5 = 13", res)
	}
	info, err := rt.Describe(ctx, root)
	if err != nil {
		return err
	}
	out.printf("lineage:\n  architect (root %.12s, registered at seq %d by %s)\n", root.Root, info.CreatedSeq, info.Creator)
	for page := (agent.AgentPage{}); ; {
		page, err = rt.List(ctx, root.Root, agent.ListOptions{After: page.Next})
		if err != nil {
			return err
		}
		for _, a := range page.Agents {
			p := a.Ref.Path
			depth := strings.Count(p, "/") + 2
			out.printf("%s%s: created at seq %d, %s, by %s",
				strings.Repeat("  ", depth), p[strings.LastIndexByte(p, '/')+1:], a.CreatedSeq, a.CreatedAt.Format(time.RFC3339), a.Creator)
			if a.Retired {
				out.printf(", retired at seq %d", a.RetiredSeq)
			}
			out.printf("\n")
		}
		if page.Next == "" {
			return nil
		}
	}
}

// respawn runs the resolve phase in a new process of this same program.
func respawn(ctx context.Context, args []string, refs map[string]string, stdout io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	fmt.Fprintf(stdout, "\nstarting a new process to resolve the refs...\n\n")
	child := append(append([]string{}, args...), "-phase", "resolve", refs["math_solver"], refs["math_solver/equation_parser"])
	cmd := exec.CommandContext(ctx, exe, child...)
	cmd.Stdout, cmd.Stderr = stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("resolve process: %w", err)
	}
	return nil
}

// catalog is what this host offers agents.
func catalog() *agent.Catalog {
	c := agent.NewCatalog()
	must(c.AddModule("math", map[string]any{
		"abs": math.Abs, "floor": math.Floor, "sqrt": math.Sqrt, "pow": math.Pow,
		"sin": math.Sin, "cos": math.Cos, "pi": math.Pi, "_frexp": math.Frexp,
	}))
	must(c.AddType("Agent", agent.Spec{}))
	return c
}

// architect is the root agent, defined in code.
func architect() events.RootDef {
	return events.RootDef{
		Name:   "architect",
		Primer: "You design specialist agents. Give each the least it needs, and hand back its task.",
		Capabilities: []events.Capability{
			{Kind: events.KindType, Name: "Agent", Visibility: events.VisibilityMedium},
			{Kind: events.KindModule, Name: "math", Visibility: events.VisibilityLow},
		},
		Tasks: []events.TaskDef{{
			Name: "create_specialist", Doc: "Create a specialist agent for prompt and return its task.",
			Input:  events.Schema{Type: "object", Fields: []events.Field{{Name: "prompt", Schema: events.Schema{Type: "string"}, Required: true}}},
			Output: events.Schema{Type: "object"},
		}},
	}
}

var equationInput = events.Schema{Type: "object", Fields: []events.Field{{Name: "equation", Schema: events.Schema{Type: "string"}, Required: true}}}

// execute is the demo's executor: deterministic code standing where a model
// loop writes and runs the implementation of each task.
func execute(ctx context.Context, call *agent.Call) (any, error) {
	ref := call.Task.Ref
	switch ref.Path + "#" + ref.Task {
	case "#create_specialist":
		return createSpecialist(ctx, call)
	case "math_solver#solve_math_problem":
		return solve(ctx, call)
	case "math_solver/equation_parser#parse_equation":
		a, b, c, err := parse(call.Args["equation"].(string))
		if err != nil {
			return nil, err
		}
		return fmt.Sprintf("a=%g b=%g c=%g", a, b, c), nil
	}
	return nil, fmt.Errorf("the demo executor has no implementation for %s", ref)
}

func createSpecialist(ctx context.Context, call *agent.Call) (any, error) {
	rt, root := call.Runtime, call.Task.Ref.Agent()
	solver := root.Child("math_solver")
	parser := solver.Child("equation_parser")
	reused := false
	_, _, err := rt.Create(ctx, root, agent.Spec{
		Name:   "math_solver",
		Primer: "You solve math problems. Parse the equation with your parser, then solve it.",
		Capabilities: []events.Capability{
			{Kind: events.KindModule, Name: "math", Include: []string{"abs", "floor", "sqrt", "pow"}, Visibility: events.VisibilityHigh},
		},
		Tasks: []events.TaskDef{{Name: "solve_math_problem", Doc: "Solve a linear equation in x.", Input: equationInput, Output: events.Schema{Type: "string"}}},
	})
	switch {
	case errors.Is(err, agent.ErrExists):
		reused = true
	case err != nil:
		return nil, err
	}
	// Created even when math_solver was there: a run that stopped between
	// the two creates left the parser missing.
	{
		_, _, err = rt.Create(ctx, solver, agent.Spec{
			Name:         "equation_parser",
			Primer:       "You turn an equation like '4x + 5 = 13' into its coefficients.",
			Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math", Include: []string{"abs"}}},
			Tasks:        []events.TaskDef{{Name: "parse_equation", Doc: "Coefficients of a*x + b = c.", Input: equationInput, Output: events.Schema{Type: "string"}}},
		})
		if err != nil && !errors.Is(err, agent.ErrExists) {
			return nil, err
		}
	}
	return map[string]any{
		"solver": agent.TaskRef{Root: solver.Root, Path: solver.Path, Task: "solve_math_problem"}.String(),
		"parser": agent.TaskRef{Root: parser.Root, Path: parser.Path, Task: "parse_equation"}.String(),
		"reused": reused,
	}, nil
}

// solve uses the solver's own child (resolved from the log like any other
// ref) and the math members its capability grants.
func solve(ctx context.Context, call *agent.Call) (any, error) {
	ref := call.Task.Ref
	pt, err := call.Runtime.Resolve(ctx, agent.TaskRef{Root: ref.Root, Path: ref.Path + "/equation_parser", Task: "parse_equation"})
	if err != nil {
		return nil, err
	}
	parsed, err := pt.Call(ctx, call.Args)
	if err != nil {
		return nil, err
	}
	var a, b, c float64
	if _, err := fmt.Sscanf(parsed.(string), "a=%g b=%g c=%g", &a, &b, &c); err != nil {
		return nil, fmt.Errorf("parser answered %q: %w", parsed, err)
	}
	m, ok := call.Task.Capability(events.KindModule, "math")
	if !ok {
		return nil, fmt.Errorf("math_solver does not hold math (revoked?)")
	}
	abs, ok := m.Members["abs"].(func(float64) float64)
	if !ok {
		return nil, fmt.Errorf("math_solver's math capability lacks abs")
	}
	if abs(a) < 1e-12 {
		return nil, fmt.Errorf("equation %q has no x term", call.Args["equation"])
	}
	x := (c - b) / a
	return "x = " + strconv.FormatFloat(x, 'g', -1, 64), nil
}

var linear = regexp.MustCompile(`^\s*([-+]?\d*\.?\d*)\s*x\s*([-+])\s*(\d+\.?\d*)\s*=\s*([-+]?\d+\.?\d*)\s*$`)

func parse(eq string) (a, b, c float64, err error) {
	m := linear.FindStringSubmatch(eq)
	if m == nil {
		return 0, 0, 0, fmt.Errorf("equation %q: want the form 'a x + b = c'", eq)
	}
	a = 1
	switch m[1] {
	case "", "+":
	case "-":
		a = -1
	default:
		if a, err = strconv.ParseFloat(m[1], 64); err != nil {
			return 0, 0, 0, fmt.Errorf("equation %q: coefficient %q: %w", eq, m[1], err)
		}
	}
	if b, err = strconv.ParseFloat(m[3], 64); err != nil {
		return 0, 0, 0, fmt.Errorf("equation %q: %w", eq, err)
	}
	if m[2] == "-" {
		b = -b
	}
	if c, err = strconv.ParseFloat(m[4], 64); err != nil {
		return 0, 0, 0, fmt.Errorf("equation %q: %w", eq, err)
	}
	return a, b, c, nil
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}
