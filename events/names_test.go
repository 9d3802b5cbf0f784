package events_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
)

const fp = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// requireInvalid checks that err wraps ErrInvalidName and that its message
// names want (quoted as the validators quote names).
func requireInvalid(t *testing.T, err error, want string) {
	t.Helper()
	require.Error(t, err)
	assert.True(t, errors.Is(err, events.ErrInvalidName), "got %v, want it to wrap ErrInvalidName", err)
	assert.Contains(t, err.Error(), strconv.Quote(want), "the message should name %q", want)
}

func TestValidateSegment(t *testing.T) {
	for _, seg := range []string{
		"a", "Z", "0", "_", "-", "math_solver", "equation-parser", "Agent42",
		strings.Repeat("x", events.MaxSegmentLen),
	} {
		t.Run("OK/"+seg, func(t *testing.T) {
			assert.NoError(t, events.ValidateSegment(seg))
		})
	}

	for _, tc := range []struct{ name, seg string }{
		{"dot", "a.b"},
		{"dotdot", ".."},
		{"star", "*"},
		{"star in name", "math*"},
		{"gt", ">"},
		{"space", "math solver"},
		{"leading space", " a"},
		{"slash", "a/b"},
		{"backslash", `a\b`},
		{"tab", "a\tb"},
		{"nul", "a\x00b"},
		{"cyrillic a", "\u0430gent"},        // Cyrillic а in place of Latin a
		{"cyrillic es", "math_\u0455olver"}, // Cyrillic ѕ
		{"greek omicron", "m\u03bfdule"},    // Greek ο
		{"fullwidth", "\uff41"},             // fullwidth a
		{"zero width space", "a\u200bb"},    // invisible
		{"accent", "caf\u00e9"},             // é
		{"invalid utf8", "a\xffb"},          // not UTF-8 at all
		{"65 bytes", strings.Repeat("x", events.MaxSegmentLen+1)},
		{"64 bytes with multibyte", strings.Repeat("x", 62) + "\u00e9"},
	} {
		t.Run("ErrInvalidName/"+tc.name, func(t *testing.T) {
			requireInvalid(t, events.ValidateSegment(tc.seg), tc.seg)
		})
	}

	t.Run("ErrInvalidName/empty", func(t *testing.T) {
		err := events.ValidateSegment("")
		require.ErrorIs(t, err, events.ErrInvalidName)
		assert.Contains(t, err.Error(), "empty segment")
	})

	t.Run("ErrInvalidName/names the rune", func(t *testing.T) {
		err := events.ValidateSegment("\u0430gent")
		require.ErrorIs(t, err, events.ErrInvalidName)
		// The offending character is shown whole, not as a broken byte.
		assert.Contains(t, err.Error(), "(found \"\u0430\")")
	})
}

func TestValidatePath(t *testing.T) {
	deep := strings.TrimSuffix(strings.Repeat("a/", events.MaxDepth), "/")
	for _, p := range []string{
		"a", "math_solver", "math_solver/equation_parser", "a/b/c", deep,
		strings.Repeat("x", events.MaxSegmentLen) + "/y",
	} {
		t.Run("OK/"+p, func(t *testing.T) {
			assert.NoError(t, events.ValidatePath(p))
		})
	}

	for _, tc := range []struct {
		name, path string
		bad        string // the offending segment named in the message
	}{
		{"dot", "math.solver", "math.solver"},
		{"dot in second", "math/solver.v2", "solver.v2"},
		{"star", "a/*", "*"},
		{"gt", "a/>", ">"},
		{"space", "a/b c", "b c"},
		{"dotdot", "..", ".."},
		{"traversal", "../a", ".."},
		{"traversal inside", "a/../b", ".."},
		{"dot segment", "a/./b", "."},
		{"cyrillic", "math/\u0455olver", "\u0455olver"},
		{"65 bytes", "a/" + strings.Repeat("y", events.MaxSegmentLen+1), strings.Repeat("y", events.MaxSegmentLen+1)},
		{"backslash", `a\b`, `a\b`},
	} {
		t.Run("ErrInvalidName/"+tc.name, func(t *testing.T) {
			err := events.ValidatePath(tc.path)
			requireInvalid(t, err, tc.bad)
		})
	}

	// Empty segments have no text to show: the message names the path and
	// which segment is empty.
	for _, tc := range []struct {
		name, path string
		seg        int
	}{
		{"double slash", "a//b", 2},
		{"leading slash", "/a", 1},
		{"trailing slash", "a/", 2},
		{"only slash", "/", 1},
	} {
		t.Run("ErrInvalidName/"+tc.name, func(t *testing.T) {
			err := events.ValidatePath(tc.path)
			requireInvalid(t, err, tc.path)
			assert.Contains(t, err.Error(), "segment "+strconv.Itoa(tc.seg)+":")
			assert.Contains(t, err.Error(), "empty segment")
		})
	}

	t.Run("ErrInvalidName/empty", func(t *testing.T) {
		err := events.ValidatePath("")
		require.ErrorIs(t, err, events.ErrInvalidName)
		assert.Contains(t, err.Error(), "empty")
	})

	t.Run("ErrInvalidName/33 deep", func(t *testing.T) {
		p := deep + "/b"
		err := events.ValidatePath(p)
		requireInvalid(t, err, p)
		assert.Contains(t, err.Error(), "33 segments")
	})
}

