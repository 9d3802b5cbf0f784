package daemon_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/testutil"
)

// TestTooLarge: input over the size limits is answered 413 and nothing is
// written; a request body over daemon.MaxRequestBytes is refused before it
// is decoded.
func TestTooLarge(t *testing.T) {
	srv := testutil.RunServer(t)
	d := startDaemon(t, srv, nil)
	c := newClient(t, d.URL())
	root := c.registerRoot(architect(), "")
	c.create(daemon.CreateRequest{Root: root.Root, Name: "lit", Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math", Include: []string{"sin", "cos"}}}})
	w := c.create(daemon.CreateRequest{Root: root.Root, Parent: "lit", Name: "c"})

	longDoc := solveTask("solve")
	longDoc.Doc = strings.Repeat("d", events.MaxTaskDocBytes+1)
	bigRoot := architect()
	bigRoot.Primer = strings.Repeat("p", events.MaxPrimerBytes+1)
	for _, tc := range []struct {
		name, endpoint string
		body           any
		desc           string // a regexp the description must match
	}{
		{"Primer", "agent.create", daemon.CreateRequest{Root: root.Root, Name: "b", Primer: strings.Repeat("p", events.MaxPrimerBytes+1)},
			`primer of agent "b" is 65537 bytes, the limit is 65536`},
		{"TaskDoc", "agent.create", daemon.CreateRequest{Root: root.Root, Name: "b", Tasks: []events.TaskDef{longDoc}}, `doc of task "solve"`},
		{"RootPrimer", "root.register", daemon.RegisterRootRequest{Def: bigRoot}, `primer of root "architect"`},
		// Not valid JSON either: refused for its size before decoding.
		{"Body", "agent.create", "{" + strings.Repeat(" ", daemon.MaxRequestBytes), `request body is \d+ bytes, the limit is 786432`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, desc := c.fail(tc.endpoint, tc.body)
			require.Equal(t, "413", code, "description: %s", desc)
			require.Regexp(t, regexp.MustCompile(tc.desc), desc)
		})
	}
	// A glob the parent does not provably hold: 403, saying what to do.
	code, desc := c.fail("agent.grant", daemon.GrantRequest{Root: root.Root, Path: "lit/c",
		Capability: events.Capability{Kind: events.KindModule, Name: "math", Include: []string{"s*"}}})
	require.Equal(t, "403", code, desc)
	require.Contains(t, desc, "list the members by name")
	// Nothing above was written.
	var l struct {
		Seq uint64 `json:"seq"`
	}
	c.call("agent.list", daemon.ReadRequest{Root: root.Root}, &l)
	require.Equal(t, w.Seq, l.Seq)
}
