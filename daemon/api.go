package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/projector"
)

// The API: one NATS micro service, JSON in and out. Each endpoint's subject
// is <api prefix>.<name with '_' as '.'>, e.g. agentd.agent.create. The API
// prefix lies outside the stream's subjects, so requests are never stored.
const (
	epRootRegister  = "root_register"
	epAgentCreate   = "agent_create"
	epAgentGrant    = "agent_grant"
	epAgentRevoke   = "agent_revoke"
	epTaskDefine    = "task_define"
	epAgentRetire   = "agent_retire"
	epTaskResolve   = "task_resolve"
	epAgentDescribe = "agent_describe"
	epAgentList     = "agent_list"
	epAgentLineage  = "agent_lineage"
	epTaskInvoke    = "task_invoke"
	epRootMigrate   = "root_migrate"
	epAgentTools    = "agent_tools"
	epHealth        = "health"
)

// Request bodies. Unknown fields are refused with an error naming them.
type (
	// RegisterRootRequest registers a root from its recipe.
	RegisterRootRequest struct {
		Def            events.RootDef `json:"def"`
		Actor          string         `json:"actor,omitempty"`
		IdempotencyKey string         `json:"idempotency_key,omitempty"`
	}
	// CreateRequest creates a dynamic agent under Parent ("" is the root).
	CreateRequest struct {
		Root           string              `json:"root"`
		Parent         string              `json:"parent,omitempty"`
		Name           string              `json:"name"`
		Primer         string              `json:"primer,omitempty"`
		Capabilities   []events.Capability `json:"caps,omitempty"`
		Tasks          []events.TaskDef    `json:"tasks,omitempty"`
		Actor          string              `json:"actor,omitempty"`
		IdempotencyKey string              `json:"idempotency_key,omitempty"`
	}
	// GrantRequest grants a capability.
	GrantRequest struct {
		Root           string            `json:"root"`
		Path           string            `json:"path"`
		Capability     events.Capability `json:"cap"`
		Replace        bool              `json:"replace,omitempty"` // replaces a grant the agent holds (else 409)
		Actor          string            `json:"actor,omitempty"`
		IdempotencyKey string            `json:"idempotency_key,omitempty"`
	}
	// RevokeRequest revokes a capability from an agent and its subtree:
	// the whole capability, or with Members only those members (literal
	// names; they join the exclude of the agent's grant and of every
	// descendant's grant of it, docs/capabilities.md). An empty list is
	// refused: omit members to revoke the whole capability.
	RevokeRequest struct {
		Root           string      `json:"root"`
		Path           string      `json:"path"`
		Kind           events.Kind `json:"kind"`
		Name           string      `json:"name"`
		Members        []string    `json:"members,omitzero"` // omitzero: an empty list is sent, and refused
		Actor          string      `json:"actor,omitempty"`
		IdempotencyKey string      `json:"idempotency_key,omitempty"`
	}
	// MigrateRequest records that refs made under root From resolve from
	// now on through root To, a new definition of the same root (same
	// name) registered before (root.register). From takes no further
	// writes.
	MigrateRequest struct {
		From           string `json:"from"`
		To             string `json:"to"`
		Reason         string `json:"reason,omitempty"`
		Actor          string `json:"actor,omitempty"`
		IdempotencyKey string `json:"idempotency_key,omitempty"`
	}
	// ToolsRequest asks for an agent's tasks ("" path: the root's) as
	// tool definitions for a model.
	ToolsRequest struct {
		Root   string `json:"root"`
		Path   string `json:"path,omitempty"`
		MinSeq uint64 `json:"min_seq,omitempty"`
	}
	// DefineTaskRequest defines a task on an agent.
	DefineTaskRequest struct {
		Root           string         `json:"root"`
		Path           string         `json:"path"`
		Task           events.TaskDef `json:"task"`
		Actor          string         `json:"actor,omitempty"`
		IdempotencyKey string         `json:"idempotency_key,omitempty"`
	}
	// RetireRequest retires an agent and its subtree.
	RetireRequest struct {
		Root           string `json:"root"`
		Path           string `json:"path"`
		Reason         string `json:"reason,omitempty"`
		Actor          string `json:"actor,omitempty"`
		IdempotencyKey string `json:"idempotency_key,omitempty"`
	}
	// ReadRequest names an agent (or a root) to read. MinSeq asks for a
	// registry that includes the write that returned that sequence. After
	// and Limit page agent.list: the agents below Path after that path, at
	// most Limit of them (default and maximum 1000), in depth-first order
	// with siblings sorted; the first page (no After) also starts with the
	// agent at Path itself. The reply's "next" is the After of the next page.
	ReadRequest struct {
		Root   string `json:"root"`
		Path   string `json:"path,omitempty"`
		MinSeq uint64 `json:"min_seq,omitempty"`
		After  string `json:"after,omitempty"`
		Limit  int    `json:"limit,omitempty"`
	}
	// ResolveRequest resolves a task ref (text form), pinned
	// (<root>/<path>#<task>@<contract>) or not.
	ResolveRequest struct {
		Ref    string `json:"ref"`
		MinSeq uint64 `json:"min_seq,omitempty"`
	}
	// InvokeRequest calls a task with arguments.
	InvokeRequest struct {
		Ref   string         `json:"ref"`
		Args  map[string]any `json:"args,omitempty"`
		Actor string         `json:"actor,omitempty"`
	}
)

