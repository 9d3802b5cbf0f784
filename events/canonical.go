package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
)

// CanonicalJSON returns the RFC 8785 (JSON Canonicalization Scheme) form
// of a JSON text: no whitespace, object members sorted by their names' UTF-16
// code units, numbers in their shortest ECMAScript form, strings with the
// minimal escapes. Equal JSON values have equal canonical bytes, in any
// language with an RFC 8785 implementation: this is what contract digests
// and stored schemas are made of. A duplicate member name is an error.
//
// The transformation is github.com/gowebpki/jcs (a port of the RFC
// author's reference code, tested with the RFC's vectors).
func CanonicalJSON(b []byte) ([]byte, error) {
	if !utf8.Valid(b) {
		return nil, errors.New("not valid UTF-8")
	}
	if !json.Valid(b) {
		return nil, errors.New("not valid JSON")
	}
	// jcs reads an object or an array at the top level; wrapping the value in
	// an array canonicalizes any value (true, a number...) the same way.
	wrapped := make([]byte, 0, len(b)+2)
	wrapped = append(append(append(wrapped, '['), b...), ']')
	c, err := jcs.Transform(wrapped)
	if err != nil {
		return nil, fmt.Errorf("canonical JSON: %w", err)
	}
	if len(c) < 2 || c[0] != '[' || c[len(c)-1] != ']' {
		return nil, errors.New("canonical JSON: unexpected output")
	}
	return c[1 : len(c)-1], nil
}
