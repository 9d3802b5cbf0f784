package events_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/events"
)

// The claimed on-behalf-of (`obo`) is an optional envelope key of schema
// version 2: absent when empty (every event without it encodes byte for
// byte as before, see TestGolden), pinned by its own golden vector, and
// skipped by a reader that predates it.
func TestOnBehalfOf(t *testing.T) {
	e := *goldenEvents()["CapabilityGranted.v2"]
	require.Empty(t, e.OnBehalfOf)
	plain, err := events.Encode(&e)
	require.NoError(t, err)
	require.NotContains(t, string(plain), "obo", "no key when nobody claimed anything")

	e.Actor, e.OnBehalfOf = "nats:CLIENTS/alice", "user:bob"
	b, err := events.Encode(&e)
	require.NoError(t, err)

	file := filepath.Join("testdata", "claimed", "CapabilityGranted.v2.obo.msgpack")
	if *update {
		require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o755))
		require.NoError(t, os.WriteFile(file, b, 0o644))
	}
	want, err := os.ReadFile(file)
	require.NoError(t, err, "run go test -update to write it")
	assert.Equal(t, want, b, "the wire form of obo is pinned by %s", file)
	// The key follows actor.
	require.Less(t, bytes.Index(b, []byte("actor")), bytes.Index(b, []byte("obo")))
	require.Less(t, bytes.Index(b, []byte("obo")), bytes.Index(b, []byte("corr")))

	got, err := events.Decode(want)
	require.NoError(t, err)
	assert.Equal(t, &e, got)
	assert.Equal(t, uint64(2), got.Version, "no new schema version")

	// A reader that predates the key (the envelope without OnBehalfOf,
	// decoded by reflection as the fast decoder's twin) skips it.
	type oldEnvelope struct {
		ID          string `msgpack:"id"`
		Version     uint64 `msgpack:"v"`
		Actor       string `msgpack:"actor"`
		Correlation string `msgpack:"corr"`
	}
	var old oldEnvelope
	require.NoError(t, msgpack.Unmarshal(want, &old))
	assert.Equal(t, oldEnvelope{ID: e.ID, Version: 2, Actor: e.Actor, Correlation: e.Correlation}, old)

	// Signed, the claim is covered by the signature like every other key.
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	signed, err := events.EncodeSigned(&e, kp)
	require.NoError(t, err)
	dec, err := events.Decode(signed)
	require.NoError(t, err)
	require.NoError(t, events.VerifyStored(signed, dec))
	forged := bytes.Replace(signed, []byte("user:bob"), []byte("user:eve"), 1)
	dec, err = events.Decode(forged)
	require.NoError(t, err)
	require.ErrorIs(t, events.VerifyStored(forged, dec), events.ErrBadSignature)
}
