package projector_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/projector"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts under testdata/")

// TestTranscripts replays testdata/*.txt. Each file is a list of blocks:
//
//	# comments
//	command arg key=value key="quoted value"
//	----
//	expected output
//
// separated by blank lines. The commands build events with the fold helper
// (so ids, times and Prev are deterministic) and apply them; "dump" renders
// the whole registry. go test -update rewrites the expected outputs.
func TestTranscripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			require.NoError(t, err)
			blocks := parseTranscript(t, string(raw))
			f := newFold(t)
			var out strings.Builder
			for i, b := range blocks {
				got := runCommand(t, f, b.cmd)
				if got != b.want && !*update {
					t.Errorf("%s:%d: %s\n got:\n%s\nwant:\n%s", file, b.line, b.cmd, got, b.want)
				}
				if i > 0 {
					out.WriteString("\n")
				}
				for _, c := range b.comments {
					out.WriteString(c + "\n")
				}
				out.WriteString(b.cmd + "\n----\n" + got + "\n")
			}
			if *update {
				require.NoError(t, os.WriteFile(file, []byte(out.String()), 0o644))
			}
		})
	}
}

type block struct {
	comments []string
	cmd      string
	want     string
	line     int
}

func parseTranscript(t *testing.T, s string) []block {
	t.Helper()
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	var out []block
	var comments []string
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.TrimSpace(l) == "":
			continue
		case strings.HasPrefix(l, "#"):
			comments = append(comments, l)
			continue
		}
		b := block{comments: comments, cmd: l, line: i + 1}
		comments = nil
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("line %d: %q is not followed by ----", i+1, l)
		}
		i += 2
		var want []string
		for ; i < len(lines) && lines[i] != ""; i++ {
			want = append(want, lines[i])
		}
		b.want = strings.Join(want, "\n")
		out = append(out, b)
	}
	return out
}

