package projector

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/agentreg/agentreg/events"
)

// Version is the projector's fold version. Bump it whenever the fold would
// give a different registry for the same events; snapshots made by another
// version are not trusted.
//
// 3: an AgentCreated of schema version 2 carries the agent's grants and
// tasks and is applied whole; a version 1 create carrying either is
// malformed. Projector 2 recorded every version 2 event as a future_version
// violation, so its snapshots of a log holding any are not this fold's.
//
// 4: the ids of refused events are remembered (Registry.HasID): a copy of
// one published again is a violation (replayed); a registry may have a trust
// policy (SetTrust). Inputs over events' size limits are violations
// (too_large); a glob grant the parent's chain does not provably cover is
// an escalation; Violations keeps the newest MaxViolations and counts the
// rest (ViolationsDropped, in the snapshot encoding).
//
// 5: an event's claimed principal (events.Event.OnBehalfOf, wire key `obo`)
// is kept beside its actor: Grant.OnBehalfOf, Agent.CreatorOnBehalfOf and
// RetiredOnBehalfOf, Registry.RootOnBehalfOf. Projector 4 dropped it.
//
// 6: events of schema version 3 are applied (projector 5 recorded them as
// future_version violations): task definitions carrying JSON Schema; a
// grant on a capability the agent holds must say replace (else exists); a
// revocation may name members (at most events.MaxPatterns), stored once at
// the agent it targets (Agent.Revocations) and applied when a grant is read:
// a grant loses the members of every revocation of its agent or of an
// ancestor made after it (Registry.Grant, Effective). The ids of refused
// events are remembered per subject.
const Version = 6

// Grant is a capability held by an agent, with who granted it and when.
type Grant struct {
	Capability events.Capability `msgpack:"cap"`
	Seq        uint64            `msgpack:"seq"`
	Time       int64             `msgpack:"time"`
	Actor      string            `msgpack:"actor"`
	// OnBehalfOf is the grant event's claimed principal (never
	// authenticated; see events.Event.OnBehalfOf), "" if none.
	OnBehalfOf string `msgpack:"obo,omitempty"`
}

// StandingGrant is a grant as it stands (Registry.Grant): its Capability's
// Exclude holds the members revocations took from it, listed in Revoked.
// A stored grant (Agent.Capabilities) holds the capability as granted and
// is never narrowed in place; it has no Revoked field, so that the
// registry's many grants cost no slice header each.
type StandingGrant struct {
	Grant
	// Revoked lists the members taken from this grant by member-level
	// revocations of its agent or of an ancestor made after it, sorted;
	// each is also in Capability.Exclude.
	Revoked []string
}

// Revocation is one member-level revocation of a capability at an agent:
// the stream sequence of its event and the members it names (sorted). It
// takes the members from every grant of the capability, at the agent and
// below it, made before Seq.
type Revocation struct {
	Seq     uint64   `msgpack:"seq"`
	Members []string `msgpack:"members"`
}

// Agent is a dynamic agent's recipe and lineage facts.
type Agent struct {
	Path         string                     `msgpack:"path"`
	Primer       string                     `msgpack:"primer"`
	Capabilities map[string]*Grant          `msgpack:"caps"`  // own grants as granted, by Capability.Key (shared: never change in place)
	Tasks        map[string]*events.TaskDef `msgpack:"tasks"` // by task name (interned: never change in place)
	Creator      string                     `msgpack:"creator"`
	Correlation  string                     `msgpack:"corr"`
	CreatedSeq   uint64                     `msgpack:"cseq"`
	CreatedAt    int64                      `msgpack:"ctime"`
	Retired      bool                       `msgpack:"retired"`
	RetiredSeq   uint64                     `msgpack:"rseq"`
	RetiredBy    string                     `msgpack:"rby"`
	RetiredAt    int64                      `msgpack:"rtime"`
	// CreatorOnBehalfOf and RetiredOnBehalfOf are the claimed principals
	// of the creating and retiring events (events.Event.OnBehalfOf).
	CreatorOnBehalfOf string `msgpack:"cobo,omitempty"`
	RetiredOnBehalfOf string `msgpack:"robo,omitempty"`
	LastHash          string `msgpack:"hash"` // hash of the last applied event
	LastSeq           uint64 `msgpack:"lseq"`
	// Revocations are the member-level revocations made at this agent, by
	// Capability.Key, oldest first, each member in one entry only (the
	// newest that revoked it; see revoke): each is stored here once and applied
	// when a grant of this agent or of a descendant is read (Registry.Grant,
	// Registry.Effective), never copied into the grants. A whole revocation
	// of the capability here drops them with the grants they narrowed.
	// Shared between clones: appended to, never changed in place.
	Revocations map[string][]Revocation `msgpack:"revs,omitempty"`
}

