package events

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// DecodeMsgpack decodes an event without reflection for the envelope and
// the frequent bodies (a replay decodes millions of them). It accepts
// exactly what the reflection-based decoder accepts for these types:
// fields in any order, unknown fields skipped, nil for absent values (and
// for an empty caps or tasks array in a created body, which encodes as
// absent).
func (e *Event) DecodeMsgpack(d *msgpack.Decoder) error {
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	if n == -1 {
		return nil
	}
	var kb [16]byte
	for range n {
		k, err := readKey(d, &kb)
		if err != nil {
			return err
		}
		switch string(k) {
		case "id":
			e.ID, err = d.DecodeString()
		case "type":
			var s string
			s, err = d.DecodeString()
			e.Type = Type(s)
		case "v":
			e.Version, err = d.DecodeUint64()
		case "root":
			e.Root, err = d.DecodeString()
		case "path":
			e.Path, err = d.DecodeString()
		case "time":
			e.Time, err = d.DecodeInt64()
		case "actor":
			e.Actor, err = d.DecodeString()
		case "obo":
			e.OnBehalfOf, err = d.DecodeString()
		case "corr":
			e.Correlation, err = d.DecodeString()
		case "prev":
			e.Prev, err = d.DecodeString()
		case "signer":
			e.Signer, err = d.DecodeString()
		case "sig":
			e.Sig, err = d.DecodeString()
		case "created":
			if isNil(d) {
				e.Created, err = nil, d.DecodeNil()
				break
			}
			e.Created = &CreatedData{}
			err = decodeFields(d, func(k []byte) error {
				var err error
				switch string(k) {
				case "primer":
					e.Created.Primer, err = d.DecodeString()
				case "caps":
					e.Created.Capabilities, err = decodeCapabilities(d)
				case "tasks":
					e.Created.Tasks, err = decodeTasks(d)
				default:
					err = d.Skip()
				}
				return err
			})
		case "granted":
			if isNil(d) {
				e.Granted, err = nil, d.DecodeNil()
				break
			}
			e.Granted = &GrantedData{}
			err = decodeFields(d, func(k []byte) error {
				switch string(k) {
				case "cap":
					return decodeCapability(d, &e.Granted.Capability)
				case "replace":
					var err error
					e.Granted.Replace, err = d.DecodeBool()
					return err
				}
				return d.Skip()
			})
		case "registered":
			e.Registered = nil
			err = d.Decode(&e.Registered)
		case "revoked":
			e.Revoked = nil
			err = d.Decode(&e.Revoked)
		case "task":
			if isNil(d) {
				e.Task, err = nil, d.DecodeNil()
				break
			}
			e.Task = &TaskData{}
			err = decodeFields(d, func(k []byte) error {
				if string(k) == "task" {
					return decodeTask(d, &e.Task.Task)
				}
				return d.Skip()
			})
		case "retired":
			e.Retired = nil
			err = d.Decode(&e.Retired)
		case "migrated":
			e.Migration = nil
			err = d.Decode(&e.Migration)
		default:
			err = d.Skip()
		}
		if err != nil {
			return fmt.Errorf("field %q: %w", k, err)
		}
	}
	return nil
}

// readKey reads a map key into buf without allocating; a key longer than
// buf is read whole (it matches no known field).
func readKey(d *msgpack.Decoder, buf *[16]byte) ([]byte, error) {
	n, err := d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, nil
	}
	var b []byte
	if n <= len(buf) {
		b = buf[:n]
	} else {
		b = make([]byte, n)
	}
	if err := d.ReadFull(b); err != nil {
		return nil, err
	}
	return b, nil
}

func isNil(d *msgpack.Decoder) bool {
	c, err := d.PeekCode()
	return err == nil && c == msgpcode.Nil
}

// decodeFields reads a map, calling field for each key (valid only during
// the call).
func decodeFields(d *msgpack.Decoder, field func(key []byte) error) error {
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	var kb [16]byte
	for range n {
		k, err := readKey(d, &kb)
		if err != nil {
			return err
		}
		if err := field(k); err != nil {
			return fmt.Errorf("field %q: %w", k, err)
		}
	}
	return nil
}

