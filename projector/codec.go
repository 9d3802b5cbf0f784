package projector

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/events"
)

// wireRegistry is the canonical form of a Registry: every map becomes a
// slice sorted by key, so equal registries encode to equal bytes (the
// msgpack encoder does not order the keys of typed maps).
type wireRegistry struct {
	Root        string          `msgpack:"root"`
	Def         *events.RootDef `msgpack:"def"`
	RootActor   string          `msgpack:"ractor"`
	RootOBO     string          `msgpack:"rootobo,omitempty"`
	RootSeq     uint64          `msgpack:"rseq"`
	RootTime    int64           `msgpack:"rtime"`
	RootHash    string          `msgpack:"rhash"`
	MigratedTo  string          `msgpack:"mto"`
	MigratedSeq uint64          `msgpack:"mseq"`
	Agents      []wireAgent     `msgpack:"agents"`
	SubjectSeq  []wireSubject   `msgpack:"sseq"`
	Seq         uint64          `msgpack:"seq"`
	Count       uint64          `msgpack:"count"`
	Violations  []Violation     `msgpack:"violations"`
	VDropped    uint64          `msgpack:"vdropped,omitempty"`
	IDs         []wireIDs       `msgpack:"ids"` // the ids of refused events, by subject path
}

// wireIDs are the ids of the events refused on one subject (Path "" is the
// root's), sorted; the entries are sorted by path.
type wireIDs struct {
	Path string   `msgpack:"p"`
	IDs  []string `msgpack:"ids"`
}

// wireRevocations are an agent's member revocations of one capability
// (Key, events.Capability.Key), oldest first; the entries are sorted by key.
type wireRevocations struct {
	Key  string       `msgpack:"key"`
	Revs []Revocation `msgpack:"revs"`
}

type wireAgent struct {
	Path         string            `msgpack:"path"`
	Primer       string            `msgpack:"primer"`
	Capabilities []Grant           `msgpack:"caps"`
	Tasks        []events.TaskDef  `msgpack:"tasks"`
	Creator      string            `msgpack:"creator"`
	Correlation  string            `msgpack:"corr"`
	CreatedSeq   uint64            `msgpack:"cseq"`
	CreatedAt    int64             `msgpack:"ctime"`
	Retired      bool              `msgpack:"retired"`
	RetiredSeq   uint64            `msgpack:"rseq"`
	RetiredBy    string            `msgpack:"rby"`
	RetiredAt    int64             `msgpack:"rtime"`
	CreatorOBO   string            `msgpack:"cobo,omitempty"`
	RetiredOBO   string            `msgpack:"robo,omitempty"`
	LastHash     string            `msgpack:"hash"`
	LastSeq      uint64            `msgpack:"lseq"`
	Revocations  []wireRevocations `msgpack:"revs,omitempty"`
}

