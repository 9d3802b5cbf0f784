package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

// problem is one finding of the audit.
type problem struct {
	Seq     uint64 `json:"seq"`
	Kind    string `json:"kind"` // purged, deleted, chain, duplicate_id, stray, a projector violation code, snapshot
	Root    string `json:"root"`
	Path    string `json:"path"`
	Subject string `json:"subject"`
	Detail  string `json:"detail"`
}

// auditReport is what `audit` finds.
type auditReport struct {
	Stream    string         `json:"stream"`
	Point     string         `json:"point"`
	Roots     int            `json:"roots"`
	Events    int            `json:"events"`
	Snapshots int            `json:"snapshots"`
	Signed    int            `json:"signed"`   // events with a valid signature
	Unsigned  int            `json:"unsigned"` // events without one
	Signers   []string       `json:"signers"`  // keys that signed valid events
	Problems  []problem      `json:"problems"`
	Counts    map[string]int `json:"counts"`
	Clean     bool           `json:"clean"`
}

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("audit", "", "Verify the history up to the point: per-agent hash chains (events edited, removed or reordered),\n"+
		"deleted messages, invariant violations (escalations, unknown parents, undecodable events), and stored\n"+
		"snapshots against a fresh replay; signatures when events are signed. Exit status 0 when clean, 1 with a\n"+
		"summary when not.", &c, stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("audit", "unexpected argument %q", fs.Arg(0))
	}
	p, err := c.point("audit")
	if err != nil {
		return err
	}
	src, err := c.open(ctx, "audit")
	if err != nil {
		return err
	}
	defer src.Close()
	rep, err := audit(ctx, src, &c, p)
	if err != nil {
		return err
	}
	if c.json {
		if err := json.NewEncoder(stdout).Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "audit of stream %s as of %s: %d root(s), %d event(s), %d snapshot(s)\n", rep.Stream, rep.Point, rep.Roots, rep.Events, rep.Snapshots)
		switch {
		case rep.Signed == 0:
			fmt.Fprintf(stdout, "signatures: the history is unsigned (%d events)\n", rep.Unsigned)
		default:
			fmt.Fprintf(stdout, "signatures: %d event(s) signed by %d key(s), %d unsigned\n", rep.Signed, len(rep.Signers), rep.Unsigned)
		}
		for _, pr := range rep.Problems {
			where := pr.Subject
			if pr.Root != "" {
				where = fmt.Sprintf("%.12s/%s", pr.Root, pr.Path)
			}
			fmt.Fprintf(stdout, "  seq %-6d %-14s %-40s %s\n", pr.Seq, pr.Kind, where, pr.Detail)
		}
		if rep.Clean {
			fmt.Fprintln(stdout, "clean: every hash chain intact, no violations, every snapshot agrees with a fresh replay")
		}
	}
	if !rep.Clean {
		var parts []string
		for _, k := range slices.Sorted(mapsKeys(rep.Counts)) {
			parts = append(parts, fmt.Sprintf("%d %s", rep.Counts[k], k))
		}
		return fmt.Errorf("audit: %d problem(s): %s: %w", len(rep.Problems), strings.Join(parts, ", "), errProblems)
	}
	return nil
}