// Replies.
type (
	// WriteReply answers every write: what was written and the stream
	// sequence the root's registry reached with it.
	WriteReply struct {
		Root string `json:"root"`
		Path string `json:"path,omitempty"`
		Ref  string `json:"ref,omitempty"`
		Seq  uint64 `json:"seq"`
		// Replayed: a retry (same idempotency_key) of a write stored
		// before; Seq is the original's.
		Replayed bool `json:"replayed,omitempty"`
	}
	// Grant is a capability as the API writes it, under the wire's keys:
	// every field present, an empty include or exclude as [] (an absent
	// exclude would read as the default "_*").
	Grant struct {
		Kind       events.Kind       `json:"kind"`
		Name       string            `json:"name"`
		Include    []string          `json:"include"`
		Exclude    []string          `json:"exclude"`
		Visibility events.Visibility `json:"vis"`
	}
	// CapabilityView is what an agent may use of one capability.
	// Effective is the one grant the chain comes to (includes
	// intersected, excludes united: projector.Effective.Intersected);
	// Exact is false when some pair of glob includes could not be written
	// as one pattern, which Effective then leaves out (it is never wider
	// than the chain; Members and Chain are the authority). Members are
	// the names the agent may use among those listed (MembersFrom:
	// "catalog", the daemon's catalog; "recipe", the literal names in the
	// chain's includes, or a function's or type's own name; "none": no
	// list, Members is [] and Effective's patterns are the answer).
	// Chain is the explanation: the grants that limit it, root first.
	CapabilityView struct {
		Effective   Grant    `json:"effective"`
		Exact       bool     `json:"exact"`
		Members     []string `json:"members"`
		MembersFrom string   `json:"members_from"`
		Chain       []Grant  `json:"chain"`
	}
	// AgentView describes an agent's recipe and lineage facts.
	AgentView struct {
		Root       string           `json:"root"`
		Path       string           `json:"path"`
		Primer     string           `json:"primer"`
		Creator    string           `json:"creator"`
		CreatedSeq uint64           `json:"created_seq"`
		CreatedAt  time.Time        `json:"created_at"`
		Retired    bool             `json:"retired"`
		RetiredSeq uint64           `json:"retired_seq,omitempty"`
		Granted    []Grant          `json:"granted"`
		Effective  []CapabilityView `json:"effective"`
		Tasks      []events.TaskDef `json:"tasks"`
		Seq        uint64           `json:"seq"`

		// CreatorOnBehalfOfClaimed: the creation's claimed on-behalf-of,
		// unchecked (see Step).
		CreatorOnBehalfOfClaimed string `json:"creator_on_behalf_of_claimed,omitempty"`
	}
	// ResolveReply is what a task ref resolves to. Contract is the task's
	// contract digest now; PinnedRef is the ref pinned to it, for a client
	// to store: it resolves only while the task keeps that contract (else
	// 412 naming both digests).
	ResolveReply struct {
		Ref          string           `json:"ref"`
		RootName     string           `json:"root_name"`
		Path         string           `json:"path"`
		Primer       string           `json:"primer"`
		Capabilities []CapabilityView `json:"caps"`
		Task         events.TaskDef   `json:"task"`
		Contract     string           `json:"contract"`
		PinnedRef    string           `json:"pinned_ref"`
		Migrated     bool             `json:"migrated,omitempty"`
		Seq          uint64           `json:"seq"`
	}
	// ToolsReply lists an agent's tasks as MCP-shaped tool definitions
	// (name, description, inputSchema, outputSchema), sorted by name, as
	// agent.Runtime.Tools returns them: a framework hands Tools to its
	// model as they are. Contracts and PinnedRefs key each tool's contract
	// digest and its task's ref pinned to it by the tool's name (kept
	// beside the tools, not in them, so the tools stay MCP's shape).
	ToolsReply struct {
		Root       string            `json:"root"`
		Path       string            `json:"path"`
		Tools      []agent.Tool      `json:"tools"`
		Contracts  map[string]string `json:"contracts"`
		PinnedRefs map[string]string `json:"pinned_refs"`
	}
	// ContractChangedReply is the body of the 412 answering a pinned ref
	// whose task has another contract now: the facts of the error, so a
	// client re-pins without parsing the description.
	ContractChangedReply struct {
		Ref       string `json:"ref"`        // the pinned ref asked for
		Pinned    string `json:"pinned"`     // the digest it is pinned to
		Current   string `json:"current"`    // the task's contract now
		PinnedRef string `json:"pinned_ref"` // the ref pinned to the current contract
	}
	// Step is one event in an agent's lineage.
	Step struct {
		Path  string    `json:"path"`
		What  string    `json:"what"`
		Seq   uint64    `json:"seq"`
		Time  time.Time `json:"time"`
		Actor string    `json:"actor"`
		// OnBehalfOfClaimed is whom the writer's caller said the event was
		// for (the request's `actor`): a claim nobody checked.
		OnBehalfOfClaimed string `json:"on_behalf_of_claimed,omitempty"`
	}
	// LineageReply lists an agent's ancestors (root first) and descendants.
	LineageReply struct {
		Root        string `json:"root"`
		Path        string `json:"path"`
		Ancestors   []Step `json:"ancestors"`
		Agent       []Step `json:"agent"`
		Descendants []Step `json:"descendants"`
		Seq         uint64 `json:"seq"`
	}
)