func TestValidateFingerprint(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		assert.NoError(t, events.ValidateFingerprint(fp))
		assert.NoError(t, events.ValidateFingerprint(events.RootDef{Name: "r"}.Fingerprint()))
	})
	for _, tc := range []struct{ name, fp string }{
		{"empty", ""},
		{"short", fp[:63]},
		{"long", fp + "0"},
		{"uppercase", strings.ToUpper(fp)},
		{"non hex", "g" + fp[1:]},
		{"dot", "." + fp[1:]},
		{"star", "*" + fp[1:]},
		{"cyrillic", "\u0430" + fp[2:]}, // 2 bytes: still 64 bytes long
		{"path", "../" + fp[3:]},
	} {
		t.Run("ErrInvalidName/"+tc.name, func(t *testing.T) {
			requireInvalid(t, events.ValidateFingerprint(tc.fp), tc.fp)
		})
	}
}

func TestSubject(t *testing.T) {
	for _, tc := range []struct {
		path, subject string
	}{
		{"", "agentreg." + fp},
		{"a", "agentreg." + fp + ".a"},
		{"math_solver/equation_parser", "agentreg." + fp + ".math_solver.equation_parser"},
		{"a/b/c", "agentreg." + fp + ".a.b.c"},
	} {
		t.Run(tc.subject, func(t *testing.T) {
			got := events.Subject("agentreg", fp, tc.path)
			assert.Equal(t, tc.subject, got)
			root, p, err := events.ParseSubject("agentreg", got)
			require.NoError(t, err)
			assert.Equal(t, fp, root)
			assert.Equal(t, tc.path, p)
		})
	}

	t.Run("prefix with dots", func(t *testing.T) {
		s := events.Subject("org.agentreg", fp, "a/b")
		root, p, err := events.ParseSubject("org.agentreg", s)
		require.NoError(t, err)
		assert.Equal(t, fp, root)
		assert.Equal(t, "a/b", p)
	})

	t.Run("ErrInvalidName/other prefix", func(t *testing.T) {
		_, _, err := events.ParseSubject("agentreg", "other."+fp+".a")
		require.ErrorIs(t, err, events.ErrInvalidName)
		assert.Contains(t, err.Error(), "other."+fp+".a")
	})

	t.Run("ErrInvalidName/prefix without dot", func(t *testing.T) {
		_, _, err := events.ParseSubject("agentreg", "agentregx."+fp)
		require.ErrorIs(t, err, events.ErrInvalidName)
	})

	t.Run("RootSubjects", func(t *testing.T) {
		assert.Equal(t, []string{"agentreg." + fp, "agentreg." + fp + ".>"}, events.RootSubjects("agentreg", fp))
	})
}

func TestLineage(t *testing.T) {
	for _, tc := range []struct {
		path, parent string
		ancestors    []string
	}{
		{"a", "", nil},
		{"a/b", "a", []string{"a"}},
		{"a/b/c", "a/b", []string{"a", "a/b"}},
		{"math_solver/eq/x_y", "math_solver/eq", []string{"math_solver", "math_solver/eq"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			assert.Equal(t, tc.parent, events.Parent(tc.path))
			assert.Equal(t, tc.ancestors, events.Ancestors(tc.path))
			// Join undoes Parent.
			last := tc.path[strings.LastIndexByte(tc.path, '/')+1:]
			assert.Equal(t, tc.path, events.Join(tc.parent, last))
			// Every ancestor, and the root, is an ancestor; the path itself is not.
			assert.True(t, events.IsDescendant(tc.path, ""))
			for _, a := range tc.ancestors {
				assert.True(t, events.IsDescendant(tc.path, a), "%q below %q", tc.path, a)
				assert.False(t, events.IsDescendant(a, tc.path), "%q below %q", a, tc.path)
			}
			assert.False(t, events.IsDescendant(tc.path, tc.path))
		})
	}

	for _, tc := range []struct {
		p, ancestor string
		want        bool
	}{
		{"", "", false},
		{"ab", "a", false},
		{"ab/c", "a", false},
		{"a/bc", "a/b", false},
		{"a/b", "a", true},
		{"b/a", "a", false},
	} {
		t.Run("IsDescendant/"+tc.p+"|"+tc.ancestor, func(t *testing.T) {
			assert.Equal(t, tc.want, events.IsDescendant(tc.p, tc.ancestor))
		})
	}
}