// Parent returns the agent's parent path ("" is the root).
func (a *Agent) Parent() string { return events.Parent(a.Path) }

// Violation is an event that was not applied because it broke an invariant
// or could not be decoded.
type Violation struct {
	Seq     uint64 `msgpack:"seq" json:"seq"`
	Subject string `msgpack:"subject" json:"subject"`
	EventID string `msgpack:"id" json:"id,omitempty"`
	Type    string `msgpack:"type" json:"type,omitempty"`
	Path    string `msgpack:"path" json:"path,omitempty"`
	Code    string `msgpack:"code" json:"code"`
	Reason  string `msgpack:"reason" json:"reason"`
}

// Registry is the local registry of one root: the fold of that root's
// events. It is not safe for concurrent use: its owner serialises Apply and
// reads (the runtime holds a lock per root).
type Registry struct {
	Root      string          `msgpack:"root"`
	Def       *events.RootDef `msgpack:"def"`
	RootActor string          `msgpack:"ractor"`
	// RootOnBehalfOf is the claimed principal of the RootRegistered event.
	RootOnBehalfOf string            `msgpack:"rootobo,omitempty"`
	RootSeq        uint64            `msgpack:"rseq"`
	RootTime       int64             `msgpack:"rtime"`
	RootHash       string            `msgpack:"rhash"`
	MigratedTo     string            `msgpack:"mto"`
	MigratedSeq    uint64            `msgpack:"mseq"`
	Agents         map[string]*Agent `msgpack:"agents"`
	// SubjectSeq is the stream sequence of the last message seen on each
	// agent's subject ("" is the root), applied or not: the expected last
	// subject sequence of the next append.
	SubjectSeq map[string]uint64 `msgpack:"sseq"`
	Seq        uint64            `msgpack:"seq"`   // last stream sequence folded
	Count      uint64            `msgpack:"count"` // records folded
	Violations []Violation       `msgpack:"violations"`
	// ViolationsDropped counts the violations dropped from Violations,
	// which keeps the newest MaxViolations.
	ViolationsDropped uint64 `msgpack:"vdropped"`

	tasks map[string]*events.TaskDef // interned task definitions (see itask)
	trust *Trust                     // nil: no trust policy
	// ids holds the id of every event the registry refused past the trust
	// check, by the path of its subject: a second event with one of them on
	// the same subject (a replayed copy) is a violation (HasID, IDCount).
	ids  refusedIDs
	tree tree // the child index (see tree.go)
}

// New returns the empty registry of a root.
func New(root string) *Registry {
	return &Registry{Root: root, Agents: map[string]*Agent{}, SubjectSeq: map[string]uint64{}, tree: tree{kids: map[string]*childSet{}}}
}

// LastHash returns the hash of the last applied event of the agent at path
// ("" is the root), "" if none.
func (r *Registry) LastHash(path string) string {
	if path == "" {
		return r.RootHash
	}
	if a := r.Agents[path]; a != nil {
		return a.LastHash
	}
	return ""
}

// Agent returns the agent at path, or an error wrapping events.ErrNotFound.
func (r *Registry) Agent(path string) (*Agent, error) {
	a := r.Agents[path]
	if a == nil {
		return nil, fmt.Errorf("agent %q under root %s: %w", path, short(r.Root), events.ErrNotFound)
	}
	return a, nil
}

// Paths returns every agent path in sorted order.
func (r *Registry) Paths() []string {
	out := make([]string, 0, len(r.Agents))
	for p := range r.Agents {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// Effective is a capability an agent may use: its own grant intersected
// with the same capability of every ancestor up to the root. Chain holds
// the grants from the root down to the agent itself; a member is usable
// only if every one of them allows it.
type Effective struct {
	Capability events.Capability // the agent's own grant (normalized)
	Chain      []events.Capability
}

// Allows reports whether member passes every grant in the chain.
func (e Effective) Allows(member string) bool {
	for _, c := range e.Chain {
		if !c.Allows(member) {
			return false
		}
	}
	return true
}

// Effective returns the agent's effective capabilities, sorted by key, using
// the root definition recorded in the registry.
func (r *Registry) Effective(path string) ([]Effective, error) {
	if r.Def == nil {
		return nil, fmt.Errorf("root %s is not registered: %w", short(r.Root), events.ErrNotFound)
	}
	return r.EffectiveUnder(r.Def.Capabilities, path)
}

// CheckGrant reports whether granting c to the agent at path would be an
// escalation, judged against the parent's effective capabilities only (the
// agent itself need not exist yet: creation checks its grants with it).
func (r *Registry) CheckGrant(path string, c events.Capability) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("%w: %v", events.ErrMalformed, err)
	}
	return r.checkGrant(path, c.Normalized(), true)
}