type wireSubject struct {
	Path string `msgpack:"p"`
	Seq  uint64 `msgpack:"s"`
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (r *Registry) wire() *wireRegistry {
	w := &wireRegistry{
		Root: r.Root, Def: r.Def, RootActor: r.RootActor, RootOBO: r.RootOnBehalfOf, RootSeq: r.RootSeq, RootTime: r.RootTime,
		RootHash: r.RootHash, MigratedTo: r.MigratedTo, MigratedSeq: r.MigratedSeq,
		Seq: r.Seq, Count: r.Count, Violations: r.Violations, VDropped: r.ViolationsDropped,
		Agents:     make([]wireAgent, 0, len(r.Agents)),
		SubjectSeq: make([]wireSubject, 0, len(r.SubjectSeq)),
	}
	for _, p := range sortedKeys(r.Agents) {
		a := r.Agents[p]
		wa := wireAgent{
			Path: a.Path, Primer: a.Primer, Creator: a.Creator, Correlation: a.Correlation,
			CreatedSeq: a.CreatedSeq, CreatedAt: a.CreatedAt, Retired: a.Retired, RetiredSeq: a.RetiredSeq,
			RetiredBy: a.RetiredBy, RetiredAt: a.RetiredAt, LastHash: a.LastHash, LastSeq: a.LastSeq,
			CreatorOBO: a.CreatorOnBehalfOf, RetiredOBO: a.RetiredOnBehalfOf,
			Capabilities: make([]Grant, 0, len(a.Capabilities)), Tasks: make([]events.TaskDef, 0, len(a.Tasks)),
		}
		for _, k := range sortedKeys(a.Capabilities) {
			wa.Capabilities = append(wa.Capabilities, *a.Capabilities[k])
		}
		for _, k := range sortedKeys(a.Tasks) {
			wa.Tasks = append(wa.Tasks, *a.Tasks[k])
		}
		for _, k := range sortedKeys(a.Revocations) {
			wa.Revocations = append(wa.Revocations, wireRevocations{Key: k, Revs: a.Revocations[k]})
		}
		w.Agents = append(w.Agents, wa)
	}
	for _, p := range sortedKeys(r.SubjectSeq) {
		w.SubjectSeq = append(w.SubjectSeq, wireSubject{Path: p, Seq: r.SubjectSeq[p]})
	}
	w.IDs = make([]wireIDs, 0, len(r.ids))
	for _, p := range sortedKeys(r.ids) {
		w.IDs = append(w.IDs, wireIDs{Path: p, IDs: r.ids[p].sorted()})
	}
	return w
}

func (w *wireRegistry) registry() (*Registry, error) {
	r := &Registry{
		Root: w.Root, Def: w.Def, RootActor: w.RootActor, RootOnBehalfOf: w.RootOBO, RootSeq: w.RootSeq, RootTime: w.RootTime,
		RootHash: w.RootHash, MigratedTo: w.MigratedTo, MigratedSeq: w.MigratedSeq,
		Seq: w.Seq, Count: w.Count, Violations: w.Violations, ViolationsDropped: w.VDropped,
		Agents: make(map[string]*Agent, len(w.Agents)), SubjectSeq: make(map[string]uint64, len(w.SubjectSeq)),
	}
	for _, wa := range w.Agents {
		if _, dup := r.Agents[wa.Path]; dup || events.ValidatePath(wa.Path) != nil {
			return nil, fmt.Errorf("%w: registry: agent entry %q is invalid or repeated", events.ErrMalformed, wa.Path)
		}
		a := &Agent{
			Path: wa.Path, Primer: wa.Primer, Creator: istr(wa.Creator), Correlation: wa.Correlation,
			CreatedSeq: wa.CreatedSeq, CreatedAt: wa.CreatedAt, Retired: wa.Retired, RetiredSeq: wa.RetiredSeq,
			RetiredBy: wa.RetiredBy, RetiredAt: wa.RetiredAt, LastHash: wa.LastHash, LastSeq: wa.LastSeq,
			CreatorOnBehalfOf: istr(wa.CreatorOBO), RetiredOnBehalfOf: wa.RetiredOBO,
			Capabilities: make(map[string]*Grant, len(wa.Capabilities)), Tasks: make(map[string]*events.TaskDef, len(wa.Tasks)),
		}
		for _, g := range wa.Capabilities {
			g.Capability, g.Actor, g.OnBehalfOf = icap(g.Capability), istr(g.Actor), istr(g.OnBehalfOf)
			a.Capabilities[g.Capability.Key()] = &g
		}
		for _, wr := range wa.Revocations {
			if err := checkRevocations(wa.Path, wr); err != nil {
				return nil, err
			}
			if a.Revocations == nil {
				a.Revocations = make(map[string][]Revocation, len(wa.Revocations))
			}
			if _, dup := a.Revocations[wr.Key]; dup {
				return nil, fmt.Errorf("%w: registry: agent %q: revocations of %q repeated", events.ErrMalformed, wa.Path, wr.Key)
			}
			for _, rv := range wr.Revs {
				for i, m := range rv.Members {
					rv.Members[i] = istr(m) // not islice: sets of revoked names are rarely shared
				}
			}
			a.Revocations[istr(wr.Key)] = wr.Revs
		}
		for _, t := range wa.Tasks {
			a.Tasks[t.Name] = r.itask(t)
		}
		r.Agents[wa.Path] = a
	}
	for _, s := range w.SubjectSeq {
		r.SubjectSeq[s.Path] = s.Seq
	}
	for _, s := range w.IDs {
		if _, dup := r.ids[s.Path]; dup || (s.Path != "" && events.ValidatePath(s.Path) != nil) {
			return nil, fmt.Errorf("%w: registry: refused ids of subject path %q invalid or repeated", events.ErrMalformed, s.Path)
		}
		for _, id := range s.IDs {
			r.ids.add(s.Path, id)
		}
	}
	r.rebuildIndex()
	return r, nil
}

// checkRevocations refuses a list the fold could not have made: one that is
// empty, not oldest first, or with a revocation naming no member or
// unsorted ones (the read stops at the first revocation older than a grant).
func checkRevocations(path string, wr wireRevocations) error {
	bad := len(wr.Revs) == 0
	for i, rv := range wr.Revs {
		if len(rv.Members) == 0 || !slices.IsSorted(rv.Members) || (i > 0 && wr.Revs[i-1].Seq >= rv.Seq) {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("%w: registry: agent %q: revocations of %q are empty or out of order", events.ErrMalformed, path, wr.Key)
	}
	return nil
}

// Marshal returns the canonical msgpack encoding of the registry: every
// map as a slice sorted by key, so equal registries give equal bytes on any
// machine. It is the body of a snapshot and the input of StateHash.
func (r *Registry) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(r.wire()); err != nil {
		return nil, fmt.Errorf("encode registry of root %s: %w", short(r.Root), err)
	}
	return buf.Bytes(), nil
}

// Unmarshal decodes a registry encoded by Marshal. It never panics; bytes
// that do not decode give an error wrapping events.ErrMalformed.
func Unmarshal(b []byte) (reg *Registry, err error) {
	defer func() {
		if p := recover(); p != nil {
			reg, err = nil, fmt.Errorf("%w: registry decoder failed: %v", events.ErrMalformed, p)
		}
	}()
	if err := checkWire(b); err != nil {
		return nil, fmt.Errorf("%w: registry: %v", events.ErrMalformed, err)
	}
	r := bytes.NewReader(b)
	var w wireRegistry
	if err := msgpack.NewDecoder(r).Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: registry: %v", events.ErrMalformed, err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: registry: %d trailing bytes", events.ErrMalformed, r.Len())
	}
	if err := events.ValidateFingerprint(w.Root); err != nil {
		return nil, fmt.Errorf("%w: registry: %v", events.ErrMalformed, err)
	}
	return w.registry()
}

// StateHash is the hex SHA-256 of the registry's Marshal encoding with
// every violation's reason left empty: same events, same hash. The reasons
// are this reader's English sentences; leaving them out lets another
// implementation reproduce the hash from what the fold decides (codes,
// sequences, ids, paths), and lets a reason's wording change without
// changing any hash (docs/wire.md, "The state hash").
func (r *Registry) StateHash() (string, error) {
	w := r.wire()
	if len(w.Violations) > 0 {
		vs := make([]Violation, len(w.Violations))
		for i, v := range w.Violations {
			v.Reason = ""
			vs[i] = v
		}
		w.Violations = vs
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(w); err != nil {
		return "", fmt.Errorf("encode registry of root %s: %w", short(r.Root), err)
	}
	sum := sha256.Sum256(buf.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

// maxWireDepth bounds how deeply maps and arrays nest in a registry's bytes:
// twice the bound on events, so that the registry of any events that decode
// (whose tasks nest a few levels deeper in it) loads.
const maxWireDepth = 1024

// checkWire is events.CheckWire with the bound on registries.
func checkWire(b []byte) error { return events.CheckWire(b, maxWireDepth) }
