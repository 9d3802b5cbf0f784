package agent_test

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// The README's snippet is what a program outside the module writes: it
// imports the standard library, agent and events, nothing else (no
// projector, natsstore or internal package).
func TestREADMESnippetImports(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "example_test.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		switch {
		case p == "github.com/agentreg/agentreg/agent", p == "github.com/agentreg/agentreg/events":
		case !strings.Contains(strings.SplitN(p, "/", 2)[0], "."): // the standard library
		default:
			t.Errorf("example_test.go imports %s: the README's program may import only agent, events and the standard library", p)
		}
	}
}

// The README's library snippet is the body of Example, word for word.
func TestREADMESnippet(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, body, ok := strings.Cut(string(src), "\nfunc Example() {\n")
	if !ok {
		t.Fatal("example_test.go has no func Example")
	}
	body, _, ok = strings.Cut(body, "\t// Output:")
	if !ok {
		t.Fatal("Example has no // Output: line")
	}
	var want strings.Builder
	for _, l := range strings.SplitAfter(body, "\n") {
		want.WriteString(strings.TrimPrefix(l, "\t"))
	}
	_, section, ok := strings.Cut(string(readme), "## Library\n\n```go\n")
	if !ok {
		t.Fatal("README.md has no ## Library section with a go block")
	}
	got, _, _ := strings.Cut(section, "```\n")
	if got != want.String() {
		t.Errorf("README.md's library snippet differs from Example's body:\n--- README\n%s\n--- Example\n%s", got, want.String())
	}
}