// tokenize splits a command line on spaces, keeping "quoted strings"
// (strconv syntax) together, also as the value of key="...".
func tokenize(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		end := strings.IndexByte(s, ' ')
		if q := strings.IndexByte(s, '"'); q >= 0 && (end < 0 || q < end) {
			rest, err := strconv.QuotedPrefix(s[q:])
			require.NoError(t, err, "in %q", s)
			end = q + len(rest)
			v, _ := strconv.Unquote(rest)
			out = append(out, s[:q]+v)
			s = s[end:]
			continue
		}
		if end < 0 {
			end = len(s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out
}

func list(v string) []string {
	if v == "" {
		return []string{}
	}
	return strings.Split(v, ",")
}

func parseKey(t *testing.T, key string) (events.Kind, string) {
	t.Helper()
	kind, name, found := strings.Cut(key, ":")
	require.True(t, found, "capability %q is not kind:name", key)
	return events.Kind(kind), name
}

func runCommand(t *testing.T, f *fold, line string) string {
	t.Helper()
	toks := tokenize(t, line)
	cmd, args := toks[0], toks[1:]
	opts := map[string]string{}
	var pos []string
	for _, a := range args {
		if k, v, found := strings.Cut(a, "="); found {
			opts[k] = v
		} else {
			pos = append(pos, a)
		}
	}
	arg := func(i int) string {
		require.Greater(t, len(pos), i, "%s: missing argument %d", line, i+1)
		return pos[i]
	}

	var e *events.Event
	switch cmd {
	case "schema":
		// The schema version of the events built from here on.
		v, err := strconv.ParseUint(arg(0), 10, 64)
		require.NoError(t, err)
		f.version = v
		return "schema " + arg(0)
	case "dump":
		return dump(f.reg)
	case "children":
		return renderPaths(f.reg.Children(arg(0)))
	case "descendants":
		return renderPaths(f.reg.Descendants(arg(0)))
	case "walk":
		// walk <under> after=<path> limit=<n>; under "-" is the root.
		under := arg(0)
		if under == "-" {
			under = ""
		}
		limit := 0
		if v, found := opts["limit"]; found {
			n, err := strconv.Atoi(v)
			require.NoError(t, err)
			limit = n
		}
		paths, more := f.reg.Walk(under, opts["after"], limit)
		return fmt.Sprintf("%s more=%t", renderPaths(paths), more)
	case "effective":
		eff, err := f.reg.Effective(arg(0))
		if err != nil {
			return "error: " + err.Error()
		}
		var lines []string
		for _, x := range eff {
			lines = append(lines, fmt.Sprintf("%s chain=%d", renderCap(x.Capability), len(x.Chain)))
		}
		if len(lines) == 0 {
			return "none"
		}
		return strings.Join(lines, "\n")
	case "allows":
		eff, err := f.reg.Effective(arg(0))
		if err != nil {
			return "error: " + err.Error()
		}
		var found *projector.Effective
		for i := range eff {
			if eff[i].Capability.Key() == arg(1) {
				found = &eff[i]
			}
		}
		var out []string
		for _, m := range pos[2:] {
			out = append(out, fmt.Sprintf("%s=%t", m, found != nil && found.Allows(m)))
		}
		return strings.Join(out, " ")
	case "garbage":
		return renderResult(f, f.publish(f.subject(arg(0)), []byte(opts["bytes"])))
	case "register":
		e = f.event(events.RootRegistered, "")
		e.Registered = &events.RootData{Def: f.def}
	case "create":
		// caps="kind:name[/include,include][;kind:name…]" tasks=name,name
		e = f.event(events.AgentCreated, arg(0))
		e.Created = &events.CreatedData{Primer: opts["primer"]}
		if v := opts["caps"]; v != "" {
			for c := range strings.SplitSeq(v, ";") {
				key, include, hasInclude := strings.Cut(c, "/")
				kind, name := parseKey(t, key)
				cp := events.Capability{Kind: kind, Name: name}
				if hasInclude {
					cp.Include = list(include)
				}
				e.Created.Capabilities = append(e.Created.Capabilities, cp)
			}
		}
		if v := opts["tasks"]; v != "" {
			for _, name := range list(v) {
				e.Created.Tasks = append(e.Created.Tasks, simpleTask(name))
			}
		}
	case "grant":
		e = f.event(events.CapabilityGranted, arg(0))
		kind, name := parseKey(t, arg(1))
		c := events.Capability{Kind: kind, Name: name, Visibility: events.Visibility(opts["vis"])}
		if v, found := opts["include"]; found {
			c.Include = list(v)
		}
		if v, found := opts["exclude"]; found {
			c.Exclude = list(v)
		}
		e.Granted = &events.GrantedData{Capability: c}
	case "revoke":
		e = f.event(events.CapabilityRevoked, arg(0))
		kind, name := parseKey(t, arg(1))
		e.Revoked = &events.RevokedData{Kind: kind, Name: name}
	case "task":
		e = f.event(events.TaskDefined, arg(0))
		e.Task = &events.TaskData{Task: simpleTask(arg(1))}
	case "retire":
		e = f.event(events.AgentRetired, arg(0))
		e.Retired = &events.RetiredData{Reason: opts["reason"]}
	case "migrate":
		e = f.event(events.RootMigrated, "")
		e.Migration = &events.MigratedData{To: arg(0)}
	default:
		t.Fatalf("unknown command %q", cmd)
	}
	// Options common to every event: its schema version, who writes it,
	// what it chains to, and the subject it is stored on.
	if v, found := opts["v"]; found {
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err)
		e.Version = n
	}
	if v, found := opts["actor"]; found {
		e.Actor = v
	}
	if v, found := opts["prev"]; found {
		e.Prev = v
	}
	subject := f.subject(e.Path)
	if v, found := opts["subject"]; found {
		subject = f.subject(v)
	}
	data, err := events.Encode(e)
	if err != nil {
		// What the encoder refuses, a hostile writer can still publish.
		data = rawEncode(t, e)
	}
	return renderResult(f, f.publish(subject, data))
}

func renderPaths(paths []string) string {
	if len(paths) == 0 {
		return "none"
	}
	return strings.Join(paths, " ")
}

func renderResult(f *fold, v *projector.Violation) string {
	if v == nil {
		return fmt.Sprintf("ok seq=%d", f.seq)
	}
	return fmt.Sprintf("violation seq=%d %s: %s", v.Seq, v.Code, v.Reason)
}

func renderCap(c events.Capability) string {
	s := fmt.Sprintf("%s include=%v exclude=%v", c.Key(), c.Include, c.Exclude)
	if c.Visibility != "" {
		s += " vis=" + string(c.Visibility)
	}
	return s
}

// dump renders the registry deterministically: root, agents by path with
// their grants and tasks sorted, subject sequences and violations.
func dump(r *projector.Registry) string {
	var b strings.Builder
	if r.Def == nil {
		fmt.Fprintf(&b, "root %s unregistered\n", r.Root[:12])
	} else {
		fmt.Fprintf(&b, "root %s %s seq=%d by=%s\n", r.Def.Name, r.Root[:12], r.RootSeq, r.RootActor)
		for _, c := range r.Def.Capabilities {
			fmt.Fprintf(&b, "  cap %s\n", renderCap(c))
		}
		for _, t := range r.Def.Tasks {
			fmt.Fprintf(&b, "  task %s\n", t.Name)
		}
	}
	if r.MigratedTo != "" {
		fmt.Fprintf(&b, "migrated to %s at seq=%d\n", r.MigratedTo[:12], r.MigratedSeq)
	}
	fmt.Fprintf(&b, "folded seq=%d count=%d\n", r.Seq, r.Count)
	for _, p := range r.Paths() {
		a := r.Agents[p]
		fmt.Fprintf(&b, "agent %s created=%d by=%s corr=%s last=%d", p, a.CreatedSeq, a.Creator, a.Correlation, a.LastSeq)
		if a.Retired {
			fmt.Fprintf(&b, " retired=%d by=%s", a.RetiredSeq, a.RetiredBy)
		}
		if a.Primer != "" {
			fmt.Fprintf(&b, " primer=%q", a.Primer)
		}
		b.WriteString("\n")
		keys := make([]string, 0, len(a.Capabilities))
		for k := range a.Capabilities {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			g := a.Capabilities[k]
			fmt.Fprintf(&b, "  cap %s seq=%d by=%s\n", renderCap(g.Capability), g.Seq, g.Actor)
		}
		tasks := make([]string, 0, len(a.Tasks))
		for k := range a.Tasks {
			tasks = append(tasks, k)
		}
		slices.Sort(tasks)
		for _, k := range tasks {
			fmt.Fprintf(&b, "  task %s\n", k)
		}
	}
	paths := make([]string, 0, len(r.SubjectSeq))
	for p := range r.SubjectSeq {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	b.WriteString("subjects")
	for _, p := range paths {
		fmt.Fprintf(&b, " %q=%d", p, r.SubjectSeq[p])
	}
	b.WriteString("\n")
	for _, v := range r.Violations {
		typ := v.Type
		if typ == "" {
			typ = "-" // the bytes did not decode
		}
		fmt.Fprintf(&b, "violation seq=%d path=%q %s %s %s\n", v.Seq, v.Path, v.Code, typ, v.Reason)
	}
	return strings.TrimRight(b.String(), "\n")
}
