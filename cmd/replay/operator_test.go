package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
)

// reencode checks that each JSON line replay printed decodes into T and
// encodes back to the same line: no field is lost or changed on the way.
func reencode[T any](t *testing.T, out string) []T {
	t.Helper()
	var all []T
	for _, line := range strings.SplitAfter(strings.TrimSuffix(out, "\n"), "\n") {
		var v T
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		require.NoError(t, dec.Decode(&v), line)
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		require.NoError(t, enc.Encode(v))
		require.Equal(t, strings.TrimSuffix(line, "\n"), strings.TrimSuffix(b.String(), "\n"), "the line round-trips")
		all = append(all, v)
	}
	return all
}

// events marks each event with what the fold did with it (refused ones
// with the fold's violation code) and shows removed sequences where they
// were, in every view.
func TestEventsMarksRefusedAndDeleted(t *testing.T) {
	t.Parallel()
	h, tp := tamper(t)
	url := h.url
	lines := reencode[eventLine](t, replayOK(t, "events", "--nats-url", url, "--json"))
	v := registryJSON(t, "--nats-url", url)
	refused := map[uint64]string{}
	for _, x := range v.Violations {
		refused[x.Seq] = x.Code
	}
	require.Len(t, refused, 4, "%+v", v.Violations) // the event after the deleted one, the edited copy, the garbage, the escalation
	require.Equal(t, "chain", refused[tp.afterDeleted])
	require.Equal(t, "malformed", refused[tp.garbage])
	require.Equal(t, "escalation", refused[tp.escalation])
	stream := h.stream()
	for i, l := range lines {
		require.Equal(t, uint64(i+1), l.Seq, "every sequence once, in order, the deleted one included")
		switch {
		case l.Seq == tp.deleted:
			require.Equal(t, eventLine{Seq: tp.deleted, Status: statusDeleted}, l)
		case refused[l.Seq] != "":
			require.Equal(t, statusRefused, l.Status, "seq %d", l.Seq)
			require.Equal(t, refused[l.Seq], l.Violation.Code, "seq %d", l.Seq)
			require.NotEmpty(t, l.Violation.Reason)
		default:
			require.Equal(t, statusApplied, l.Status, "seq %d", l.Seq)
			require.Nil(t, l.Violation)
		}
		if l.Seq == tp.garbage {
			require.Nil(t, l.Event)
			require.NotEmpty(t, l.Error)
			continue
		}
		if l.Status == statusDeleted {
			continue
		}
		require.NotNil(t, l.Stored)
		require.WithinDuration(t, time.Now(), *l.Stored, time.Minute, "the server's time")
		msg, err := stream.GetMsg(h.ctx, l.Seq)
		require.NoError(t, err)
		again, err := events.Encode(l.Event.event())
		require.NoError(t, err)
		require.Equal(t, msg.Data, again, "seq %d: the JSON event encodes back to the stored bytes", l.Seq)
	}

	text := replayOK(t, "events", "--nats-url", url)
	t.Logf("replay events:\n%s", text)
	require.Contains(t, text, fmt.Sprintf("\n%6d  %20s  DELETED  ", tp.deleted, ""))
	require.Contains(t, text, "  [REFUSED escalation: ")
	require.Contains(t, text, "UNDECODABLE")
	require.Contains(t, text, "  [REFUSED malformed]\n")

	statuses := func(args ...string) map[uint64]string {
		out := map[uint64]string{}
		for _, l := range decodeLines[eventLine](t, replayOK(t, append([]string{"events", "--nats-url", url, "--json"}, args...)...)) {
			out[l.Seq] = l.Status
		}
		return out
	}
	// One agent's events are folded with the whole root: the escalation is
	// refused there too; the removed sequence shows in every view.
	parser := statuses("--agent", "math_solver/equation_parser")
	require.Equal(t, statusRefused, parser[tp.escalation])
	require.Equal(t, statusRefused, parser[tp.garbage])
	require.Equal(t, statusDeleted, parser[tp.deleted])
	require.Equal(t, statusApplied, parser[3])
	require.NotContains(t, parser, uint64(2), "math_solver's own event is not in its child's view")
	// A range after the removed sequence leaves it out; a point at it ends
	// with it.
	require.NotContains(t, statuses("--from-seq", fmt.Sprint(tp.deleted+1)), tp.deleted)
	upTo := decodeLines[eventLine](t, replayOK(t, "events", "--nats-url", url, "--json", "--seq", fmt.Sprint(tp.deleted)))
	require.Equal(t, eventLine{Seq: tp.deleted, Status: statusDeleted}, upTo[len(upTo)-1])
	require.Len(t, upTo, int(tp.deleted))
}

