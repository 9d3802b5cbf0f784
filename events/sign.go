package events

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/nats-io/nkeys"
	"github.com/vmihailenco/msgpack/v5"
)

// Errors of signature verification.
var (
	// ErrUnsigned: the event carries no signature.
	ErrUnsigned = errors.New("event is unsigned")
	// ErrBadSignature: the signature does not verify against the signer's
	// key, or the signer is not a valid public key.
	ErrBadSignature = errors.New("bad signature")
	// ErrUntrustedSigner: a valid signature by a key the reader's trust
	// policy does not hold.
	ErrUntrustedSigner = errors.New("untrusted signer")
	// ErrReplayed: an event whose id is in the log already (a copy
	// published again).
	ErrReplayed = errors.New("event id already in the log")
)

// Signer signs events: an nkey key pair holding a seed (nkeys.FromSeed).
type Signer interface {
	PublicKey() (string, error)
	Sign(input []byte) ([]byte, error)
}

// EncodeSigned sets e.Signer to the key's public key, signs the encoding of
// e without a signature, and returns the encoding with the signature in
// e.Sig. The hash chain (Prev) covers the signed bytes.
func EncodeSigned(e *Event, key Signer) ([]byte, error) {
	pub, err := key.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("sign event %s: public key: %w", e.ID, err)
	}
	e.Signer, e.Sig = pub, ""
	payload, err := Encode(e)
	if err != nil {
		return nil, err
	}
	sig, err := key.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("sign event %s: %w", e.ID, err)
	}
	e.Sig = base64.RawURLEncoding.EncodeToString(sig)
	return Encode(e)
}

// VerifySignature checks a decoded event's signature against its own
// encoding (what this package's encoder stores for it): VerifyStored on
// Encode(e). Readers of the log verify the stored bytes with VerifyStored.
// It returns ErrUnsigned for an unsigned event and ErrBadSignature for any
// other failure; an event edited after signing fails.
func VerifySignature(e *Event) error {
	if e.Sig == "" && e.Signer == "" {
		return ErrUnsigned
	}
	data, err := Encode(e)
	if err != nil {
		return fmt.Errorf("%w: event %s: %v", ErrBadSignature, e.ID, err)
	}
	return VerifyStored(data, e)
}

// SignedPayload returns the bytes a signature covers: the stored event
// bytes without their `sig` entry. The event must be a msgpack map whose
// last key is "sig"; the payload is the same map with one entry fewer (its
// header re-encoded for the smaller count) and that last key and its value
// cut off. Every other byte is kept as stored, so a writer in any language
// that puts `sig` last and signs the bytes it stores without it verifies,
// whatever its encoder. ok is false when the bytes are not such a map.
func SignedPayload(data []byte) (payload []byte, ok bool) {
	n, hlen, ok := mapHeader(data)
	if !ok || n == 0 {
		return nil, false
	}
	// Walk the entries to find where the last key starts.
	dec := msgpack.NewDecoder(bytes.NewReader(data[hlen:]))
	pos := hlen
	lastKey := 0
	for i := 0; i < n; i++ {
		lastKey = pos
		key, err := dec.DecodeString()
		if err != nil {
			return nil, false
		}
		if err := dec.Skip(); err != nil {
			return nil, false
		}
		pos = len(data) - dec.Buffered().(*bytes.Reader).Len()
		if i == n-1 && key != "sig" {
			return nil, false
		}
	}
	if pos != len(data) {
		return nil, false // trailing bytes
	}
	var out bytes.Buffer
	enc := msgpack.NewEncoder(&out)
	if err := enc.EncodeMapLen(n - 1); err != nil {
		return nil, false
	}
	out.Write(data[hlen:lastKey])
	return out.Bytes(), true
}

// mapHeader decodes a msgpack map header: the entry count and its length.
func mapHeader(data []byte) (n, hlen int, ok bool) {
	if len(data) == 0 {
		return 0, 0, false
	}
	switch c := data[0]; {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), 1, true
	case c == 0xde && len(data) >= 3:
		return int(data[1])<<8 | int(data[2]), 3, true
	case c == 0xdf && len(data) >= 5:
		m := uint64(data[1])<<24 | uint64(data[2])<<16 | uint64(data[3])<<8 | uint64(data[4])
		if m > uint64(len(data)) {
			return 0, 0, false
		}
		return int(m), 5, true
	}
	return 0, 0, false
}

// VerifyStored checks the signature of an event against the bytes it was
// stored as (SignedPayload), not a re-encoding: e is those bytes decoded.
// It returns ErrUnsigned for an unsigned event and ErrBadSignature for any
// other failure.
func VerifyStored(data []byte, e *Event) error {
	if e.Sig == "" && e.Signer == "" {
		return ErrUnsigned
	}
	if e.Sig == "" || e.Signer == "" {
		return fmt.Errorf("%w: event %s has a signer without a signature or the reverse", ErrBadSignature, e.ID)
	}
	sig, err := base64.RawURLEncoding.DecodeString(e.Sig)
	if err != nil {
		return fmt.Errorf("%w: event %s: signature is not base64url: %v", ErrBadSignature, e.ID, err)
	}
	pub, err := nkeys.FromPublicKey(e.Signer)
	if err != nil {
		return fmt.Errorf("%w: event %s: signer %q is not an nkey public key: %v", ErrBadSignature, e.ID, e.Signer, err)
	}
	payload, ok := SignedPayload(data)
	if !ok {
		return fmt.Errorf("%w: event %s: the stored bytes do not end with the sig entry", ErrBadSignature, e.ID)
	}
	if err := pub.Verify(payload, sig); err != nil {
		return fmt.Errorf("%w: event %s does not verify against signer %s", ErrBadSignature, e.ID, e.Signer)
	}
	return nil
}
