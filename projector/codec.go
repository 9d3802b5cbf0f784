package projector

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/events"
)

// Marshal returns the canonical msgpack encoding of the registry: map keys
// sorted, so equal registries give equal bytes on any machine. It is the
// body of a snapshot and the input of StateHash.
func (r *Registry) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("encode registry of root %s: %w", short(r.Root), err)
	}
	return buf.Bytes(), nil
}

// Unmarshal decodes a registry encoded by Marshal. It never panics; bytes
// that do not decode give an error wrapping events.ErrMalformed.
func Unmarshal(b []byte) (reg *Registry, err error) {
	defer func() {
		if p := recover(); p != nil {
			reg, err = nil, fmt.Errorf("%w: registry decoder failed: %v", events.ErrMalformed, p)
		}
	}()
	if err := checkWire(b); err != nil {
		return nil, fmt.Errorf("%w: registry: %v", events.ErrMalformed, err)
	}
	r := bytes.NewReader(b)
	var out Registry
	if err := msgpack.NewDecoder(r).Decode(&out); err != nil {
		return nil, fmt.Errorf("%w: registry: %v", events.ErrMalformed, err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: registry: %d trailing bytes", events.ErrMalformed, r.Len())
	}
	if err := events.ValidateFingerprint(out.Root); err != nil {
		return nil, fmt.Errorf("%w: registry: %v", events.ErrMalformed, err)
	}
	if out.Agents == nil {
		out.Agents = map[string]*Agent{}
	}
	if out.SubjectSeq == nil {
		out.SubjectSeq = map[string]uint64{}
	}
	for p, a := range out.Agents {
		if a == nil || a.Path != p {
			return nil, fmt.Errorf("%w: registry: agent entry %q is inconsistent", events.ErrMalformed, p)
		}
		if a.Capabilities == nil {
			a.Capabilities = map[string]Grant{}
		}
		if a.Tasks == nil {
			a.Tasks = map[string]events.TaskDef{}
		}
	}
	return &out, nil
}

// StateHash is the hex SHA-256 of Marshal: same events, same hash.
func (r *Registry) StateHash() (string, error) {
	b, err := r.Marshal()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Clone returns a deep copy (through the canonical encoding).
func (r *Registry) Clone() (*Registry, error) {
	b, err := r.Marshal()
	if err != nil {
		return nil, err
	}
	return Unmarshal(b)
}

// maxWireDepth bounds how deeply maps and arrays nest in a registry's bytes:
// twice the bound on events, so that the registry of any events that decode
// (whose tasks nest a few levels deeper in it) loads.
const maxWireDepth = 1024

// checkWire walks the msgpack value that must fill b exactly, without
// decoding it: every declared length must fit in the bytes that remain, and
// maps and arrays nest at most maxWireDepth deep. The msgpack decoder sizes a
// struct slice by its declared length before reading any element, and
// recurses once per level: without this walk a 30-byte snapshot could make it
// allocate gigabytes, or a deep one overflow the stack, and both are fatal
// errors that recover cannot catch. After the walk every declared element
// is present, so the decoder allocates in proportion to len(b).
// It is a copy of the walk in package events, which does not export it.
func checkWire(b []byte) error {
	var stack []uint64 // values still to read at each enclosing level
	need := uint64(1)  // values still to read at the current level
	i := 0
	for {
		for need == 0 {
			if len(stack) == 0 {
				if i != len(b) {
					return fmt.Errorf("%d trailing bytes", len(b)-i)
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
			if len(stack) >= maxWireDepth {
				return fmt.Errorf("maps and arrays nest deeper than %d", maxWireDepth)
			}
			stack = append(stack, need)
			need = children
		}
	}
}
