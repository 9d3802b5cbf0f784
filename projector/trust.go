package projector

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nkeys"

	"github.com/agentreg/agentreg/events"
)

// Trust is a registry's trust policy: the nkey public keys whose signed
// events it applies. Under a policy an unsigned event, a signature that
// does not verify over the stored bytes (events.VerifyStored), or a signer
// outside the set is a violation, not applied. A registry without a policy
// applies signed and unsigned events alike (signatures are then only
// audited). The policy is not part of a registry's encoding: a snapshot
// records its ID, and a registry is restored only from a snapshot made
// under the same policy.
type Trust struct {
	signers map[string]bool
	id      string
}

// NewTrust returns the policy trusting exactly keys (nkey public keys, as
// `nk -pubout` or nkeys.KeyPair.PublicKey print them). At least one key.
func NewTrust(keys []string) (*Trust, error) {
	t := &Trust{signers: map[string]bool{}}
	for _, k := range keys {
		k = strings.TrimSpace(k)
		if _, err := nkeys.FromPublicKey(k); err != nil {
			return nil, fmt.Errorf("trusted signer %q: not an nkey public key: %w", k, err)
		}
		t.signers[k] = true
	}
	if len(t.signers) == 0 {
		return nil, fmt.Errorf("trust policy: no signer keys")
	}
	sum := sha256.Sum256([]byte(strings.Join(t.Signers(), "\n")))
	t.id = hex.EncodeToString(sum[:8])
	return t, nil
}

// ID names the policy: a hash of its sorted keys ("" for no policy).
func (t *Trust) ID() string {
	if t == nil {
		return ""
	}
	return t.id
}

// Signers returns the trusted keys, sorted.
func (t *Trust) Signers() []string {
	out := make([]string, 0, len(t.signers))
	for k := range t.signers {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// check reports why the stored event may not be applied under the policy.
func (t *Trust) check(data []byte, e *events.Event) error {
	if err := events.VerifyStored(data, e); err != nil {
		return err
	}
	if !t.signers[e.Signer] {
		return fmt.Errorf("event %s is signed by %s, which this registry does not trust: %w", e.ID, e.Signer, events.ErrUntrustedSigner)
	}
	return nil
}

// SetTrust gives the registry a trust policy (nil: none) for the events it
// folds from now on. Set it on a new registry, before its first Apply: a
// registry folded under one policy is not the fold of another.
func (r *Registry) SetTrust(t *Trust) { r.trust = t }

// TrustID is the ID of the registry's trust policy ("" for none).
func (r *Registry) TrustID() string { return r.trust.ID() }

// ParseSigners reads a list of trusted signers: one nkey public key a line;
// blank lines and lines starting with # are skipped.
func ParseSigners(text string) ([]string, error) {
	var keys []string
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, err := nkeys.FromPublicKey(line); err != nil {
			return nil, fmt.Errorf("line %d: %q is not an nkey public key: %w", i+1, line, err)
		}
		keys = append(keys, line)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no signer key")
	}
	return keys, nil
}