// handle wraps an endpoint: it admits the request and hands it to the
// pool (pool.go); the health probe runs at once, so that it is answered
// while the pool is saturated.
func handle[Req any](d *Daemon, name string, fn func(context.Context, *Req) (any, error)) micro.HandlerFunc {
	return func(r micro.Request) {
		start := time.Now()
		if d.unsafeReply(r.Reply()) {
			// No reply at all: the reply subject is the problem.
			d.log.Warn("request refused: its reply subject lies where agentd writes", keyEndpoint, name, "reply", r.Reply())
			d.metrics.request(name, "403", time.Since(start))
			return
		}
		rp := &replier{d: d, endpoint: name, subject: r.Reply(), start: start}
		if !d.enter() {
			rp.send("503", "agentd is shutting down: send the request again (another daemon of the queue group, or this one restarted, takes it)", nil)
			return
		}
		data := r.Data()
		deadline := start.Add(d.cfg.RequestTimeout)
		ctx, cancel := context.WithDeadline(d.ctx, deadline)
		ctx = withCaller(ctx, d.callerOf(r))
		j := &job{rp: rp, subject: r.Subject(), deadline: deadline, minSeq: peekMinSeq[Req](data),
			work:    func() { serve(d, ctx, rp, data, fn) },
			release: func() { cancel(); d.inflight.Done() }}
		if name == epHealth {
			j.take()
			j.run()
			return
		}
		d.admit(j)
	}
}

// minSeqRequest is a request that may carry a min_seq (a read).
type minSeqRequest interface{ minSeq() uint64 }

func (r *ResolveRequest) minSeq() uint64 { return minSeq(r.MinSeq) }
func (r *ReadRequest) minSeq() uint64    { return minSeq(r.MinSeq) }
func (r *ToolsRequest) minSeq() uint64   { return minSeq(r.MinSeq) }

