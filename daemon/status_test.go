package daemon

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/events"
)

// TestStatusOfEverySentinel: every exported Err* sentinel of agent and
// events answers a status chosen for it (codeOf's comment says why), also
// wrapped; a sentinel added to either package without a row here fails.
func TestStatusOfEverySentinel(t *testing.T) {
	want := map[string]struct {
		err  error
		code string
	}{
		"events.ErrConflict":        {events.ErrConflict, "409"},
		"events.ErrInvalidName":     {events.ErrInvalidName, "400"},
		"events.ErrMalformed":       {events.ErrMalformed, "400"},
		"events.ErrUnknownType":     {events.ErrUnknownType, "501"},
		"events.ErrFutureVersion":   {events.ErrFutureVersion, "501"},
		"events.ErrEscalation":      {events.ErrEscalation, "403"},
		"events.ErrNotFound":        {events.ErrNotFound, "404"},
		"events.ErrExists":          {events.ErrExists, "409"},
		"events.ErrRetired":         {events.ErrRetired, "410"},
		"events.ErrMigrated":        {events.ErrMigrated, "410"},
		"events.ErrChain":           {events.ErrChain, "500"}, // the log is damaged
		"events.ErrWrongSubject":    {events.ErrWrongSubject, "500"},
		"events.ErrSchemaRef":       {events.ErrSchemaRef, "400"},
		"events.ErrTooLarge":        {events.ErrTooLarge, "413"},
		"events.ErrUnsigned":        {events.ErrUnsigned, "500"}, // this daemon's signing vs its own trust policy
		"events.ErrBadSignature":    {events.ErrBadSignature, "500"},
		"events.ErrUntrustedSigner": {events.ErrUntrustedSigner, "500"},
		"events.ErrReplayed":        {events.ErrReplayed, "409"},

		"agent.ErrConflict":          {agent.ErrConflict, "409"},
		"agent.ErrEscalation":        {agent.ErrEscalation, "403"},
		"agent.ErrNotFound":          {agent.ErrNotFound, "404"},
		"agent.ErrExists":            {agent.ErrExists, "409"},
		"agent.ErrRetired":           {agent.ErrRetired, "410"},
		"agent.ErrInvalidName":       {agent.ErrInvalidName, "400"},
		"agent.ErrMigrated":          {agent.ErrMigrated, "410"},
		"agent.ErrStoreLocked":       {agent.ErrStoreLocked, "500"}, // only when a process opens its store
		"agent.ErrFull":              {agent.ErrFull, "507"},
		"agent.ErrUnknownCapability": {agent.ErrUnknownCapability, "501"},
		"agent.ErrUnknownMember":     {agent.ErrUnknownMember, "501"},
		"agent.ErrMemberType":        {agent.ErrMemberType, "501"},
		"agent.ErrRootNotRegistered": {agent.ErrRootNotRegistered, "404"},
		"agent.ErrRootChanged":       {agent.ErrRootChanged, "410"},
		"agent.ErrInvalidArgs":       {agent.ErrInvalidArgs, "400"},
		"agent.ErrInvalidCursor":     {agent.ErrInvalidCursor, "400"},
		"agent.ErrNoExecutor":        {agent.ErrNoExecutor, "501"},
		"agent.ErrContractChanged":   {agent.ErrContractChanged, "412"},
	}
	for _, pkg := range []string{"agent", "events"} {
		for _, name := range exportedSentinels(t, pkg) {
			if _, ok := want[pkg+"."+name]; !ok {
				t.Errorf("%s.%s has no status in this table: choose one in codeOf (errors.go) and add it here", pkg, name)
			}
		}
	}
	for name, tc := range want {
		t.Run(name, func(t *testing.T) {
			for _, err := range []error{tc.err, fmt.Errorf("doing something with %q: %w", "x", tc.err)} {
				if got := codeOf(err); got != tc.code {
					t.Errorf("codeOf(%v) = %s, want %s", err, got, tc.code)
				}
			}
		})
	}
	if got := codeOf(fmt.Errorf("wait: %w", context.DeadlineExceeded)); got != "504" {
		t.Errorf("codeOf(deadline exceeded) = %s, want 504", got)
	}
	if got := codeOf(fmt.Errorf("wait: %w", context.Canceled)); got != "503" {
		t.Errorf("codeOf(canceled) = %s, want 503", got)
	}
}

// exportedSentinels lists the exported package-level variables named
// Err* in the non-test files of ../pkg.
func exportedSentinels(t *testing.T, pkg string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", pkg, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("list ../%s: %v", pkg, err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", f, err)
		}
		for _, decl := range file.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, spec := range gd.Specs {
				for _, n := range spec.(*ast.ValueSpec).Names {
					if strings.HasPrefix(n.Name, "Err") && n.IsExported() {
						out = append(out, n.Name)
					}
				}
			}
		}
	}
	return out
}

// TestClipDesc: an error description is cut on a rune boundary to
// maxErrorDesc bytes plus a note of what was cut, on one line.
func TestClipDesc(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		cut      bool
	}{
		{"Short", "agent \"a\": not found", false},
		{"Lines", "line one\r\nline two\nthree", false},
		{"Long", strings.Repeat("é", maxErrorDesc), true}, // 2 bytes a rune: the limit falls inside none
		{"LongOdd", "x" + strings.Repeat("é", maxErrorDesc), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := clipDesc(tc.in)
			if !utf8.ValidString(got) || strings.ContainsAny(got, "\r\n") {
				t.Fatalf("clipDesc(%.40q…) = %.80q…: want valid UTF-8 on one line", tc.in, got)
			}
			if cut := strings.Contains(got, "more bytes cut"); cut != tc.cut {
				t.Fatalf("cut = %v, want %v", cut, tc.cut)
			}
			if tc.cut && len(got) > maxErrorDesc+200 {
				t.Fatalf("len = %d, want at most %d", len(got), maxErrorDesc+200)
			}
		})
	}
}
