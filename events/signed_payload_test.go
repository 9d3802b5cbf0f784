package events_test

import (
	"bytes"
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
)

// The signature covers the stored bytes minus the sig entry: cutting it
// from what EncodeSigned stored gives exactly the bytes it signed, and an
// edit anywhere else fails verification.
func TestSignedPayloadIsTheStoredBytesWithoutSig(t *testing.T) {
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	e := &events.Event{ID: "01JD0000000000000000000000", Type: events.AgentCreated, Version: events.SchemaVersion,
		Root: "3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10", Path: "a", Time: 1, Actor: "u", Correlation: "c",
		Created: &events.CreatedData{Primer: "p", Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}}}}
	stored, err := events.EncodeSigned(e, kp)
	require.NoError(t, err)
	unsigned := *e
	unsigned.Sig = ""
	want, err := events.Encode(&unsigned)
	require.NoError(t, err)
	got, ok := events.SignedPayload(stored)
	require.True(t, ok)
	require.Equal(t, want, got)

	dec, err := events.Decode(stored)
	require.NoError(t, err)
	require.NoError(t, events.VerifyStored(stored, dec))

	// An edit of one byte of the primer: the signature no longer verifies.
	i := bytes.Index(stored, []byte{0xa1, 'p'})
	require.Positive(t, i)
	edited := bytes.Clone(stored)
	edited[i+1] = 'q'
	dec2, err := events.Decode(edited)
	require.NoError(t, err)
	require.ErrorIs(t, events.VerifyStored(edited, dec2), events.ErrBadSignature)

	// Unsigned bytes: no sig entry.
	_, ok = events.SignedPayload(want)
	require.False(t, ok)
	require.ErrorIs(t, events.VerifyStored(want, &unsigned), events.ErrBadSignature, "a signer without a signature")
	plain := unsigned
	plain.Signer = ""
	plainBytes, err := events.Encode(&plain)
	require.NoError(t, err)
	require.ErrorIs(t, events.VerifyStored(plainBytes, &plain), events.ErrUnsigned)
	// Garbage never panics.
	for _, b := range [][]byte{nil, {0x80}, {0x81, 0xa3, 's', 'i', 'g'}, {0xdf, 0xff, 0xff, 0xff, 0xff}, {0xc1}} {
		_, _ = events.SignedPayload(b)
	}
}