// peekMinSeq reads the min_seq of a read's body before it is admitted (0
// for another request, or a body that does not decode: its worker answers
// why), so that the request waits for it outside the pool (minseq.go).
func peekMinSeq[Req any](data []byte) uint64 {
	var req Req
	ms, ok := any(&req).(minSeqRequest)
	if !ok || len(data) > MaxRequestBytes {
		return 0
	}
	if json.Unmarshal(data, &req) != nil {
		return 0
	}
	return ms.minSeq()
}

// serve runs one request on a worker: decode, check, run with the
// request's deadline, answer.
func serve[Req any](d *Daemon, ctx context.Context, rp *replier, data []byte, fn func(context.Context, *Req) (any, error)) {
	name := rp.endpoint
	d.metrics.running.Inc()
	defer d.metrics.running.Dec()
	if d.ctx.Err() != nil {
		rp.send("503", "agentd is shutting down: send the request again (another daemon of the queue group, or this one restarted, takes it)", nil)
		return
	}
	if ctx.Err() != nil {
		// Taken by a worker just as its queue timer fired (enqueue).
		rp.send(codeOf(ctx.Err()), fmt.Sprintf("%s: waited for a worker past the request deadline of %s (all %d workers busy): %v", name, d.cfg.RequestTimeout, d.pool.workers, ctx.Err()), nil)
		return
	}
	if dl, ok := ctx.Deadline(); ok {
		timer := time.AfterFunc(time.Until(dl)+lateGrace, func() {
			if rp.send("504", fmt.Sprintf("%s: no answer within the request deadline of %s: the work goes on; a write may still be stored (retry it with the same idempotency_key)", name, d.cfg.RequestTimeout), nil) {
				d.metrics.late.WithLabelValues(name).Inc()
			}
		})
		defer timer.Stop()
	}
	var req Req
	var out any
	var err error
	if n := len(data); n > MaxRequestBytes {
		err = fmt.Errorf("%w: the request body is %d bytes, the limit is %d: send less (the size limits are in ARCHITECTURE.md)", events.ErrTooLarge, n, MaxRequestBytes)
	} else if _, ok := any(&req).(bodyOptional); !ok || len(bytes.TrimSpace(data)) > 0 {
		err = decode(data, &req)
	}
	if err == nil {
		if v, ok := any(&req).(validator); ok {
			err = v.validate()
		}
	}
	if err == nil {
		out, err = call(d, ctx, name, fn, &req)
	}
	var body []byte
	if err == nil {
		body, err = json.Marshal(out)
		if limit := d.nc.MaxPayload(); err == nil && int64(len(body)) > limit {
			// Sent, it would be refused by the client library and the
			// caller would wait for its timeout without a word.
			err = &apiError{code: "413", err: fmt.Errorf("the reply holds %d bytes, more than the NATS server's max_payload of %d: ask for less (agent.list takes a path) or raise max_payload", len(body), limit)}
		}
	}
	if err != nil {
		code := codeOf(err)
		if errors.Is(err, events.ErrConflict) {
			d.metrics.conflicts.WithLabelValues(name).Inc()
		}
		if code == "503" && d.ctx.Err() != nil {
			err = fmt.Errorf("agentd is shutting down: send the request again: %w", err)
		}
		d.log.Debug("request failed", keyEndpoint, name, keyCode, code, keyErr, err)
		if !rp.send(code, err.Error(), errorBody(err)) {
			d.log.Warn("request finished after its deadline; the caller was answered 504", keyEndpoint, name, keyCode, code, "took", time.Since(rp.start).Round(time.Millisecond), keyErr, err)
		}
		return
	}
	if w, ok := out.(*WriteReply); ok && w.Replayed {
		d.metrics.replays.WithLabelValues(name).Inc()
	}
	if !rp.send("", "", body) {
		d.log.Warn("request finished after its deadline; the caller was answered 504", keyEndpoint, name, "took", time.Since(rp.start).Round(time.Millisecond))
	}
}

// errorBody is the body of an error reply: the facts of an error a
// client acts on (a changed contract's digests), else none.
func errorBody(err error) []byte {
	var cc *agent.ContractChangedError
	if !errors.As(err, &cc) {
		return nil
	}
	b, mErr := json.Marshal(ContractChangedReply{Ref: cc.Ref.String(), Pinned: cc.Pinned, Current: cc.Current, PinnedRef: cc.Ref.Pinned(cc.Current).String()})
	if mErr != nil {
		return nil
	}
	return b
}

