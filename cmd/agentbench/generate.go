package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
)

// generator makes valid histories quickly: events with correct hash chains,
// encoded once, without a runtime (the history is the benchmark's input,
// not what it measures).
type generator struct {
	p       params
	prefix  string // subject prefix, "agentreg" unless a second stream
	rng     *rand.Rand
	prev    map[string]string // subject -> hash of its last event
	roots   []*genRoot        // in the order they were written
	queue   []*events.Event   // events of the root being written
	nextR   int
	written int
	defs    map[string]events.RootDef
	now     int64
}

type genRoot struct {
	g      *generator
	fp     string
	def    events.RootDef
	agents []*genAgent
	deep   *genAgent // an agent at the full depth, for resolve refs
}

type genAgent struct {
	r     *genRoot
	path  string
	depth int
}

func newGenerator(p params) *generator {
	return &generator{p: p, prefix: "agentreg", rng: rand.New(rand.NewPCG(1, 2)), prev: map[string]string{}, defs: map[string]events.RootDef{}, now: time.Now().UnixNano()}
}

var taskSchema = events.Schema{Type: "object", Fields: []events.Field{
	{Name: "equation", Schema: events.Schema{Type: "string"}, Required: true, Doc: "the equation to work on"},
}}

func (g *generator) rootDef(fp string) events.RootDef { return g.defs[fp] }

func (g *generator) catalog() *agent.Catalog {
	c := agent.NewCatalog()
	for i := range g.p.caps {
		_ = c.AddModule(fmt.Sprintf("m%d", i), map[string]any{"f": 1, "g": 2, "h": 3})
	}
	return c
}

func (g *generator) newRoot(name string) *genRoot {
	def := events.RootDef{Name: name, Primer: "You are the root agent " + name + " and you create specialists on demand."}
	for i := range g.p.caps {
		def.Capabilities = append(def.Capabilities, events.Capability{Kind: events.KindModule, Name: fmt.Sprintf("m%d", i)})
	}
	def = def.Canonical()
	r := &genRoot{g: g, fp: def.Fingerprint(), def: def}
	g.defs[r.fp] = def
	return r
}

func (g *generator) benchRoot() *genRoot { return g.newRoot("bench") }

func (r *genRoot) event(t events.Type, path string) *events.Event {
	r.g.now += 1000
	return &events.Event{ID: ulid.Make().String(), Type: t, Version: events.SchemaVersion, Root: r.fp, Path: path,
		Time: r.g.now, Actor: "user:bench", Correlation: "bench"}
}

func (r *genRoot) registered() *events.Event {
	e := r.event(events.RootRegistered, "")
	e.Registered = &events.RootData{Def: r.def}
	return e
}

func (r *genRoot) agent(name, parent string) *genAgent {
	a := &genAgent{r: r, path: events.Join(parent, name), depth: strings.Count(events.Join(parent, name), "/") + 1}
	r.agents = append(r.agents, a)
	return a
}

func (a *genAgent) createdEvent() *events.Event {
	e := a.r.event(events.AgentCreated, a.path)
	e.Created = &events.CreatedData{Primer: "You are " + a.path + ". Solve the part of the problem you are given and report back."}
	return e
}

func (a *genAgent) grantEvent(member string, i int) *events.Event {
	e := a.r.event(events.CapabilityGranted, a.path)
	e.Granted = &events.GrantedData{Capability: events.Capability{Kind: events.KindModule, Name: fmt.Sprintf("m%d", i%a.r.g.p.caps), Include: []string{"*"}}.Normalized(), Replace: true}
	_ = member
	return e
}

func (a *genAgent) taskEvent(i int) *events.Event {
	e := a.r.event(events.TaskDefined, a.path)
	e.Task = &events.TaskData{Task: events.TaskDef{Name: fmt.Sprintf("t%d", i), Doc: "Work on the equation and answer in one line.",
		Input: taskSchema, Output: events.Schema{Type: "string"}}}
	return e
}

// createdV2Event is the agent's creation as the runtime writes it (schema
// v2): one AgentCreated carrying the grants and tasks.
func (a *genAgent) createdV2Event() *events.Event {
	e := a.createdEvent()
	for i := range a.r.g.p.caps {
		e.Created.Capabilities = append(e.Created.Capabilities, events.Capability{Kind: events.KindModule, Name: fmt.Sprintf("m%d", i), Include: []string{"*"}}.Normalized())
	}
	for i := range a.r.g.p.tasks {
		e.Created.Tasks = append(e.Created.Tasks, a.taskEvent(i).Task.Task)
	}
	return e
}

// create is the events that create the agent: AgentCreated, a grant per
// capability, a definition per task.
func (a *genAgent) create() []*events.Event {
	out := []*events.Event{a.createdEvent()}
	for i := range a.r.g.p.caps {
		out = append(out, a.grantEvent("", i))
	}
	for i := range a.r.g.p.tasks {
		out = append(out, a.taskEvent(i))
	}
	return out
}