// checkGrant reports an escalation: the parent of path must effectively hold
// the capability, every literal member the grant names in Include must be
// usable by the parent, and every pattern in Include must be provably
// covered by each grant from the root down to the parent
// (events.Capability.CoversPattern: an include "*", the same pattern, or a
// literal prefix followed by "*"; every exclude either disjoint from the
// pattern or one the grant excludes too). A pattern that cannot be proved
// so is refused: the error says to list the members by name.
func (r *Registry) checkGrant(path string, c events.Capability, patterns bool) error {
	parent := events.Parent(path)
	if r.Def == nil {
		return fmt.Errorf("root %s is not registered: %w", short(r.Root), events.ErrNotFound)
	}
	if parent != "" {
		if r.Agents[parent] == nil {
			return fmt.Errorf("agent %q under root %s: %w", parent, short(r.Root), events.ErrNotFound)
		}
	}
	chain, ok := r.chain(r.Def.Capabilities, parent, c.Key())
	if !ok {
		return &events.EscalationError{Capability: c, Parent: parent}
	}
	e := Effective{Capability: chain[len(chain)-1], Chain: chain}
	var denied, unproved []string
	budget := events.GlobBudget // steps for all of this grant's patterns
	for _, p := range c.Include {
		if events.IsPattern(p) {
			if !patterns {
				continue // a version 1 event: intersected at resolve time, never widened
			}
			for _, g := range chain {
				if !g.CoversPattern(p, c.Exclude, &budget) {
					unproved = append(unproved, p)
					break
				}
			}
			continue
		}
		if !e.Allows(p) {
			denied = append(denied, p)
		}
	}
	if len(denied) > 0 {
		return &events.EscalationError{Capability: c, Parent: parent, Members: denied}
	}
	if len(unproved) > 0 {
		return &events.EscalationError{Capability: c, Parent: parent, Members: unproved, Patterns: true}
	}
	return nil
}

// EffectiveUnder is Effective with the root's capabilities given by the
// caller: a migrated registry resolves under the new root's definition.
func (r *Registry) EffectiveUnder(rootCaps []events.Capability, path string) ([]Effective, error) {
	if path == "" {
		out := make([]Effective, 0, len(rootCaps))
		for _, c := range rootCaps {
			c = c.Normalized()
			out = append(out, Effective{Capability: c, Chain: []events.Capability{c}})
		}
		slices.SortFunc(out, func(a, b Effective) int { return strings.Compare(a.Capability.Key(), b.Capability.Key()) })
		return out, nil
	}
	a, err := r.Agent(path)
	if err != nil {
		return nil, err
	}
	var out []Effective
	for _, k := range sortedKeys(a.Capabilities) {
		chain, ok := r.chain(rootCaps, path, k)
		if !ok {
			continue
		}
		out = append(out, Effective{Capability: chain[len(chain)-1], Chain: chain})
	}
	return out, nil
}

// Grant returns the agent's grant of capability key (events.Capability.Key)
// as it stands: its Capability's Exclude holds, besides what was granted,
// every member a revocation of the agent or of an ancestor took from it
// after it was granted (listed in Revoked). False if the agent or the grant
// does not exist. The result shares nothing the registry changes.
func (r *Registry) Grant(path, key string) (StandingGrant, bool) {
	a := r.Agents[path]
	if a == nil || a.Capabilities[key] == nil {
		return StandingGrant{}, false
	}
	var revs [][]Revocation
	for _, p := range append(events.Ancestors(path), path) {
		if anc := r.Agents[p]; anc != nil && len(anc.Revocations[key]) > 0 {
			revs = append(revs, anc.Revocations[key])
		}
	}
	g := StandingGrant{Grant: *a.Capabilities[key]}
	g.Capability, g.Revoked = narrowed(&g.Grant, revs)
	return g, true
}