// call runs an endpoint's function; a panic in it (an executor's, say)
// becomes a 500 reply instead of stopping the daemon.
func call[Req any](d *Daemon, ctx context.Context, name string, fn func(context.Context, *Req) (any, error), req *Req) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			d.log.Error("request panicked", keyEndpoint, name, keyErr, p)
			out, err = nil, fmt.Errorf("internal error in %s: %v", name, p)
		}
	}()
	return fn(ctx, req)
}

// actorCtx carries a write's actor, claim and idempotency key. The actor
// is the caller the NATS server named (callerOf), else agentd's own
// Identity; the request's `actor` field, which anyone can write, is only
// recorded as the event's claimed on-behalf-of.
func (d *Daemon) actorCtx(ctx context.Context, claimed, key string) context.Context {
	if key != "" {
		ctx = agent.WithIdempotencyKey(ctx, key)
	}
	if claimed != "" {
		ctx = agent.WithOnBehalfOf(ctx, claimed)
	}
	actor := callerFrom(ctx)
	if actor == "" {
		actor = d.cfg.Identity
	}
	return agent.WithActor(ctx, actor)
}

// reply answers a write with the sequence its event reached: a read with
// it as min_seq, through any daemon, sees the write.
func reply(root, path, ref string, rc agent.Receipt) *WriteReply {
	return &WriteReply{Root: root, Path: path, Ref: ref, Seq: rc.Seq, Replayed: rc.Replayed}
}

func (d *Daemon) registerRoot(ctx context.Context, req *RegisterRootRequest) (any, error) {
	ref, err := d.rt.RegisterRoot(d.actorCtx(ctx, req.Actor, req.IdempotencyKey), req.Def)
	if err != nil {
		return nil, err
	}
	// The root's registration is stored (now or before): its sequence is
	// that of the root's newest event this daemon knows.
	var seq uint64
	if err := inspect.View(ctx, d.rt, string(ref.Root), func(reg *projector.Registry) error {
		seq = reg.RootSeq
		return nil
	}); err != nil {
		return nil, err
	}
	return reply(string(ref.Root), "", "", agent.Receipt{Seq: seq}), nil
}

func (d *Daemon) create(ctx context.Context, req *CreateRequest) (any, error) {
	if req.Parent != "" {
		if err := events.ValidatePath(req.Parent); err != nil {
			return nil, fmt.Errorf("parent: %w", err)
		}
	}
	child, rc, err := d.rt.Create(d.actorCtx(ctx, req.Actor, req.IdempotencyKey), agent.AgentRef{Root: agent.RootID(req.Root), Path: req.Parent},
		agent.Spec{Name: req.Name, Primer: req.Primer, Capabilities: req.Capabilities, Tasks: req.Tasks})
	if err != nil {
		return nil, err
	}
	return reply(string(child.Root), child.Path, "", rc), nil
}

func (d *Daemon) grant(ctx context.Context, req *GrantRequest) (any, error) {
	var opts []agent.GrantOption
	if req.Replace {
		opts = append(opts, agent.Replace())
	}
	rc, err := d.rt.Grant(d.actorCtx(ctx, req.Actor, req.IdempotencyKey), agent.AgentRef{Root: agent.RootID(req.Root), Path: req.Path}, req.Capability, opts...)
	if err != nil {
		return nil, err
	}
	return reply(req.Root, req.Path, "", rc), nil
}

func (d *Daemon) revoke(ctx context.Context, req *RevokeRequest) (any, error) {
	ctx = d.actorCtx(ctx, req.Actor, req.IdempotencyKey)
	a := agent.AgentRef{Root: agent.RootID(req.Root), Path: req.Path}
	var rc agent.Receipt
	var err error
	if req.Members != nil {
		rc, err = d.rt.RevokeMembers(ctx, a, req.Kind, req.Name, req.Members...)
	} else {
		rc, err = d.rt.Revoke(ctx, a, req.Kind, req.Name)
	}
	if err != nil {
		return nil, err
	}
	return reply(req.Root, req.Path, "", rc), nil
}

