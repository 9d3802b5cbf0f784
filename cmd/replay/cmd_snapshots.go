package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/snapshot"
)

// snapshotCheck is the verification of one stored snapshot.
type snapshotCheck struct {
	Root       string `json:"root"`
	Name       string `json:"name"`
	Seq        uint64 `json:"seq"`
	Taken      string `json:"taken"`
	Size       int    `json:"size"`
	OK         bool   `json:"ok"`
	Problem    string `json:"problem"`
	StateHash  string `json:"state_hash"`
	ReplayHash string `json:"replay_hash"`
	Note       string `json:"note"`
}

// checkSnapshots verifies every stored snapshot of the roots: checksum and
// versions, then its state hash against a fresh replay of the log up to its
// sequence (a mismatch means the fold changed, or the snapshot lies).
func checkSnapshots(ctx context.Context, src *source, c *common, roots []string) ([]snapshotCheck, error) {
	if src.snaps == nil {
		return nil, nil
	}
	var out []snapshotCheck
	for _, root := range roots {
		headers, err := src.snaps.List(ctx, root)
		if err != nil {
			return nil, err
		}
		recs, err := src.records(ctx, c, root, point{})
		if err != nil {
			return nil, err
		}
		// Oldest first, so one fold of the root's log, advanced from one
		// snapshot's sequence to the next, gives every replay hash.
		slices.SortStableFunc(headers, func(a, b snapshot.Header) int { return cmp.Compare(a.Seq, b.Seq) })
		replayed, n := projector.New(root), 0
		replayed.SetTrust(c.trust)
		var checks []snapshotCheck
		for _, h := range headers {
			chk := snapshotCheck{Root: root, Name: h.Name(), Seq: h.Seq, Taken: time.Unix(0, h.Time).UTC().Format(time.RFC3339), Size: h.Size}
			if h.Trust != c.trust.ID() {
				// Folded under another trust policy: a replay without the
				// same keys is not its fold. Not compared, not a problem.
				chk.OK, chk.Note = true, fmt.Sprintf("made under trust policy %q: compared only by an audit with --signers of that policy's keys", h.Trust)
				checks = append(checks, chk)
				continue
			}
			body, err := src.snaps.Body(ctx, h)
			if err != nil {
				chk.Problem = err.Error()
				checks = append(checks, chk)
				continue
			}
			reg, err := snapshot.Open(h, body)
			if err != nil {
				chk.Problem = err.Error()
				checks = append(checks, chk)
				continue
			}
			for n < len(recs) && recs[n].Seq <= h.Seq {
				replayed.Apply(recs[n])
				n++
			}
			if chk.StateHash, err = reg.StateHash(); err != nil {
				return nil, err
			}
			if chk.ReplayHash, err = replayed.StateHash(); err != nil {
				return nil, err
			}
			if chk.StateHash != chk.ReplayHash {
				chk.Problem = fmt.Sprintf("state hash %.16s differs from a fresh replay to seq %d (%.16s): the projector's fold changed, or the snapshot is wrong", chk.StateHash, h.Seq, chk.ReplayHash)
			} else {
				chk.OK = true
			}
			checks = append(checks, chk)
		}
		slices.Reverse(checks) // newest first, as the store lists them
		out = append(out, checks...)
	}
	return out, nil
}

func runSnapshots(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("snapshots", "", "List and verify stored snapshots (all roots, or --root).", &c, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("snapshots", "unexpected argument %q", fs.Arg(0))
	}
	src, err := c.open(ctx, "snapshots")
	if err != nil {
		return err
	}
	defer src.Close()
	var roots []string
	if c.root != "" {
		r, err := src.pickRoot(ctx, "snapshots", c.root)
		if err != nil {
			return err
		}
		roots = []string{r}
	} else if src.snaps != nil {
		if roots, err = src.snaps.Roots(ctx); err != nil {
			return err
		}
	}
	checks, err := checkSnapshots(ctx, src, &c, roots)
	if err != nil {
		return err
	}
	bad := 0
	enc := json.NewEncoder(stdout)
	for _, chk := range checks {
		if !chk.OK {
			bad++
		}
		if c.json {
			if err := enc.Encode(chk); err != nil {
				return err
			}
			continue
		}
		status := "ok"
		if !chk.OK {
			status = "BAD: " + chk.Problem
		}
		fmt.Fprintf(stdout, "%.12s  seq %-6d %s  %7d bytes  %s\n", chk.Root, chk.Seq, chk.Taken, chk.Size, status)
	}
	if !c.json {
		fmt.Fprintf(stdout, "%d snapshot(s), %d bad\n", len(checks), bad)
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d snapshot(s) failed verification: %w", bad, len(checks), errProblems)
	}
	return nil
}
