package events_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/agentreg/agentreg/events"
)

// FuzzDecode feeds arbitrary bytes to Decode: it must not panic, must fail
// with one of its sentinels, and an event it accepts must survive
// Encode/Decode unchanged.
func FuzzDecode(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.msgpack"))
	if err != nil {
		f.Fatal(err)
	}
	if len(files) == 0 {
		f.Fatal("no golden vectors under testdata/golden: run go test -update")
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, b := range [][]byte{
		nil,
		{0xc0},
		{0xc1},
		{0x80},
		{0x81, 0xa2, 'i', 'd', 0xa1, 'x'},
		{0xdf, 0xff, 0xff, 0xff, 0xff},
		{0x81, 0xa4, 't', 'a', 's', 'k', 0x81, 0xa4, 't', 'a', 's', 'k', 0xdd, 0x7f, 0xff, 0xff, 0xff},
		[]byte("agentreg"),
	} {
		f.Add(b)
	}

	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := events.Decode(b)
		if err != nil {
			if e != nil {
				t.Fatalf("Decode returned an event with error %v", err)
			}
			if !errors.Is(err, events.ErrMalformed) && !errors.Is(err, events.ErrUnknownType) &&
				!errors.Is(err, events.ErrFutureVersion) && !errors.Is(err, events.ErrInvalidName) {
				t.Fatalf("Decode error %v wraps none of the sentinels", err)
			}
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("Decode accepted an event that does not validate: %v", err)
		}
		again, err := events.Encode(e)
		if err != nil {
			t.Fatalf("Encode of a decoded event: %v", err)
		}
		e2, err := events.Decode(again)
		if err != nil {
			t.Fatalf("Decode of a re-encoded event: %v", err)
		}
		if !reflect.DeepEqual(e, e2) {
			t.Fatalf("round trip changed the event:\n got %+v\nwant %+v", e2, e)
		}
		// Encoding is canonical from here on.
		again2, err := events.Encode(e2)
		if err != nil || string(again2) != string(again) {
			t.Fatalf("re-encoding is not stable (err %v)", err)
		}
	})
}