func (d *Daemon) defineTask(ctx context.Context, req *DefineTaskRequest) (any, error) {
	ref, rc, err := d.rt.DefineTask(d.actorCtx(ctx, req.Actor, req.IdempotencyKey), agent.AgentRef{Root: agent.RootID(req.Root), Path: req.Path}, req.Task)
	if err != nil {
		return nil, err
	}
	return reply(req.Root, req.Path, ref.String(), rc), nil
}

func (d *Daemon) retire(ctx context.Context, req *RetireRequest) (any, error) {
	rc, err := d.rt.Retire(d.actorCtx(ctx, req.Actor, req.IdempotencyKey), agent.AgentRef{Root: agent.RootID(req.Root), Path: req.Path}, req.Reason)
	if err != nil {
		return nil, err
	}
	return reply(req.Root, req.Path, "", rc), nil
}

func (d *Daemon) migrate(ctx context.Context, req *MigrateRequest) (any, error) {
	rc, err := d.rt.MigrateRoot(d.actorCtx(ctx, req.Actor, req.IdempotencyKey), agent.RootID(req.From), agent.RootID(req.To), req.Reason)
	if err != nil {
		return nil, err
	}
	// The event is on the old root's own subject.
	return reply(req.From, "", "", rc), nil
}

func (d *Daemon) tools(ctx context.Context, req *ToolsRequest) (any, error) {
	a := agent.AgentRef{Root: agent.RootID(req.Root), Path: req.Path}
	tools, err := d.rt.Tools(agent.WithMinSeq(ctx, minSeq(req.MinSeq)), a)
	if err != nil {
		return nil, err
	}
	out := &ToolsReply{Root: req.Root, Path: req.Path, Tools: tools, Contracts: make(map[string]string, len(tools)), PinnedRefs: make(map[string]string, len(tools))}
	for _, t := range tools {
		c := t.Digest()
		out.Contracts[t.Name] = c
		out.PinnedRefs[t.Name] = a.Task(t.Name).Pinned(c).String()
	}
	return out, nil
}

func grantOf(c events.Capability) Grant {
	c = c.Normalized()
	g := Grant{Kind: c.Kind, Name: c.Name, Include: c.Include, Exclude: c.Exclude, Visibility: c.Visibility}
	if g.Include == nil {
		g.Include = []string{}
	}
	if g.Exclude == nil {
		g.Exclude = []string{}
	}
	return g
}

// capabilityView is the effective capability of e, with its members where
// the daemon's catalog or the recipe lists them.
func (d *Daemon) capabilityView(e projector.Effective) CapabilityView {
	eff, exact := e.Intersected()
	v := CapabilityView{Effective: grantOf(eff), Exact: exact, Members: []string{}, MembersFrom: "none", Chain: make([]Grant, 0, len(e.Chain))}
	for _, c := range e.Chain {
		v.Chain = append(v.Chain, grantOf(c))
	}
	names, listed := d.cfg.Catalog.Listed(e.Capability.Kind, e.Capability.Name)
	switch {
	case e.Capability.Kind != events.KindModule: // one function or type: the capability is its one member
		v.Members, v.MembersFrom = []string{e.Capability.Name}, "recipe"
		if listed {
			v.MembersFrom = "catalog"
		}
	case listed:
		v.Members, v.MembersFrom = e.Members(names), "catalog"
	default:
		var listed []string
		for _, c := range e.Chain {
			for _, p := range c.Include {
				if !events.IsPattern(p) {
					listed = append(listed, p)
				}
			}
		}
		if len(listed) > 0 {
			v.Members, v.MembersFrom = e.Members(listed), "recipe"
		}
	}
	if v.Members == nil {
		v.Members = []string{}
	}
	return v
}

func (d *Daemon) effectiveViews(eff []projector.Effective) []CapabilityView {
	out := make([]CapabilityView, 0, len(eff))
	for _, e := range eff {
		out = append(out, d.capabilityView(e))
	}
	return out
}

// minSeq is a request's min_seq for the runtime: the largest value stays
// a sequence to wait for (to the runtime it would mean "the latest").
func minSeq(seq uint64) uint64 {
	if seq == agent.LatestSeq {
		return seq - 1
	}
	return seq
}