func (r *genRoot) spec(name string) agent.Spec {
	s := agent.Spec{Name: name, Primer: "You are " + name + "."}
	for i := range r.g.p.caps {
		s.Capabilities = append(s.Capabilities, events.Capability{Kind: events.KindModule, Name: fmt.Sprintf("m%d", i)})
	}
	for i := range r.g.p.tasks {
		s.Tasks = append(s.Tasks, events.TaskDef{Name: fmt.Sprintf("t%d", i), Input: taskSchema, Output: events.Schema{Type: "string"}})
	}
	return s
}

// forgetChains drops the hash chains of the subjects written so far: no
// further event is generated on them, and a million entries would weigh
// on every garbage collection of the phases that follow.
func (g *generator) forgetChains() { g.prev = map[string]string{} }

// encode fills Prev from the subject's chain and encodes the event.
func (g *generator) encode(e *events.Event) events.Message {
	subj := events.Subject(g.prefix, e.Root, e.Path)
	e.Prev = g.prev[subj]
	data, err := events.Encode(e)
	if err != nil {
		panic(fmt.Sprintf("agentbench: encode generated event: %v", err))
	}
	g.prev[subj] = events.Hash(data)
	return events.Message{Subject: subj, Data: data, ID: e.ID, Type: e.Type}
}

func (g *generator) encodeAll(evs []*events.Event) []events.Message {
	out := make([]events.Message, len(evs))
	for i, e := range evs {
		out[i] = g.encode(e)
	}
	return out
}

// treeEvents builds a root's history with about budget events: the root,
// then agents whose parents are picked at random among those above the
// maximum depth, the first chain going straight to full depth.
func (r *genRoot) treeEvents(budget int) []*events.Event {
	out := []*events.Event{r.registered()}
	perAgent := 1 + r.g.p.caps + r.g.p.tasks
	var shallow []*genAgent
	for i := 0; len(out)+perAgent <= budget || i == 0; i++ {
		parent := ""
		if i > 0 && i < r.g.p.depth {
			parent = r.agents[i-1].path // the first chain reaches full depth
		} else if len(shallow) > 0 && r.g.rng.IntN(3) > 0 {
			parent = shallow[r.g.rng.IntN(len(shallow))].path
		}
		a := r.agent(fmt.Sprintf("a%d", i), parent)
		if a.depth < r.g.p.depth {
			shallow = append(shallow, a)
		}
		if a.depth == r.g.p.depth && r.deep == nil {
			r.deep = a
		}
		out = append(out, a.create()...)
	}
	return out
}

// next returns the next message of the history, a root at a time.
func (g *generator) next() events.Message {
	for len(g.queue) == 0 {
		r := g.newRoot(fmt.Sprintf("root%d", g.nextR))
		g.nextR++
		g.roots = append(g.roots, r)
		budget := g.p.events / g.p.roots
		g.queue = r.treeEvents(budget)
	}
	e := g.queue[0]
	g.queue = g.queue[1:]
	g.written++
	return g.encode(e)
}

// refs returns task refs at full depth from distinct roots written so far.
func (g *generator) refs(n int) []agent.TaskRef {
	var out []agent.TaskRef
	for _, r := range g.roots {
		if r.deep == nil || len(out) == n {
			continue
		}
		out = append(out, agent.TaskRef{Root: agent.RootID(r.fp), Path: r.deep.path, Task: "t0"})
	}
	return out
}

// bigRoot is a root with n agents (a wide tree of depth 2).
type bigRoot struct {
	*genRoot
	n int
}

func (g *generator) bigRoot(n int) bigRoot {
	return bigRoot{genRoot: g.newRoot(fmt.Sprintf("big%d", n)), n: n}
}

func (b bigRoot) all() []*events.Event {
	out := []*events.Event{b.registered()}
	top := 0
	for i := range b.n {
		parent := ""
		if i%10 != 0 {
			parent = fmt.Sprintf("a%d", top)
		} else {
			top = i
		}
		out = append(out, b.agent(fmt.Sprintf("a%d", i), parent).create()...)
	}
	return out
}

// wideV2 is the history of a root with n agents (a wide tree of depth 2,
// every tenth agent under the root and the others under the last of
// those), each created with one v2 AgentCreated.
func (r *genRoot) wideV2(n int) []*events.Event {
	out := []*events.Event{r.registered()}
	top := 0
	for i := range n {
		parent := ""
		if i%10 != 0 {
			parent = fmt.Sprintf("a%d", top)
		} else {
			top = i
		}
		out = append(out, r.agent(fmt.Sprintf("a%d", i), parent).createdV2Event())
	}
	return out
}
