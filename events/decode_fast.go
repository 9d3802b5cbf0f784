package events

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// DecodeMsgpack decodes an event without reflection for the envelope and
// the frequent bodies (a replay decodes millions of them). It accepts
// exactly what the reflection-based decoder accepts for these types:
// fields in any order, unknown fields skipped, nil for absent values.
func (e *Event) DecodeMsgpack(d *msgpack.Decoder) error {
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	if n == -1 {
		return nil
	}
	for range n {
		key, err := d.DecodeString()
		if err != nil {
			return err
		}
		switch key {
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
		case "corr":
			e.Correlation, err = d.DecodeString()
		case "prev":
			e.Prev, err = d.DecodeString()
		case "created":
			if isNil(d) {
				e.Created, err = nil, d.DecodeNil()
				break
			}
			e.Created = &CreatedData{}
			err = decodeFields(d, func(k string) error {
				if k == "primer" {
					var err error
					e.Created.Primer, err = d.DecodeString()
					return err
				}
				return d.Skip()
			})
		case "granted":
			if isNil(d) {
				e.Granted, err = nil, d.DecodeNil()
				break
			}
			e.Granted = &GrantedData{}
			err = decodeFields(d, func(k string) error {
				if k == "cap" {
					return decodeCapability(d, &e.Granted.Capability)
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
			e.Task = nil
			err = d.Decode(&e.Task)
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
			return fmt.Errorf("field %q: %w", key, err)
		}
	}
	return nil
}

func isNil(d *msgpack.Decoder) bool {
	c, err := d.PeekCode()
	return err == nil && c == msgpcode.Nil
}

// decodeFields reads a map, calling field for each key.
func decodeFields(d *msgpack.Decoder, field func(key string) error) error {
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	for range n {
		k, err := d.DecodeString()
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

func decodeCapability(d *msgpack.Decoder, c *Capability) error {
	if isNil(d) {
		*c = Capability{}
		return d.DecodeNil()
	}
	return decodeFields(d, func(k string) error {
		var err error
		var s string
		switch k {
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