// chain returns the grants of capability key from the root down to the
// agent at path (included), each narrowed by the revocations above it
// (narrowed); false if the root or any of them lacks it. It is the one walk
// of an agent's ancestors that every read of a grant goes through:
// Effective, the escalation checks of grants and creations.
func (r *Registry) chain(rootCaps []events.Capability, path, key string) ([]events.Capability, bool) {
	var chain []events.Capability
	for _, c := range rootCaps {
		if c.Key() == key {
			chain = append(chain, c.Normalized())
			break
		}
	}
	if chain == nil {
		return nil, false
	}
	if path == "" {
		return chain, true
	}
	var revs [][]Revocation // of the agents above and at the level read, root first
	for _, p := range append(events.Ancestors(path), path) {
		a := r.Agents[p]
		if a == nil {
			return nil, false
		}
		g, ok := a.Capabilities[key]
		if !ok {
			return nil, false
		}
		if len(a.Revocations[key]) > 0 {
			revs = append(revs, a.Revocations[key])
		}
		c, _ := narrowed(g, revs)
		chain = append(chain, c)
	}
	return chain, true
}

// narrowed returns g's capability with the members of every revocation in
// revs made after g (Seq greater than g.Seq) added to its Exclude, and those
// members, sorted (nil, and g's own capability unchanged, if none). Each
// list in revs is oldest first, so only its tail newer than g is read.
func narrowed(g *Grant, revs [][]Revocation) (events.Capability, []string) {
	var members []string
	for _, list := range revs {
		for i := len(list) - 1; i >= 0 && list[i].Seq > g.Seq; i-- {
			members = append(members, list[i].Members...)
		}
	}
	if len(members) == 0 {
		return g.Capability, nil
	}
	slices.Sort(members)
	members = slices.Compact(members)
	c := g.Capability
	c.Exclude = withMembers(c.Exclude, members)
	return c, members
}

// revoke returns list with rev appended and its members taken out of the
// older entries (emptied ones dropped), so that each member appears once,
// at the newest sequence it was revoked: a grant loses a member exactly
// when that sequence is after the grant's, so the answers are those of
// every revocation kept, and a list holds at most the distinct members
// ever revoked (events.MaxRevokedMembers) however often they are revoked
// again. The result is a new slice: list may be shared with a clone.
func revoke(list []Revocation, rev Revocation) []Revocation {
	out := make([]Revocation, 0, len(list)+1)
	for _, old := range list {
		kept := make([]string, 0, len(old.Members))
		for _, m := range old.Members {
			if _, found := slices.BinarySearch(rev.Members, m); !found {
				kept = append(kept, m)
			}
		}
		if len(kept) > 0 {
			out = append(out, Revocation{Seq: old.Seq, Members: kept})
		}
	}
	return append(out, rev)
}

// revokedAfter counts the distinct members list and members revoke
// together.
func revokedAfter(list []Revocation, members []string) int {
	seen := make(map[string]struct{}, len(members))
	n := 0
	for _, old := range list {
		n += len(old.Members) // each member once in a list (revoke)
		for _, m := range old.Members {
			seen[m] = struct{}{}
		}
	}
	for _, m := range members {
		if _, ok := seen[m]; !ok {
			seen[m] = struct{}{}
			n++
		}
	}
	return n
}

// withMembers returns the sorted union of list and members (a new slice).
func withMembers(list, members []string) []string {
	out := append(slices.Clone(list), members...)
	slices.Sort(out)
	return slices.Compact(out)
}

// liveAgent returns the agent at path if it exists and is not retired.
func (r *Registry) liveAgent(path string) (*Agent, error) {
	a, err := r.Agent(path)
	if err != nil {
		return nil, err
	}
	if a.Retired {
		return nil, &events.RetiredError{Path: path, Seq: a.RetiredSeq, By: a.RetiredBy}
	}
	return a, nil
}

