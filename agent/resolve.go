package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// Executor runs task calls. A real deployment plugs its model loop in here:
// it gets the agent's primer, its usable capabilities and the task's
// signature, and supplies the implementation. Implementations must be safe
// for concurrent use.
type Executor interface {
	Execute(ctx context.Context, call *Call) (any, error)
}

// ExecutorFunc adapts a function to Executor.
type ExecutorFunc func(ctx context.Context, call *Call) (any, error)

// Execute calls f.
func (f ExecutorFunc) Execute(ctx context.Context, call *Call) (any, error) { return f(ctx, call) }

// Call is one invocation of a task, as handed to the Executor. The
// arguments have been validated against the task's input schema.
type Call struct {
	Task *Task
	// Args is the arguments' JSON object as encoding/json decodes it into
	// a map (numbers are float64).
	Args map[string]any
	// ArgsJSON is the arguments' JSON: unmarshal it into a type of your own.
	ArgsJSON json.RawMessage
	Runtime  *Runtime // to create or change agents on the caller's behalf
}

// Task is a resolved task: the agent rebuilt from its recipe with every
// capability checked against the catalog and its ancestors.
type Task struct {
	Ref          TaskRef
	Def          events.TaskDef
	Primer       string
	Capabilities []Capability // effective and resolved, sorted by kind and name
	RootName     string
	Seq          uint64 // the stream sequence the answer covers: every event of the agent's chain up to it was folded
	Migrated     bool   // resolved through a RootMigrated event
	contract     string // Def.Contract(), made when the ref was pinned
	rt           *Runtime
}

// Contract returns the task's contract digest (events.TaskDef.Contract):
// pin a ref to it with Ref.Pinned(t.Contract()).
func (t *Task) Contract() string {
	if t.contract == "" {
		return t.Def.Contract() // not kept: a Task may be shared between goroutines
	}
	return t.contract
}

// Capability returns the resolved capability of that kind and name.
func (t *Task) Capability(kind events.Kind, name string) (Capability, bool) {
	for _, c := range t.Capabilities {
		if c.Ref.Kind == kind && c.Ref.Name == name {
			return c, true
		}
	}
	return Capability{}, false
}

// Call validates args against the task's input schema and hands the call
// to the runtime's Executor. args is any Go value that encodes to a JSON
// object (a map, a struct, nil for no arguments); a mismatch is an error
// wrapping ErrInvalidArgs whose text is the validator's, naming each
// failing location and keyword (at most events.MaxSchemaErrorBytes of it).
func (t *Task) Call(ctx context.Context, args any) (any, error) {
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("call %s: arguments do not encode to JSON: %w: %w", t.Ref, ErrInvalidArgs, err)
	}
	if string(raw) == "null" {
		raw = []byte("{}")
	}
	in := events.JSONSchema(t.Def.InputJSONSchema())
	if err := in.ValidateJSON(raw); err != nil {
		// The validator's text is bounded (events.SchemaErrorText): a
		// schema of many branches lists failures by the thousand.
		return nil, fmt.Errorf("call %s: arguments do not match the input schema: %w: %s", t.Ref, ErrInvalidArgs, events.SchemaErrorText(err))
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		// The input schema's top-level type is object: only a legacy
		// definition's "any"-typed input could let another value through.
		return nil, fmt.Errorf("call %s: arguments are not a JSON object: %w", t.Ref, ErrInvalidArgs)
	}
	if t.rt.cfg.executor == nil {
		return nil, fmt.Errorf("call %s: the runtime was opened without WithExecutor: %w", t.Ref, ErrNoExecutor)
	}
	ctx = WithActor(ctx, ActorFrom(ctx, t.Ref.String()))
	out, err := t.rt.cfg.executor.Execute(ctx, &Call{Task: t, Args: m, ArgsJSON: raw, Runtime: t.rt})
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", t.Ref, err)
	}
	return out, nil
}

const maxMigrationHops = 16