func (d *Daemon) resolve(ctx context.Context, req *ResolveRequest) (any, error) {
	ref, err := agent.ParseTaskRef(req.Ref)
	if err != nil {
		return nil, err
	}
	t, err := d.rt.Resolve(agent.WithMinSeq(ctx, minSeq(req.MinSeq)), ref)
	if err != nil {
		return nil, err
	}
	out := &ResolveReply{Ref: ref.String(), RootName: t.RootName, Path: ref.Path, Primer: t.Primer, Task: t.Def,
		Contract: t.Contract(), PinnedRef: ref.Pinned(t.Contract()).String(), Migrated: t.Migrated, Seq: t.Seq}
	for _, c := range t.Capabilities {
		out.Capabilities = append(out.Capabilities, d.capabilityView(projector.Effective{Capability: c.Ref, Chain: c.Chain}))
	}
	if out.Capabilities == nil {
		out.Capabilities = []CapabilityView{}
	}
	return out, nil
}

func (d *Daemon) checkRead(req *ReadRequest, needPath bool) error {
	if err := events.ValidateFingerprint(req.Root); err != nil {
		return fmt.Errorf("root: %w", err)
	}
	if req.Path != "" || needPath {
		if err := events.ValidatePath(req.Path); err != nil {
			return fmt.Errorf("path: %w", err)
		}
	}
	return nil
}

// view runs fn on a root's registry as this daemon has folded it, at
// least up to req.MinSeq (the runtime waits for its follower to get
// there): no request to the server when it is there already.
func (d *Daemon) view(ctx context.Context, req *ReadRequest, fn func(*projector.Registry) (any, error)) (any, error) {
	var out any
	err := inspect.View(agent.WithMinSeq(ctx, minSeq(req.MinSeq)), d.rt, string(agent.RootID(req.Root)), func(reg *projector.Registry) error {
		if reg.Def == nil {
			return fmt.Errorf("root %.12s has no history: %w", req.Root, events.ErrNotFound)
		}
		var err error
		out, err = fn(reg)
		return err
	})
	return out, err
}