// Check validates an event against the registry as it stands, without
// applying it: the runtime calls it before writing, the fold before
// applying. It does not check the hash chain (see Apply).
func (r *Registry) Check(e *events.Event) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if e.Root != r.Root {
		return fmt.Errorf("event %s is for root %s, this registry is %s: %w", e.ID, short(e.Root), short(r.Root), events.ErrWrongSubject)
	}
	if e.Type == events.RootRegistered {
		if r.Def != nil {
			return fmt.Errorf("root %s registered at seq %d: %w", short(r.Root), r.RootSeq, events.ErrExists)
		}
		def := e.Registered.Def
		if err := def.Validate(); err != nil {
			return invalid("root definition", err)
		}
		if fp := def.Fingerprint(); fp != r.Root {
			return fmt.Errorf("%w: root definition hashes to %s, not to the root %s it is filed under", events.ErrMalformed, short(fp), short(r.Root))
		}
		return nil
	}
	if r.Def == nil {
		return fmt.Errorf("root %s has no RootRegistered event: %w", short(r.Root), events.ErrNotFound)
	}
	if r.MigratedTo != "" {
		return fmt.Errorf("root %s migrated to %s at seq %d; write to the new root: %w", short(r.Root), short(r.MigratedTo), r.MigratedSeq, events.ErrMigrated)
	}
	switch e.Type {
	case events.RootMigrated:
		if e.Migration.To == r.Root {
			return fmt.Errorf("%w: root %s cannot migrate to itself", events.ErrMalformed, short(r.Root))
		}
		if err := events.ValidateFingerprint(e.Migration.To); err != nil {
			return err
		}
		if e.Version < 2 {
			return nil // as written before version 2: the target's form only
		}
		// A migration names a real new release of this root: its definition
		// travels with it, hashes to the target and keeps the root's name.
		// Anything else would only block the root for good.
		def := e.Migration.Def
		if def == nil {
			return fmt.Errorf("%w: migration of root %s to %s carries no definition of the target", events.ErrMalformed, short(r.Root), short(e.Migration.To))
		}
		if err := def.Validate(); err != nil {
			return fmt.Errorf("%w: migration target definition: %v", events.ErrMalformed, err)
		}
		if fp := def.Fingerprint(); fp != e.Migration.To {
			return fmt.Errorf("%w: migration target definition hashes to %s, not to %s", events.ErrMalformed, short(fp), short(e.Migration.To))
		}
		if def.Name != r.Def.Name {
			return fmt.Errorf("%w: migration of root %q to root %q: a migration keeps the root's name", events.ErrMalformed, r.Def.Name, def.Name)
		}
		return nil
	case events.AgentCreated:
		if a := r.Agents[e.Path]; a != nil {
			return fmt.Errorf("agent %q was created at seq %d by %q: %w", e.Path, a.CreatedSeq, a.Creator, events.ErrExists)
		}
		if parent := events.Parent(e.Path); parent != "" {
			if _, err := r.liveAgent(parent); err != nil {
				return fmt.Errorf("create %q: parent: %w", e.Path, err)
			}
		}
		return r.checkCreated(e.Path, e.Created)
	}
	if _, err := r.liveAgent(e.Path); err != nil {
		return err
	}
	switch e.Type {
	case events.CapabilityGranted:
		c := e.Granted.Capability
		if err := c.Validate(); err != nil {
			return invalid(fmt.Sprintf("grant to %q", e.Path), err)
		}
		// An agent holds only capabilities of its root, so at most
		// events.MaxCapabilities of them.
		// Patterns are checked in events of schema version 2 on: histories
		// written before (version 1) fold as they did, their patterns
		// bounded by the resolve-time intersection.
		// An escalation is reported before a missing replace.
		if err := r.checkGrant(e.Path, c.Normalized(), e.Version >= 2); err != nil || e.Version < 3 {
			return err
		}
		// From version 3 a grant never replaces silently: replacing a held
		// capability says so.
		if _, held := r.Agents[e.Path].Capabilities[c.Key()]; held && !e.Granted.Replace {
			return fmt.Errorf("agent %q holds %s %q already: a grant replacing it must say so (replace): %w", e.Path, c.Kind, c.Name, events.ErrExists)
		}
		return nil
	case events.CapabilityRevoked:
		rv := e.Revoked
		key := events.Capability{Kind: rv.Kind, Name: rv.Name}.Key()
		if _, ok := r.Agents[e.Path].Capabilities[key]; !ok {
			return fmt.Errorf("revoke %s %q from %q: the agent does not hold it: %w", rv.Kind, rv.Name, e.Path, events.ErrNotFound)
		}
		if len(rv.Members) > 0 {
			if err := rv.Validate(); err != nil {
				return invalid(fmt.Sprintf("revoke from %q", e.Path), err)
			}
			// The revocation is stored once, at the agent
			// (Agent.Revocations), and a grant it narrows is never
			// rewritten. What bounds it depends on the agent alone, as a
			// reader folding only a chain (agent.readChain) sees it: the
			// distinct members revoked here from this capability.
			if n := revokedAfter(r.Agents[e.Path].Revocations[key], rv.Members); n > events.MaxRevokedMembers {
				return fmt.Errorf("%w: revoke %s %q from %q: %d distinct members would be revoked there, the limit is %d",
					events.ErrTooLarge, rv.Kind, rv.Name, e.Path, n, events.MaxRevokedMembers)
			}
		}
	case events.TaskDefined:
		t := e.Task.Task
		if err := events.CheckSchemaValues(fmt.Sprintf("agent %q", e.Path), t); err != nil {
			return err
		}
		if err := t.Validate(); err != nil {
			return invalid(fmt.Sprintf("agent %q", e.Path), err)
		}
		if a := r.Agents[e.Path]; len(a.Tasks) >= events.MaxTasks && a.Tasks[t.Name] == nil {
			return fmt.Errorf("%w: agent %q holds %d tasks, the limit is %d: task %q would be one more",
				events.ErrTooLarge, e.Path, len(a.Tasks), events.MaxTasks, t.Name)
		}
	}
	return nil
}

