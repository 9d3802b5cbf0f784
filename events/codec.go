package events

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Encode returns the wire form of an event: a msgpack map with the field
// names of the struct tags, keys in the struct's order, empty bodies left out.
func Encode(e *Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	return buf.Bytes(), nil
}

// Decode parses and validates the wire form of an event. It never panics:
// any input that is not a valid event gives an error wrapping ErrMalformed,
// ErrUnknownType, ErrFutureVersion or ErrInvalidName.
func Decode(b []byte) (e *Event, err error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	defer func() {
		// The decoder is written not to panic; this guards the fold against
		// a bug there all the same, since the bytes come from anyone who can
		// publish to the stream.
		if r := recover(); r != nil {
			e, err = nil, fmt.Errorf("%w: decoder failed: %v", ErrMalformed, r)
		}
	}()
	r := bytes.NewReader(b)
	dec := msgpack.NewDecoder(r) // a bytes.Reader is read without buffering
	var ev Event
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after the event", ErrMalformed, r.Len())
	}
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	return &ev, nil
}