func (d *Daemon) agentView(reg *projector.Registry, a *projector.Agent) (*AgentView, error) {
	v := &AgentView{Root: reg.Root, Path: a.Path, Primer: a.Primer, Creator: a.Creator, CreatorOnBehalfOfClaimed: a.CreatorOnBehalfOf, CreatedSeq: a.CreatedSeq,
		CreatedAt: time.Unix(0, a.CreatedAt).UTC(), Retired: a.Retired, RetiredSeq: a.RetiredSeq,
		Granted: []Grant{}, Tasks: []events.TaskDef{}, Seq: reg.Seq}
	for _, k := range sortedKeys(a.Capabilities) {
		g, _ := reg.Grant(a.Path, k) // as it stands: narrowed by the member revocations made after it
		v.Granted = append(v.Granted, grantOf(g.Capability))
	}
	for _, k := range sortedKeys(a.Tasks) {
		v.Tasks = append(v.Tasks, *a.Tasks[k])
	}
	eff, err := reg.Effective(a.Path)
	if err != nil {
		return nil, err
	}
	v.Effective = d.effectiveViews(eff)
	return v, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (d *Daemon) describe(ctx context.Context, req *ReadRequest) (any, error) {
	if err := d.checkRead(req, true); err != nil {
		return nil, err
	}
	return d.view(ctx, req, func(reg *projector.Registry) (any, error) {
		a, err := reg.Agent(req.Path)
		if err != nil {
			return nil, err
		}
		return d.agentView(reg, a)
	})
}

func (d *Daemon) list(ctx context.Context, req *ReadRequest) (any, error) {
	if err := d.checkRead(req, false); err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 || limit > maxListPage {
		limit = maxListPage
	}
	return d.view(ctx, req, func(reg *projector.Registry) (any, error) {
		out := []*AgentView{}
		paths, next, err := reg.Page(req.Path, req.After, limit) // as agent.Runtime.List
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			v, err := d.agentView(reg, reg.Agents[p])
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		reply := map[string]any{"root": reg.Root, "name": reg.Def.Name, "agents": out, "seq": reg.Seq, "violations": len(reg.Violations) + int(reg.ViolationsDropped)}
		if next != "" {
			reply["next"] = next
		}
		return reply, nil
	})
}

// steps are an agent's lineage facts kept in the registry: creation, each
// grant it still holds, retirement.
func steps(a *projector.Agent) []Step {
	out := []Step{{Path: a.Path, What: "created", Seq: a.CreatedSeq, Time: time.Unix(0, a.CreatedAt).UTC(), Actor: a.Creator, OnBehalfOfClaimed: a.CreatorOnBehalfOf}}
	for _, k := range sortedKeys(a.Capabilities) {
		g := a.Capabilities[k]
		out = append(out, Step{Path: a.Path, What: "granted " + string(g.Capability.Kind) + " " + g.Capability.Name, Seq: g.Seq, Time: time.Unix(0, g.Time).UTC(), Actor: g.Actor, OnBehalfOfClaimed: g.OnBehalfOf})
	}
	if a.Retired {
		out = append(out, Step{Path: a.Path, What: "retired", Seq: a.RetiredSeq, Time: time.Unix(0, a.RetiredAt).UTC(), Actor: a.RetiredBy, OnBehalfOfClaimed: a.RetiredOnBehalfOf})
	}
	slices.SortStableFunc(out, func(x, y Step) int { return int(x.Seq) - int(y.Seq) })
	return out
}

func (d *Daemon) lineage(ctx context.Context, req *ReadRequest) (any, error) {
	if err := d.checkRead(req, true); err != nil {
		return nil, err
	}
	return d.view(ctx, req, func(reg *projector.Registry) (any, error) {
		a, err := reg.Agent(req.Path)
		if err != nil {
			return nil, err
		}
		out := &LineageReply{Root: reg.Root, Path: req.Path, Agent: steps(a), Ancestors: []Step{}, Descendants: []Step{}, Seq: reg.Seq}
		out.Ancestors = append(out.Ancestors, Step{Path: "", What: "root " + reg.Def.Name + " registered", Seq: reg.RootSeq, Time: time.Unix(0, reg.RootTime).UTC(), Actor: reg.RootActor, OnBehalfOfClaimed: reg.RootOnBehalfOf})
		for _, p := range events.Ancestors(req.Path) {
			out.Ancestors = append(out.Ancestors, steps(reg.Agents[p])...)
		}
		for _, p := range reg.Descendants(req.Path) {
			out.Descendants = append(out.Descendants, steps(reg.Agents[p])...)
		}
		return out, nil
	})
}

func (d *Daemon) invoke(ctx context.Context, req *InvokeRequest) (any, error) {
	ref, err := agent.ParseTaskRef(req.Ref)
	if err != nil {
		return nil, err
	}
	t, err := d.rt.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	res, err := t.Call(d.actorCtx(ctx, req.Actor, ""), req.Args)
	if err != nil {
		return nil, err
	}
	return map[string]any{"ref": ref.String(), "contract": t.Contract(), "result": res}, nil
}

// maxListPage is the most agents one agent.list reply holds.
const maxListPage = 1000

// bodyOptional marks requests that may come with no body at all, such as
// a readiness probe (`nats req agentd.health ""`).
type bodyOptional interface{ bodyOptional() }

type healthReq struct{}

func (*healthReq) bodyOptional() {}

// health asks the stream for its state without a subject filter: one
// request whose cost does not grow with roots or subjects.
// It answers within healthTimeout in every state: a lost connection at
// once, a stream that does not answer when the timeout ends.
func (d *Daemon) health(ctx context.Context, _ *healthReq) (any, error) {
	if !d.nc.IsConnected() {
		return nil, &apiError{code: "503", err: fmt.Errorf("NATS connection %s: agentd cannot reach the server (it keeps reconnecting)", d.nc.Status())}
	}
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	last, err := d.store.LastStreamSeq(ctx)
	if err != nil {
		return nil, &apiError{code: "503", err: fmt.Errorf("stream %s did not answer within %s: %w", d.store.Config().Stream, healthTimeout, err)}
	}
	followed := d.rt.FollowPosition()
	return map[string]any{"status": "ok", "stream": d.store.Config().Stream, "last_seq": last, "followed_seq": followed,
		"lag": last - min(last, followed), "workers": d.pool.workers, "running": d.pool.running.Load(), "queued": d.pool.queued.Load(), "waiting": d.waiting.len()}, nil
}
