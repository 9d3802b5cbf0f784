package agent

import (
	"context"
	"slices"
	"strings"
	"time"
)

// RefreshLoaded folds new events of a root whose registry this runtime has
// loaded; a root not loaded is left alone (it is read when first used). A
// follower of the stream calls it to keep active registries hot.
func (rt *Runtime) RefreshLoaded(ctx context.Context, root string) error {
	rt.mu.Lock()
	st := rt.state[root]
	rt.mu.Unlock()
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.reg == nil {
		return nil
	}
	return rt.catchUp(ctx, root, st)
}

// RootStats describes a loaded registry.
type RootStats struct {
	Root         string
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
			out = append(out, RootStats{Root: root, Seq: st.reg.Seq, Applied: st.reg.Count, Violations: len(st.reg.Violations),
				Agents: len(st.reg.Agents), SnapshotTime: st.snapTime})
		}
		st.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b RootStats) int { return strings.Compare(a.Root, b.Root) })
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
	}
}
