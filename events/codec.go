package events

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Encode returns the wire form of an event: a msgpack map with the field
// names of the struct tags, keys in the struct's order, empty bodies left
// out, every integer in its shortest msgpack form.
func Encode(e *Event) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	if err := enc.Encode(e); err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	if err := checkEventSize(e, buf.Len()); err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	// What Decode would refuse (a schema nested too deep) is not written.
	if err := checkWire(buf.Bytes()); err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
	}
	return buf.Bytes(), nil
}

// Decode parses and validates the wire form of an event. It never panics:
// any input that is not a valid event gives an error wrapping ErrMalformed,
// ErrUnknownType, ErrFutureVersion or ErrInvalidName, and bytes over
// MaxEventBytes one wrapping ErrTooLarge (not decoded at all).
func Decode(b []byte) (e *Event, err error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrMalformed)
	}
	if len(b) > MaxEventBytes {
		return nil, tooLarge("the event", len(b), MaxEventBytes, "bytes")
	}
	defer func() {
		// The decoder is written not to panic; this guards the fold against
		// a bug there all the same, since the bytes come from anyone who can
		// publish to the stream.
		if r := recover(); r != nil {
			e, err = nil, fmt.Errorf("%w: decoder failed: %v", ErrMalformed, r)
		}
	}()
	if err := checkWire(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
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

// maxWireDepth bounds how deeply maps and arrays nest in an event's bytes.
const maxWireDepth = 512

// checkWire is CheckWire with the bound on events.
func checkWire(b []byte) error { return walkWire(b, maxWireDepth, " after the event") }

// CheckWire walks the msgpack value that must fill b exactly, without
// decoding it: every declared length must fit in the bytes that remain, and
// maps and arrays nest at most maxDepth deep. The msgpack decoder sizes a
// struct slice by its declared length before reading any element, and
// recurses once per level: without this walk a 30-byte message could make it
// allocate gigabytes, or a deep one overflow the stack, and both are fatal
// errors that recover cannot catch. After the walk every declared element
// is present, so the decoder allocates in proportion to len(b). Every
// decoder of bytes from the stream or the snapshot store runs it first.
func CheckWire(b []byte, maxDepth int) error { return walkWire(b, maxDepth, "") }

// walkWire is CheckWire; after names what the trailing bytes follow in its
// error.
func walkWire(b []byte, maxDepth int, after string) error {
	var stack []uint64 // values still to read at each enclosing level
	need := uint64(1)  // values still to read at the current level
	i := 0
	for {
		for need == 0 {
			if len(stack) == 0 {
				if i != len(b) {
					return fmt.Errorf("%d trailing bytes%s", len(b)-i, after)
				}
				return nil
			}
			need, stack = stack[len(stack)-1], stack[:len(stack)-1]
		}
		if i >= len(b) {
			return errors.New("unexpected end of message")
		}
		start, c := i, b[i]
		i++
		need--
		var size, width int // payload bytes; width of a length prefix
		var children, mult uint64
		switch {
		case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c <= 0x8f:
			children = 2 * uint64(c&0x0f)
		case c <= 0x9f:
			children = uint64(c & 0x0f)
		case c <= 0xbf:
			size = int(c & 0x1f)
		case c == 0xc4, c == 0xd9: // bin8, str8
			width = 1
		case c == 0xc5, c == 0xda:
			width = 2
		case c == 0xc6, c == 0xdb:
			width = 4
		case c >= 0xc7 && c <= 0xc9: // ext8/16/32: length, type, data
			width, size = 1<<(c-0xc7), 1
		case c == 0xca:
			size = 4
		case c == 0xcb:
			size = 8
		case c >= 0xcc && c <= 0xcf:
			size = 1 << (c - 0xcc)
		case c >= 0xd0 && c <= 0xd3:
			size = 1 << (c - 0xd0)
		case c >= 0xd4 && c <= 0xd8: // fixext: type, data
			size = 1 + 1<<(c-0xd4)
		case c == 0xdc, c == 0xde:
			width, mult = 2, 1+uint64(c-0xdc)/2
		case c == 0xdd, c == 0xdf:
			width, mult = 4, 1+uint64(c-0xdd)/2
		default: // 0xc1 is never used
			return fmt.Errorf("byte 0x%02x at offset %d is not msgpack", c, start)
		}
		if width > 0 {
			if len(b)-i < width {
				return errors.New("unexpected end of message")
			}
			var n uint64
			for _, x := range b[i : i+width] {
				n = n<<8 | uint64(x)
			}
			i += width
			if mult > 0 {
				children = n * mult
			} else if n > uint64(len(b)-i) {
				return fmt.Errorf("a value at offset %d declares %d bytes, %d remain", start, n, len(b)-i)
			} else {
				size += int(n)
			}
		}
		if size > len(b)-i {
			return errors.New("unexpected end of message")
		}
		i += size
		if children > 0 {
			if children > uint64(len(b)-i) {
				return fmt.Errorf("a map or array at offset %d declares %d values, %d bytes remain", start, children, len(b)-i)
			}
			if len(stack) >= maxDepth {
				return fmt.Errorf("maps and arrays nest deeper than %d", maxDepth)
			}
			stack = append(stack, need)
			need = children
		}
	}
}