func decodeStrings(d *msgpack.Decoder) ([]string, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n == -1 {
		return nil, err
	}
	out := make([]string, n)
	for i := range out {
		if out[i], err = d.DecodeString(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// decodeCapabilities reads an array of capabilities; nil and an empty array
// give nil (the field is omitted when empty, so both encode as absent).
// CheckWire has bounded the declared length by the bytes that follow.
func decodeCapabilities(d *msgpack.Decoder) ([]Capability, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	out := make([]Capability, n)
	for i := range out {
		if err := decodeCapability(d, &out[i]); err != nil {
			return nil, fmt.Errorf("capability %d: %w", i, err)
		}
	}
	return out, nil
}

// decodeTasks reads an array of task definitions, like decodeCapabilities.
func decodeTasks(d *msgpack.Decoder) ([]TaskDef, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	out := make([]TaskDef, n)
	for i := range out {
		if err := decodeTask(d, &out[i]); err != nil {
			return nil, fmt.Errorf("task %d: %w", i, err)
		}
	}
	return out, nil
}

func decodeCapability(d *msgpack.Decoder, c *Capability) error {
	if isNil(d) {
		*c = Capability{}
		return d.DecodeNil()
	}
	return decodeFields(d, func(k []byte) error {
		var err error
		var s string
		switch string(k) {
		case "kind":
			s, err = d.DecodeString()
			c.Kind = Kind(s)
		case "name":
			c.Name, err = d.DecodeString()
		case "include":
			c.Include, err = decodeStrings(d)
		case "exclude":
			c.Exclude, err = decodeStrings(d)
		case "vis":
			s, err = d.DecodeString()
			c.Visibility = Visibility(s)
		default:
			err = d.Skip()
		}
		return err
	})
}

func decodeTask(d *msgpack.Decoder, t *TaskDef) error {
	if isNil(d) {
		*t = TaskDef{}
		return d.DecodeNil()
	}
	return decodeFields(d, func(k []byte) error {
		var err error
		switch string(k) {
		case "name":
			t.Name, err = d.DecodeString()
		case "doc":
			t.Doc, err = d.DecodeString()
		case "input":
			err = decodeSchema(d, &t.Input, 0)
		case "output":
			err = decodeSchema(d, &t.Output, 0)
		case "input_schema":
			var s string
			s, err = d.DecodeString()
			t.InputSchema = JSONSchema(s)
		case "output_schema":
			var s string
			s, err = d.DecodeString()
			t.OutputSchema = JSONSchema(s)
		default:
			err = d.Skip()
		}
		return err
	})
}

// maxSchemaDepth bounds schema nesting (checkWire bounds it already; this
// keeps the recursion safe on its own).
const maxSchemaDepth = 64

func decodeSchema(d *msgpack.Decoder, s *Schema, depth int) error {
	if depth > maxSchemaDepth {
		return fmt.Errorf("schema nested deeper than %d", maxSchemaDepth)
	}
	if isNil(d) {
		*s = Schema{}
		return d.DecodeNil()
	}
	return decodeFields(d, func(k []byte) error {
		var err error
		switch string(k) {
		case "type":
			s.Type, err = d.DecodeString()
		case "fields":
			var n int
			if n, err = d.DecodeArrayLen(); err != nil || n == -1 {
				s.Fields = nil
				return err
			}
			s.Fields = make([]Field, n)
			for i := range s.Fields {
				if err = decodeField(d, &s.Fields[i], depth+1); err != nil {
					return err
				}
			}
		case "items":
			if isNil(d) {
				s.Items = nil
				return d.DecodeNil()
			}
			s.Items = &Schema{}
			err = decodeSchema(d, s.Items, depth+1)
		default:
			err = d.Skip()
		}
		return err
	})
}

func decodeField(d *msgpack.Decoder, f *Field, depth int) error {
	if isNil(d) {
		*f = Field{}
		return d.DecodeNil()
	}
	return decodeFields(d, func(k []byte) error {
		var err error
		switch string(k) {
		case "name":
			f.Name, err = d.DecodeString()
		case "schema":
			err = decodeSchema(d, &f.Schema, depth)
		case "required":
			f.Required, err = d.DecodeBool()
		case "doc":
			f.Doc, err = d.DecodeString()
		default:
			err = d.Skip()
		}
		return err
	})
}