// audit reads the whole stream once up to the point and checks it.
func audit(ctx context.Context, src *source, c *common, p point) (*auditReport, error) {
	rep := &auditReport{Stream: src.cfg.Stream, Point: p.String(), Counts: map[string]int{}}
	add := func(pr problem) {
		rep.Problems = append(rep.Problems, pr)
		rep.Counts[pr.Kind]++
	}
	byRoot := map[string][]events.Record{}
	last := uint64(0)
	err := src.scan(ctx, c, []string{src.cfg.Prefix + ".>"}, p, func(r events.Record) error {
		rep.Events++
		last = r.Seq
		root, _, err := events.ParseSubject(src.cfg.Prefix, r.Subject)
		if err != nil || events.ValidateFingerprint(root) != nil {
			add(problem{Seq: r.Seq, Kind: "stray", Subject: r.Subject, Detail: "message on a subject that belongs to no root"})
			return nil
		}
		byRoot[root] = append(byRoot[root], r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	state, err := src.log.StreamState(ctx)
	if err != nil {
		return nil, err
	}
	// Removed messages: those inside the stream are listed in Deleted, one
	// problem each up to maxListedDeletes and one for the rest; what lies
	// below its first sequence (a stream agentreg created starts at 1: the
	// first messages deleted, or a purge, possibly past the last stored
	// sequence) is one problem, as it is not known which of those sequences
	// ever held a message.
	bound := uint64(math.MaxUint64)
	switch {
	case p.seq != 0:
		bound = p.seq
	case !p.at.IsZero():
		bound = last
	}
	if hi := min(state.FirstSeq-1, bound); state.FirstSeq > 1 && hi >= 1 {
		add(problem{Seq: 1, Kind: "purged", Detail: purgedString(1, hi, state.FirstSeq) + "; an event log never deletes"})
	}
	var listed int
	var unlisted rangeLine
	for _, r := range removedRuns(state.FirstSeq, state.Deleted) {
		switch {
		case r.purged || r.lo > bound:
		case listed < maxListedDeletes:
			listed++
			add(problem{Seq: r.lo, Kind: "deleted", Detail: "a message was removed from the stream; an event log never deletes"})
		default:
			if unlisted.Count == 0 {
				unlisted.Seq = r.lo
			}
			unlisted.Through = r.lo
			unlisted.Count++
		}
	}
	if unlisted.Count > 0 {
		add(problem{Seq: unlisted.Seq, Kind: "deleted", Detail: unlistedString(unlisted)})
		rep.Counts["deleted"] += int(unlisted.Count) - 1 // counts sequences
	}
	if c.root != "" {
		// Only the selected root's problems; deleted messages are reported
		// whatever root they belonged to (a deleted message has no subject).
		root, err := src.pickRoot(ctx, "audit", c.root)
		if err != nil {
			return nil, err
		}
		byRoot = map[string][]events.Record{root: byRoot[root]}
		kept := rep.Problems[:0]
		for _, pr := range rep.Problems {
			if pr.Kind != "stray" {
				kept = append(kept, pr)
			}
		}
		rep.Problems = kept
		delete(rep.Counts, "stray")
	}
	roots := slices.Sorted(mapsKeys(byRoot))
	rep.Roots = len(roots)
	for _, root := range roots {
		recs := byRoot[root]
		reg := foldTrusted(root, recs, c.trust)
		rejected := map[uint64]bool{}
		for _, v := range reg.Violations {
			rejected[v.Seq] = true
		}
		chainSeqs := map[uint64]bool{}
		for _, pr := range checkChains(root, src.cfg.Prefix, recs, rejected) {
			chainSeqs[pr.Seq] = true
			add(pr)
		}
		for _, pr := range checkSignatures(root, recs, c.signers, rep) {
			add(pr)
		}
		dupSeqs := map[uint64]bool{}
		for _, pr := range rep.Problems {
			if pr.Kind == "duplicate_id" {
				dupSeqs[pr.Seq] = true
			}
		}
		for _, v := range reg.Violations {
			if v.Code == projector.CodeChain && chainSeqs[v.Seq] {
				continue // reported above, with more detail
			}
			if v.Code == projector.CodeReplayed && dupSeqs[v.Seq] {
				continue // the same copy, reported above as duplicate_id
			}
			switch v.Code {
			case projector.CodeUnsigned, projector.CodeBadSignature, projector.CodeUntrusted:
				continue // reported above by the signature check, as unsigned, bad_signature or unknown_signer
			}
			path := v.Path
			if v.EventID == "" {
				// Not decoded: the subject is all there is to say whose it is.
				_, path, _ = events.ParseSubject(src.cfg.Prefix, v.Subject)
			}
			add(problem{Seq: v.Seq, Kind: v.Code, Root: root, Path: path, Subject: v.Subject, Detail: v.Reason})
		}
	}
	if p.seq == 0 && p.at.IsZero() {
		checks, err := checkSnapshots(ctx, src, c, roots)
		if err != nil {
			return nil, err
		}
		rep.Snapshots = len(checks)
		for _, chk := range checks {
			if !chk.OK {
				add(problem{Seq: chk.Seq, Kind: "snapshot", Root: chk.Root, Detail: fmt.Sprintf("%s: %s", chk.Name, chk.Problem)})
			}
		}
	}
	slices.SortStableFunc(rep.Problems, func(a, b problem) int { return cmp.Compare(a.Seq, b.Seq) })
	rep.Clean = len(rep.Problems) == 0
	if rep.Problems == nil {
		rep.Problems = []problem{}
	}
	if rep.Signers == nil {
		rep.Signers = []string{}
	}
	return rep, nil
}

// checkChains walks each agent subject in stream order and checks that each
// decodable event names the previous accepted event of its subject. It
// tells apart a missing predecessor (an event deleted, or its bytes edited)
// from a predecessor that exists but is not the last one (reordered,
// replayed or forked history), and reports repeated event ids.
//
// Only events the fold applied extend a chain (rejected[seq] marks the
// others), as only those are what an honest writer links its next event to.
func checkChains(root, prefix string, recs []events.Record, rejected map[uint64]bool) []problem {
	type chain struct {
		last     string
		seqOf    map[string]uint64 // hash -> seq, for every event seen on the subject
		accepted map[string]bool   // hashes of the events that extended the chain
	}
	chains := map[string]*chain{}
	ids := map[string]uint64{}
	var out []problem
	for _, r := range recs {
		e, err := events.Decode(r.Data)
		if err != nil || e.Root != root || events.Subject(prefix, e.Root, e.Path) != r.Subject {
			continue // the fold reports these as violations
		}
		if first, dup := ids[e.ID]; dup {
			out = append(out, problem{Seq: r.Seq, Kind: "duplicate_id", Root: root, Path: e.Path, Subject: r.Subject,
				Detail: fmt.Sprintf("event id %s was already stored at seq %d: republished", e.ID, first)})
		} else {
			ids[e.ID] = r.Seq
		}
		ch := chains[r.Subject]
		if ch == nil {
			ch = &chain{seqOf: map[string]uint64{}, accepted: map[string]bool{}}
			chains[r.Subject] = ch
		}
		h := events.Hash(r.Data)
		if e.Prev != ch.last {
			var detail string
			switch prevSeq, known := ch.seqOf[e.Prev]; {
			case e.Prev == "":
				detail = fmt.Sprintf("%s %s claims to be the agent's first event, but seq %d came before it", e.Type, e.ID, ch.seqOf[ch.last])
			case known && !ch.accepted[e.Prev]:
				detail = fmt.Sprintf("%s %s names seq %d as previous, an event that was not applied (see its own problem)",
					e.Type, e.ID, prevSeq)
			case known:
				detail = fmt.Sprintf("%s %s names seq %d as previous, but seq %d came after that: reordered, replayed or edited copy",
					e.Type, e.ID, prevSeq, ch.seqOf[ch.last])
			default:
				detail = fmt.Sprintf("%s %s names a previous event %.12s that is not in the log: an event was deleted or its bytes edited",
					e.Type, e.ID, e.Prev)
			}
			out = append(out, problem{Seq: r.Seq, Kind: "chain", Root: root, Path: e.Path, Subject: r.Subject, Detail: detail})
			// A broken link is not accepted into the chain: the fold does not
			// apply it either, and later honest events link past it.
			ch.seqOf[h] = r.Seq
			continue
		}
		ch.seqOf[h] = r.Seq
		if !rejected[r.Seq] {
			ch.last = h
			ch.accepted[h] = true
		}
	}
	return out
}

// checkSignatures verifies each decodable event's signature, counts signed
// and unsigned events, and reports bad signatures and, with an allow-list,
// signers not on it.
func checkSignatures(root string, recs []events.Record, allowed map[string]bool, rep *auditReport) []problem {
	var out []problem
	seen := map[string]bool{}
	for _, k := range rep.Signers {
		seen[k] = true
	}
	for _, r := range recs {
		e, err := events.Decode(r.Data)
		if err != nil {
			continue // reported as malformed by the fold
		}
		switch err := events.VerifyStored(r.Data, e); {
		case errors.Is(err, events.ErrUnsigned):
			rep.Unsigned++
			if allowed != nil {
				out = append(out, problem{Seq: r.Seq, Kind: "unsigned", Root: root, Path: e.Path, Subject: r.Subject,
					Detail: fmt.Sprintf("%s %s is unsigned, and --signers names the keys every event must be signed by", e.Type, e.ID)})
			}
		case err != nil:
			out = append(out, problem{Seq: r.Seq, Kind: "bad_signature", Root: root, Path: e.Path, Subject: r.Subject, Detail: err.Error()})
		default:
			rep.Signed++
			if !seen[e.Signer] {
				seen[e.Signer] = true
				rep.Signers = append(rep.Signers, e.Signer)
			}
			if allowed != nil && !allowed[e.Signer] {
				out = append(out, problem{Seq: r.Seq, Kind: "unknown_signer", Root: root, Path: e.Path, Subject: r.Subject,
					Detail: fmt.Sprintf("%s %s is signed by %s, which is not in --signers", e.Type, e.ID, e.Signer)})
			}
		}
	}
	return out
}
