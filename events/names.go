package events

import (
	"fmt"
	"strings"
)

// Limits on agent paths.
const (
	MaxSegmentLen = 64
	MaxDepth      = 32
)

// ValidateSegment checks one path segment: 1..64 of [A-Za-z0-9_-].
func ValidateSegment(seg string) error {
	if seg == "" {
		return fmt.Errorf("%w: empty segment", ErrInvalidName)
	}
	if len(seg) > MaxSegmentLen {
		return fmt.Errorf("%w: segment %q is %d bytes long, at most %d are allowed",
			ErrInvalidName, truncate(seg), len(seg), MaxSegmentLen)
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("%w: segment %q may only hold letters, digits, '_' and '-' (found %q)",
				ErrInvalidName, seg, describeByte(seg, i))
		}
	}
	return nil
}

// ValidatePath checks an agent path: 1..32 segments joined by '/'.
func ValidatePath(p string) error {
	if p == "" {
		return fmt.Errorf("%w: agent path is empty", ErrInvalidName)
	}
	segs := strings.Split(p, "/")
	if len(segs) > MaxDepth {
		return fmt.Errorf("%w: agent path %q has %d segments, at most %d are allowed",
			ErrInvalidName, truncate(p), len(segs), MaxDepth)
	}
	for i, s := range segs {
		if err := ValidateSegment(s); err != nil {
			return fmt.Errorf("agent path %q, segment %d: %w", truncate(p), i+1, err)
		}
	}
	return nil
}

// ValidateFingerprint checks a root fingerprint: 64 lowercase hex digits.
func ValidateFingerprint(fp string) error {
	if len(fp) != 64 {
		return fmt.Errorf("%w: root fingerprint %q must be 64 lowercase hex digits, got %d characters",
			ErrInvalidName, truncate(fp), len(fp))
	}
	for i := 0; i < len(fp); i++ {
		c := fp[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w: root fingerprint %q: %q is not a lowercase hex digit",
				ErrInvalidName, truncate(fp), describeByte(fp, i))
		}
	}
	return nil
}

// Parent returns the parent path of p ("" for a top-level agent, whose
// parent is the root).
func Parent(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

// Join appends a child segment to a parent path ("" is the root).
func Join(parent, child string) string {
	if parent == "" {
		return child
	}
	return parent + "/" + child
}

// Ancestors returns the proper ancestors of p, nearest last, excluding the
// root: Ancestors("a/b/c") = ["a", "a/b"].
func Ancestors(p string) []string {
	var out []string
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			out = append(out, p[:i])
		}
	}
	return out
}

// IsDescendant reports whether p lies strictly below ancestor ("" is the root).
func IsDescendant(p, ancestor string) bool {
	if ancestor == "" {
		return p != ""
	}
	return len(p) > len(ancestor) && strings.HasPrefix(p, ancestor) && p[len(ancestor)] == '/'
}

// Subject returns the subject of an agent's events: prefix.root for the root
// itself, prefix.root.seg.seg for a dynamic agent.
func Subject(prefix, root, p string) string {
	if p == "" {
		return prefix + "." + root
	}
	return prefix + "." + root + "." + strings.ReplaceAll(p, "/", ".")
}

// RootSubjects returns the subject filters that cover one root's whole
// subtree: the root's own subject and everything below it.
func RootSubjects(prefix, root string) []string {
	return []string{prefix + "." + root, prefix + "." + root + ".>"}
}

// ParseSubject splits a subject into root fingerprint and agent path. It
// does not validate them.
func ParseSubject(prefix, subject string) (root, p string, err error) {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	if !ok {
		return "", "", fmt.Errorf("%w: subject %q is not under prefix %q", ErrInvalidName, subject, prefix)
	}
	root, tail, _ := strings.Cut(rest, ".")
	return root, strings.ReplaceAll(tail, ".", "/"), nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// describeByte names the offending character at byte i, decoding a whole
// rune so that non-ASCII input is shown as the character it is.
func describeByte(s string, i int) string {
	for j, r := range s {
		if j >= i {
			return string(r)
		}
	}
	return s[i : i+1]
}
