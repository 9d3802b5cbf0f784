package snapshot_test

import (
	"testing"
	"time"

	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/snapshot"
)

// FuzzOpen: any header bytes and body bytes are refused or opened; never a
// panic, and an opened snapshot re-encodes to a body that opens again.
func FuzzOpen(f *testing.F) {
	reg := projector.New("3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10")
	h, body, err := snapshot.Capture(reg, time.Unix(0, 0))
	if err != nil {
		f.Fatal(err)
	}
	hb, err := snapshot.MarshalHeader(h)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(hb, body)
	f.Add([]byte{0x80}, []byte{0x80})
	f.Add([]byte{}, []byte{0xc1})
	f.Fuzz(func(t *testing.T, hb, body []byte) {
		h, err := snapshot.UnmarshalHeader(hb)
		if err != nil {
			return
		}
		reg, err := snapshot.Open(h, body)
		if err != nil {
			return
		}
		h2, body2, err := snapshot.Capture(reg, time.Unix(0, h.Time))
		if err != nil {
			t.Fatalf("capture of an opened snapshot: %v", err)
		}
		if _, err := snapshot.Open(h2, body2); err != nil {
			t.Fatalf("reopen: %v", err)
		}
	})
}

// FuzzUnmarshalRegistry: projector.Unmarshal never panics on any bytes.
func FuzzUnmarshalRegistry(f *testing.F) {
	reg := projector.New("3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10")
	b, err := reg.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := projector.Unmarshal(b)
		if err != nil {
			return
		}
		if _, err := r.StateHash(); err != nil {
			t.Fatalf("state hash of a decoded registry: %v", err)
		}
	})
}
