package projector

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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