// Resolve turns a task ref into a callable task: the root from this
// process's registry of roots, then the agent rebuilt from its recipe. For
// a root whose registry this process has loaded (it wrote to it, or viewed
// it), the registry is caught up first and resolution is cached until the
// root's next event; for any other root only the ref's ancestor chain is
// read (a few literal subjects), so a cold resolve costs the same however
// long the stream has grown. The task returned is the caller's own:
// changing it (its capabilities, their members and chains, its
// definition) changes no other caller's nor a later answer.
//
// A ref whose root this process did not register resolves only if the log
// records a migration (RootMigrated) from that root to one registered here;
// otherwise it fails with ErrRootChanged (a root of the same name is
// registered under another fingerprint) or ErrRootNotRegistered.
func (rt *Runtime) Resolve(ctx context.Context, ref TaskRef) (*Task, error) {
	if err := ref.Validate(); err != nil {
		return nil, fmt.Errorf("resolve: %w", err)
	}
	if err := rt.adopt(ctx, string(ref.Root)); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	ctx, err := rt.awaitMin(ctx)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	st := rt.lockState(string(ref.Root))
	defer st.mu.Unlock()
	if st.reg == nil || rt.cfg.noFollow {
		// Cold root: fold only the ref's ancestor chain, so the cost follows
		// the chain and not the stream or the root's size. Nothing is kept
		// for the root, so refs to unknown roots cost no memory.
		defer rt.forgetUnloaded(string(ref.Root), st)
		reg, err := rt.chainRegistry(ctx, string(ref.Root), ref.Path)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", ref, err)
		}
		t, err := rt.resolveLocked(ctx, ref, reg)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", ref, err)
		}
		t.Seq = max(t.Seq, minSeqOf(ctx)) // the chain was read up to at least the minimum
		return t, nil
	}
	if err := rt.current(ctx, string(ref.Root), st); err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	// The cache keeps its own Task; each caller gets a copy of it to own,
	// so that no caller's change reaches another's (or races with it).
	key := ref.String()
	if st.cachedAt == st.reg.Seq && st.resolved != nil {
		if t := st.resolved[key]; t != nil {
			return t.clone(max(t.Seq, st.at)), nil
		}
	} else {
		st.resolved, st.cachedAt = map[string]*Task{}, st.reg.Seq
	}
	t, err := rt.resolveLocked(ctx, ref, st.reg)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, err)
	}
	st.resolved[key] = t
	return t.clone(max(t.Seq, st.at)), nil // stamped with how far this answer covers
}

// clone returns a copy of t stamped with seq that shares nothing a caller
// may change with t: its definition's schemas, its capabilities' refs,
// chains and member maps (the members themselves, functions and values
// of the catalog, are shared).
func (t *Task) clone(seq uint64) *Task {
	c := *t
	c.Seq = seq
	c.Def = cloneTaskDef(t.Def)
	if t.Capabilities != nil {
		c.Capabilities = make([]Capability, len(t.Capabilities))
		for i, cp := range t.Capabilities {
			c.Capabilities[i] = cp.clone()
		}
	}
	return &c
}

// cloneTaskDef returns a deep copy of a task definition; its legacy
// schemas are the only parts that share memory (a JSON Schema is a string).
func cloneTaskDef(d events.TaskDef) events.TaskDef {
	d.Input, d.Output = cloneSchema(d.Input), cloneSchema(d.Output)
	return d
}

// cloneSchema returns a deep copy of a legacy schema, keeping nil (unset)
// as nil and empty as empty.
func cloneSchema(s events.Schema) events.Schema {
	if s.Fields != nil {
		fields := make([]events.Field, len(s.Fields))
		for i, f := range s.Fields {
			f.Schema = cloneSchema(f.Schema)
			fields[i] = f
		}
		s.Fields = fields
	}
	if s.Items != nil {
		items := cloneSchema(*s.Items)
		s.Items = &items
	}
	return s
}