// checkCreated checks the grants and tasks a (version 2) creation carries,
// as if each were its own CapabilityGranted or TaskDefined event to the new
// agent: a capability must validate and the parent must effectively hold
// it (checkGrant), a task must validate, and no capability key or task name
// may appear twice. Any failure refuses the whole creation.
func (r *Registry) checkCreated(path string, c *events.CreatedData) error {
	if err := c.CheckLimits(path); err != nil {
		return err
	}
	seen := make(map[string]bool, len(c.Capabilities))
	for _, cp := range c.Capabilities {
		if err := cp.Validate(); err != nil {
			return invalid(fmt.Sprintf("create %q", path), err)
		}
		if seen[cp.Key()] {
			return fmt.Errorf("%w: create %q: capability %s %q appears twice", events.ErrMalformed, path, cp.Kind, cp.Name)
		}
		seen[cp.Key()] = true
		if err := r.checkGrant(path, cp.Normalized(), true); err != nil {
			return fmt.Errorf("create %q: %w", path, err)
		}
	}
	names := make(map[string]bool, len(c.Tasks))
	for _, t := range c.Tasks {
		if err := t.Validate(); err != nil {
			return invalid(fmt.Sprintf("create %q", path), err)
		}
		if names[t.Name] {
			return fmt.Errorf("%w: create %q: task %q appears twice", events.ErrMalformed, path, t.Name)
		}
		names[t.Name] = true
	}
	return nil
}

// invalid is the error for a body that does not validate: ErrMalformed, or
// the ErrTooLarge it wraps (an input over a limit), prefixed with what.
func invalid(what string, err error) error {
	if errors.Is(err, events.ErrTooLarge) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%w: %s: %v", events.ErrMalformed, what, err)
}

// Apply folds one record into the registry. A record that cannot be decoded
// or that breaks an invariant is not applied: it is appended to Violations
// with its sequence and reason, and the fold goes on. Apply does no I/O and
// never panics on any input.
func (r *Registry) Apply(rec events.Record) {
	r.Seq = rec.Seq
	r.Count++
	root, path, err := events.ParseSubject(subjectPrefix(rec.Subject, r.Root), rec.Subject)
	if err == nil && root != r.Root {
		err = fmt.Errorf("subject %q is not under root %s: %w", rec.Subject, short(r.Root), events.ErrWrongSubject)
	}
	if err == nil && path != "" {
		err = events.ValidatePath(path)
	}
	if err != nil {
		r.violate(rec, nil, err)
		return
	}
	r.SubjectSeq[path] = rec.Seq
	e, err := events.Decode(rec.Data)
	if err != nil {
		r.violate(rec, nil, err)
		return
	}
	if e.Path != path || e.Root != r.Root {
		r.violate(rec, e, fmt.Errorf("event for root %s path %q stored on subject %q: %w", short(e.Root), e.Path, rec.Subject, events.ErrWrongSubject))
		return
	}
	if r.trust != nil {
		if err := r.trust.check(rec.Data, e); err != nil {
			r.violate(rec, e, err)
			return
		}
	}
	// A copy of a refused event, published again later, could pass the
	// checks it failed then (the parent has since been granted what it
	// lacked): the ids of refused events are remembered, by subject (a
	// copy on another subject fails the hash chain there). A copy of an
	// applied event cannot pass: its Prev names what came before the
	// original, which is no longer the agent's last hash (or, for a
	// creation, the agent exists). Only events past the trust check take
	// an id, so a forgery cannot claim the id of a write yet to come.
	if r.ids.has(path, e.ID) {
		r.violate(rec, e, fmt.Errorf("event %s was refused before: a copy published again: %w", e.ID, events.ErrReplayed))
		return
	}
	if want := r.LastHash(path); e.Prev != want && !(e.Type == events.AgentCreated && r.Agents[path] == nil && e.Prev == "") {
		r.ids.add(path, e.ID)
		r.violate(rec, e, fmt.Errorf("event %s names previous hash %s, the agent's last applied event hashes to %s: %w",
			e.ID, shortHash(e.Prev), shortHash(want), events.ErrChain))
		return
	}
	if err := r.Check(e); err != nil {
		r.ids.add(path, e.ID)
		r.violate(rec, e, err)
		return
	}
	r.mutate(rec, e)
}

