package events

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/nats-io/nkeys"
)

// Errors of signature verification.
var (
	// ErrUnsigned: the event carries no signature.
	ErrUnsigned = errors.New("event is unsigned")
	// ErrBadSignature: the signature does not verify against the signer's
	// key, or the signer is not a valid public key.
	ErrBadSignature = errors.New("bad signature")
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

// VerifySignature checks a decoded event's signature: the encoding of the
// event without Sig must verify against Signer. It returns ErrUnsigned for
// an unsigned event and ErrBadSignature for any other failure; an event
// whose bytes were edited after signing fails, since its re-encoding no
// longer matches what was signed.
func VerifySignature(e *Event) error {
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
	unsigned := *e
	unsigned.Sig = ""
	payload, err := Encode(&unsigned)
	if err != nil {
		return fmt.Errorf("%w: event %s: %v", ErrBadSignature, e.ID, err)
	}
	if err := pub.Verify(payload, sig); err != nil {
		return fmt.Errorf("%w: event %s does not verify against signer %s", ErrBadSignature, e.ID, e.Signer)
	}
	return nil
}
