package events_test

import (
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/events"
)

func TestSignatures(t *testing.T) {
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, _ := kp.PublicKey()

	t.Run("OK", func(t *testing.T) {
		e := *goldenEvents()["CapabilityGranted"]
		b, err := events.EncodeSigned(&e, kp)
		require.NoError(t, err)
		got, err := events.Decode(b)
		require.NoError(t, err)
		require.Equal(t, pub, got.Signer)
		require.NoError(t, events.VerifySignature(got))
	})
	t.Run("ErrUnsigned", func(t *testing.T) {
		e := *goldenEvents()["CapabilityGranted"]
		require.ErrorIs(t, events.VerifySignature(&e), events.ErrUnsigned)
	})
	t.Run("ErrBadSignature", func(t *testing.T) {
		e := *goldenEvents()["CapabilityGranted"]
		b, err := events.EncodeSigned(&e, kp)
		require.NoError(t, err)
		got, err := events.Decode(b)
		require.NoError(t, err)
		edited := *got
		edited.Actor = "user:mallory" // an edit after signing
		require.ErrorIs(t, events.VerifySignature(&edited), events.ErrBadSignature)
		other, _ := nkeys.CreateUser()
		otherPub, _ := other.PublicKey()
		forged := *got
		forged.Signer = otherPub // a claim of another signer
		require.ErrorIs(t, events.VerifySignature(&forged), events.ErrBadSignature)
		half := *got
		half.Sig = ""
		require.ErrorIs(t, events.VerifySignature(&half), events.ErrBadSignature)
		junk := *got
		junk.Signer = "not-a-key"
		require.ErrorIs(t, events.VerifySignature(&junk), events.ErrBadSignature)
	})
}