func (r *Registry) mutate(rec events.Record, e *events.Event) {
	hash := events.Hash(rec.Data)
	switch e.Type {
	case events.RootRegistered:
		def := e.Registered.Def.Canonical()
		r.Def, r.RootActor, r.RootSeq, r.RootTime = &def, e.Actor, rec.Seq, e.Time
		r.RootOnBehalfOf = e.OnBehalfOf
	case events.RootMigrated:
		r.MigratedTo, r.MigratedSeq = e.Migration.To, rec.Seq
	case events.AgentCreated:
		a := &Agent{
			Path: e.Path, Primer: e.Created.Primer,
			Capabilities: make(map[string]*Grant, len(e.Created.Capabilities)),
			Tasks:        make(map[string]*events.TaskDef, len(e.Created.Tasks)),
			Creator:      istr(e.Actor), Correlation: e.Correlation, CreatedSeq: rec.Seq, CreatedAt: e.Time,
			CreatorOnBehalfOf: istr(e.OnBehalfOf),
		}
		for _, c := range e.Created.Capabilities {
			c = icap(c.Normalized())
			a.Capabilities[c.Key()] = &Grant{Capability: c, Seq: rec.Seq, Time: e.Time, Actor: a.Creator, OnBehalfOf: a.CreatorOnBehalfOf}
		}
		for _, t := range e.Created.Tasks {
			t := r.itask(t)
			a.Tasks[t.Name] = t
		}
		r.addAgent(a)
	case events.CapabilityGranted:
		c := icap(e.Granted.Capability.Normalized())
		a := r.Agents[e.Path]
		if a.Capabilities == nil { // a clone leaves empty maps nil
			a.Capabilities = map[string]*Grant{}
		}
		a.Capabilities[c.Key()] = &Grant{Capability: c, Seq: rec.Seq, Time: e.Time, Actor: istr(e.Actor), OnBehalfOf: istr(e.OnBehalfOf)}
	case events.CapabilityRevoked:
		key := events.Capability{Kind: e.Revoked.Kind, Name: e.Revoked.Name}.Key()
		if members := e.Revoked.Members; len(members) > 0 {
			// Stored once, here; read by chain and Grant. The list may
			// be shared with a clone (clipped there): append only.
			a := r.Agents[e.Path]
			if a.Revocations == nil {
				a.Revocations = map[string][]Revocation{}
			}
			ms := make([]string, len(members))
			for i, m := range members {
				ms[i] = istr(m)
			}
			slices.Sort(ms)
			a.Revocations[key] = revoke(a.Revocations[key], Revocation{Seq: rec.Seq, Members: slices.Compact(ms)})
			break
		}
		// The grants go, and with them every member revocation at or
		// below the agent: each narrowed only grants made before it,
		// all of them removed now.
		drop := func(a *Agent) {
			delete(a.Capabilities, key)
			delete(a.Revocations, key)
			if len(a.Revocations) == 0 {
				a.Revocations = nil
			}
		}
		drop(r.Agents[e.Path])
		r.visitBelow(e.Path, drop)
	case events.TaskDefined:
		t := r.itask(e.Task.Task)
		a := r.Agents[e.Path]
		if a.Tasks == nil {
			a.Tasks = map[string]*events.TaskDef{}
		}
		a.Tasks[t.Name] = t
	case events.AgentRetired:
		retire := func(a *Agent) {
			if !a.Retired {
				a.Retired, a.RetiredSeq, a.RetiredBy, a.RetiredAt = true, rec.Seq, e.Actor, e.Time
				a.RetiredOnBehalfOf = e.OnBehalfOf
			}
		}
		retire(r.Agents[e.Path])
		r.visitBelow(e.Path, retire)
	}
	if e.Path == "" {
		r.RootHash = hash
		return
	}
	a := r.Agents[e.Path]
	a.LastHash, a.LastSeq = hash, rec.Seq
}