func (rt *Runtime) resolveLocked(ctx context.Context, ref TaskRef, reg *projector.Registry) (*Task, error) {
	r, err := rt.recipeOf(ctx, ref.Agent(), reg)
	if err != nil {
		return nil, err
	}
	def, via, tasks := r.def, r.via, r.tasks
	t := &Task{Ref: ref, RootName: def.Name, Seq: reg.Seq, Migrated: r.migrated, Primer: r.primer, rt: rt}
	td, ok := tasks[ref.Task]
	if !ok {
		names := make([]string, 0, len(tasks))
		for n := range tasks {
			names = append(names, n)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("agent %q has no task %q (it has: %s): %w", ref.Path, ref.Task, strings.Join(names, ", "), ErrNotFound)
	}
	t.Def = cloneTaskDef(*td) // the registry's (or the root definition's) stays its own
	// The digest (canonical JSON and SHA-256 of the definition) is made
	// only for a pinned ref, or when the caller asks for it: an unpinned
	// warm resolve stays a lookup.
	if ref.Contract != "" {
		if t.contract = td.Contract(); ref.Contract != t.contract {
			return nil, &ContractChangedError{Ref: ref, Pinned: ref.Contract, Current: t.contract}
		}
	}
	eff, err := reg.EffectiveUnder(def.Capabilities, ref.Path)
	if err != nil {
		return nil, err
	}
	eff = narrowed(eff, via)
	for _, e := range eff {
		c, err := rt.cfg.catalog.resolve(e)
		if err != nil {
			return nil, fmt.Errorf("agent %q: %w", ref.Path, err)
		}
		t.Capabilities = append(t.Capabilities, c)
	}
	return t, nil
}

// recipe is what an agent's refs resolve through: the root definition
// (and the roots a migration came through), the agent's primer and tasks.
type recipe struct {
	def      events.RootDef
	via      []events.RootDef
	migrated bool
	primer   string
	tasks    map[string]*events.TaskDef
}

// recipeOf finds an agent's recipe in a registry holding its chain: a
// root's from the definition its refs resolve under, a dynamic agent's
// from the fold (a retired one is an error).
func (rt *Runtime) recipeOf(ctx context.Context, a AgentRef, reg *projector.Registry) (recipe, error) {
	def, via, migrated, err := rt.rootFor(ctx, string(a.Root), reg)
	if err != nil {
		return recipe{}, err
	}
	r := recipe{def: def, via: via, migrated: migrated}
	if a.Path == "" {
		r.primer = def.Primer
		r.tasks = map[string]*events.TaskDef{}
		for i := range def.Tasks {
			r.tasks[def.Tasks[i].Name] = &def.Tasks[i]
		}
		return r, nil
	}
	ag, err := reg.Agent(a.Path)
	if err != nil {
		return recipe{}, err
	}
	if ag.Retired {
		return recipe{}, &RetiredError{Path: a.Path, Seq: ag.RetiredSeq, By: ag.RetiredBy}
	}
	r.primer, r.tasks = ag.Primer, ag.Tasks
	return r, nil
}

// rootFor finds the definition a registry's refs resolve under: the root
// itself if this process registered it, else the target of a recorded
// migration chain, with the roots migrated from (via), whose capabilities
// bound the result too.
func (rt *Runtime) rootFor(ctx context.Context, root string, reg *projector.Registry) (events.RootDef, []events.RootDef, bool, error) {
	if reg.MigratedTo == "" {
		if def, ok := rt.RootDef(RootID(root)); ok {
			return def, nil, false, nil
		}
	}
	if reg.Def == nil {
		return events.RootDef{}, nil, false, fmt.Errorf("root %.12s is not registered in this process and has no history in the stream: %w", root, ErrRootNotRegistered)
	}
	// A recorded migration governs even if this process also registers the
	// old definition: refs resolve under the newest registered target. A
	// migration only narrows: the caller intersects with every root on the
	// way (bounds). A migration whose target has no definition in the
	// stream, or carries another root name, is invalid: it is not followed
	// (a root this process registers keeps resolving as itself).
	cur := reg
	var via []events.RootDef
	for hop := 0; cur.MigratedTo != "" && hop < maxMigrationHops; hop++ {
		// The target's definition and its own migration are on its root
		// subject: read that one literal subject, not the target's tree.
		next, err := rt.chainRegistry(ctx, cur.MigratedTo, "")
		if err != nil {
			return events.RootDef{}, nil, false, err
		}
		if next.Def == nil || next.Def.Name != cur.Def.Name {
			what := "has no definition in the stream"
			if next.Def != nil {
				what = fmt.Sprintf("is root %q, not %q", next.Def.Name, cur.Def.Name)
			}
			rt.lg.Warn("invalid root migration not followed", "root", cur.Root, "to", cur.MigratedTo, "seq", cur.MigratedSeq, "why", what)
			if hop == 0 {
				if def, ok := rt.RootDef(RootID(root)); ok {
					return def, nil, false, nil
				}
				return events.RootDef{}, nil, false, fmt.Errorf("root %q (%.12s) migrated at seq %d to %.12s, which %s: the migration is invalid: %w",
					reg.Def.Name, root, reg.MigratedSeq, cur.MigratedTo, what, ErrMigrated)
			}
			break
		}
		via = append(via, *cur.Def)
		if def, ok := rt.RootDef(RootID(cur.MigratedTo)); ok {
			return def, via, true, nil
		}
		cur = next
	}
	if reg.MigratedTo != "" {
		return events.RootDef{}, nil, false, fmt.Errorf("root %q (%.12s) migrated to %.12s at seq %d, which this process does not register: %w",
			reg.Def.Name, root, reg.MigratedTo, reg.MigratedSeq, ErrMigrated)
	}
	rt.mu.Lock()
	var same []string
	for fp, d := range rt.roots {
		if d.Name == reg.Def.Name {
			same = append(same, fp)
		}
	}
	rt.mu.Unlock()
	if len(same) > 0 {
		slices.Sort(same)
		return events.RootDef{}, nil, false, fmt.Errorf(
			"root %q changed: this ref was made under fingerprint %.12s, this process registers %q as %.12s; "+
				"record a migration with Runtime.MigrateRoot(ctx, %q, %q, reason) to let old refs resolve under the new definition: %w",
			reg.Def.Name, root, reg.Def.Name, same[0], root, same[0], ErrRootChanged)
	}
	return events.RootDef{}, nil, false, fmt.Errorf("root %q (%.12s) is in the stream but not registered in this process; register its definition with RegisterRoot: %w",
		reg.Def.Name, root, ErrRootNotRegistered)
}

// narrowed intersects effective capabilities with the roots a migration
// came through: each must hold the capability (else it is dropped), and
// its grant joins the chain that bounds the members. A migration never
// widens what an old agent held.
func narrowed(eff []projector.Effective, via []events.RootDef) []projector.Effective {
	if len(via) == 0 {
		return eff
	}
	out := eff[:0:0]
next:
	for _, e := range eff {
		chain := e.Chain
		for _, d := range via {
			var found bool
			for _, c := range d.Capabilities {
				if c.Key() == e.Capability.Key() {
					chain = append([]events.Capability{c.Normalized()}, chain...)
					found = true
					break
				}
			}
			if !found {
				continue next
			}
		}
		e.Chain = chain
		out = append(out, e)
	}
	return out
}