// registry shows every root when no --root is given (one JSON object per
// root and line), or lists them with counts; its JSON round-trips, an
// empty exclude included.
func TestRegistryAllRoots(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	critic, err := h.rt.RegisterRoot(h.ctx, events.RootDef{Name: "critic", Primer: "You review.",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}}})
	require.NoError(t, err)
	// Nothing excluded: an exclude of [], not the default.
	open := events.Capability{Kind: events.KindModule, Name: "math", Include: []string{"tan", "sin"}, Exclude: []string{}}
	h.create(h.ctx, critic, agent.Spec{Name: "proofreader", Primer: "You proofread.", Capabilities: []events.Capability{open}})
	// A pattern and a name: the name is one member among others.
	h.create(h.ctx, critic, agent.Spec{Name: "scout", Capabilities: []events.Capability{mathCap("s*", "tan")}})
	url := h.url

	out := replayOK(t, "registry", "--nats-url", url, "--json")
	views := reencode[registryView](t, out)
	require.Len(t, views, 2)
	require.Equal(t, []string{"architect", "critic"}, []string{views[0].Name, views[1].Name})
	require.Equal(t, []string{string(h.root.Root), string(critic.Root)}, []string{views[0].Root, views[1].Root})
	require.Equal(t, []string{"math_solver", "math_solver/equation_parser"}, paths(&views[0]))
	require.Equal(t, []string{"proofreader", "scout"}, paths(&views[1]))
	proof := views[1].Agents[0]
	require.Equal(t, []wireCap{{Kind: events.KindModule, Name: "math", Include: []string{"sin", "tan"}, Exclude: []string{}, Visibility: events.VisibilityHigh}}, proof.Granted)
	require.Contains(t, out, `"exclude":[]`)
	require.Equal(t, []string{"sin", "tan"}, proof.Effective[0].Members)
	require.Equal(t, []string{"_*"}, proof.Effective[0].Capability.Exclude, "the root's default exclude still applies along the chain")
	require.Len(t, proof.Effective[0].Chain, 2)
	require.Equal(t, []string{}, proof.Effective[0].Chain[1].Exclude)
	one := registryJSON(t, "--nats-url", url, "--root", "critic")
	require.Equal(t, views[1].StateHash, one.StateHash)

	text := replayOK(t, "registry", "--nats-url", url)
	require.Contains(t, text, fmt.Sprintf("root architect (%s) as of now", h.root.Root))
	require.Contains(t, text, fmt.Sprintf("\n\nroot critic (%s) as of now", critic.Root))
	require.Contains(t, text, "\n    cap  module math include=[sin tan] exclude=[_*] vis=high (members: sin tan)\n")
	require.Contains(t, text, "\n    cap  module math include=[s* tan] exclude=[_*] vis=high (named members: tan)\n")
	require.Equal(t, []string{"tan"}, views[1].Agents[1].Effective[0].Members)

	list := reencode[rootSummary](t, replayOK(t, "registry", "--nats-url", url, "--list", "--json"))
	require.Equal(t, []rootSummary{
		{Root: string(h.root.Root), Name: "architect", Seq: 3, Events: 3, Agents: 2},
		{Root: string(critic.Root), Name: "critic", Seq: 6, Events: 3, Agents: 2},
	}, list)
	text = replayOK(t, "registry", "--nats-url", url, "--list")
	require.Contains(t, text, "critic               "+critic.Root+"  seq 6       events 3       agents 2      retired 0      violations 0\n")
}

// Flags may follow the positional arguments, in every command.
func TestFlagsAfterArguments(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	url := h.url
	solverRef := ref(h.solver, "solve_math_problem")
	out := decode[resolveOutput](t, replayOK(t, "resolve", solverRef, "--seq", "2", "--nats-url", url, "--json"))
	require.Empty(t, out.Error)
	require.Equal(t, uint64(2), out.Resolved.Seq)
	require.Equal(t, "seq 2", out.Point)
	reencode[resolveOutput](t, replayOK(t, "resolve", solverRef, "--json", "--nats-url", url))

	top := decode[*node](t, replayOK(t, "lineage", "math_solver", "--json", "--nats-url", url, "--seq", "2"))
	require.True(t, top.Children[0].Selected)
	require.Empty(t, top.Children[0].Children, "the parser is created at seq 3, after the point")
	reencode[*node](t, replayOK(t, "lineage", "--nats-url", url, "--json", "--", "math_solver"))
	require.Equal(t, replayOK(t, "lineage", "--nats-url", url, "math_solver"), replayOK(t, "lineage", "math_solver", "--nats-url", url))

	require.Len(t, decodeLines[eventLine](t, replayOK(t, "events", "--nats-url", url, "--json", "--seq", "2")), 2)
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"events", "--nats-url", url, "extra", "--json"}, `unexpected argument "extra"`},
		{[]string{"resolve", solverRef, "--nats-url", url, "--seq"}, "flag needs an argument: -seq"},
		{[]string{"lineage", "math_solver", "other", "--nats-url", url}, "want one AGENT, got 2 arguments"},
		{[]string{"registry", "--nats-url", url, "--", "--json"}, `unexpected argument "--json"`},
	} {
		_, _, err := replay(t, tc.args...)
		require.ErrorIs(t, err, errUsage, tc.args)
		require.ErrorContains(t, err, tc.msg)
	}
}

// lineage shows the stored time, and the writer's claimed time only when
// it is a second or more away.
func TestStepTimes(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		claimed time.Time
		note    string
	}{
		{at, ""},
		{at.Add(-300 * time.Millisecond), ""},
		{at.Add(999 * time.Millisecond), ""},
		{at.Add(-time.Second), "  (writer's clock said 2026-12-01T09:59:59Z)"},
		{at.Add(2 * time.Hour), "  (writer's clock said 2026-12-01T12:00:00Z)"},
	} {
		s := step{Stored: at.Format(time.RFC3339Nano), Claimed: tc.claimed.Format(time.RFC3339Nano)}
		stored, note := s.times()
		require.Equal(t, "2026-12-01T10:00:00Z", stored)
		require.Equal(t, tc.note, note, tc.claimed)
	}
}