// Violation codes, one per kind of broken invariant.
const (
	CodeMalformed     = "malformed"
	CodeUnknownType   = "unknown_type"
	CodeFutureVersion = "future_version"
	CodeInvalidName   = "invalid_name"
	CodeWrongSubject  = "wrong_subject"
	CodeChain         = "chain"
	CodeEscalation    = "escalation"
	CodeUnknown       = "unknown_agent"
	CodeExists        = "exists"
	CodeRetired       = "retired"
	CodeMigrated      = "migrated"
	CodeOther         = "invalid"
	CodeTooLarge      = "too_large"
	CodeUnsigned      = "unsigned"
	CodeBadSignature  = "bad_signature"
	CodeUntrusted     = "untrusted_signer"
	CodeReplayed      = "replayed"
)

// CodeOf maps an error to its violation code.
func CodeOf(err error) string {
	for _, c := range []struct {
		err  error
		code string
	}{
		{events.ErrTooLarge, CodeTooLarge},
		{events.ErrFutureVersion, CodeFutureVersion},
		{events.ErrUnknownType, CodeUnknownType},
		{events.ErrInvalidName, CodeInvalidName},
		{events.ErrWrongSubject, CodeWrongSubject},
		{events.ErrChain, CodeChain},
		{events.ErrEscalation, CodeEscalation},
		{events.ErrNotFound, CodeUnknown},
		{events.ErrExists, CodeExists},
		{events.ErrRetired, CodeRetired},
		{events.ErrMigrated, CodeMigrated},
		{events.ErrMalformed, CodeMalformed},
		{events.ErrUnsigned, CodeUnsigned},
		{events.ErrBadSignature, CodeBadSignature},
		{events.ErrUntrustedSigner, CodeUntrusted},
		{events.ErrReplayed, CodeReplayed},
	} {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return CodeOther
}

// MaxViolations bounds Registry.Violations: past it the oldest violation
// is dropped for each new one and counted in ViolationsDropped, so that a
// flood of bad messages cannot grow a registry or its snapshots. The newest
// are kept: a writer finds its own refused event there.
const MaxViolations = 1000

// Bounds on a violation's strings (cut beyond, marked with "...").
const (
	maxViolationReason = 1024
	maxViolationID     = 128
	maxViolationText   = 2304 // subject, path: a path of 32 segments of 64 fits
)

func (r *Registry) violate(rec events.Record, e *events.Event, err error) {
	v := Violation{Seq: rec.Seq, Subject: cut(rec.Subject, maxViolationText), Code: CodeOf(err), Reason: cut(err.Error(), maxViolationReason)}
	if e != nil {
		v.EventID, v.Type, v.Path = cut(e.ID, maxViolationID), cut(string(e.Type), maxViolationID), cut(e.Path, maxViolationText)
	}
	if n := len(r.Violations); n >= MaxViolations {
		keep := r.Violations[n-MaxViolations+1:]
		r.ViolationsDropped += uint64(n - len(keep))
		if len(keep) == cap(keep) {
			// Room for the next MaxViolations drops without copying; a
			// clone (whose slice is clipped) never sees these writes.
			keep = append(make([]Violation, 0, 2*MaxViolations), keep...)
		}
		r.Violations = keep
	}
	r.Violations = append(r.Violations, v)
}

// cut shortens s to at most n bytes (on a rune boundary), ending in "...".
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n - 3
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// subjectPrefix recovers the subject prefix: everything before ".<root>".
func subjectPrefix(subject, root string) string {
	if i := strings.Index(subject, "."+root); i > 0 {
		return subject[:i]
	}
	if i := strings.IndexByte(subject, '.'); i > 0 {
		return subject[:i]
	}
	return subject
}

func short(fp string) string {
	if len(fp) > 12 {
		return fp[:12]
	}
	return fp
}

func shortHash(h string) string {
	if h == "" {
		return `""`
	}
	return short(h)
}
