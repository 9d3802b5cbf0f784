package agent

import (
	"slices"
	"strings"
	"time"
)

// RootStats describes a loaded registry.
type RootStats struct {
	Root         RootID
	Seq          uint64 // last stream sequence folded
	Applied      uint64 // records folded (applied or violations)
	Violations   int    // records not applied
	Agents       int
	SnapshotTime time.Time // of the newest snapshot taken or loaded; zero if none
}

// Stats describes every loaded registry, sorted by root.
func (rt *Runtime) Stats() []RootStats {
	rt.mu.Lock()
	states := make(map[string]*rootState, len(rt.state))
	for k, v := range rt.state {
		states[k] = v
	}
	rt.mu.Unlock()
	var out []RootStats
	for root, st := range states {
		st.mu.Lock()
		if st.reg != nil {
			out = append(out, RootStats{Root: RootID(root), Seq: st.reg.Seq, Applied: st.reg.Count, Violations: len(st.reg.Violations),
				Agents: len(st.reg.Agents), SnapshotTime: st.snapTime})
		}
		st.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b RootStats) int { return strings.Compare(string(a.Root), string(b.Root)) })
	return out
}

// forgetUnloaded drops the entry of a root whose registry was never loaded,
// or whose log holds nothing: a ref or a read naming an unknown root costs no
// memory. st.mu is held by the caller.
func (rt *Runtime) forgetUnloaded(root string, st *rootState) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.state[root] == st && (st.reg == nil || st.reg.Count == 0) {
		delete(rt.state, root)
		st.attached, st.inbox, st.loaded = false, nil, false
	}
}
