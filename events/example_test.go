package events_test

import (
	"fmt"
	"log"

	"github.com/agentreg/agentreg/events"
)

// A capability's patterns decide which members of a module an agent may
// use; unset patterns take the defaults (include everything, exclude
// names starting with "_"), and an exclude wins over an include.
func ExampleCapability_Allows() {
	c := events.Capability{Kind: events.KindModule, Name: "math", Include: []string{"s*", "pi", "_seed"}}.Normalized()
	fmt.Println(c.Include, c.Exclude, c.Visibility)
	for _, m := range []string{"sqrt", "pi", "cos", "_seed"} {
		fmt.Println(m, c.Allows(m))
	}
	// Output:
	// [_seed pi s*] [_*] high
	// sqrt true
	// pi true
	// cos false
	// _seed false
}

// An event's wire form is one msgpack map; Decode reads it back and Hash is
// what the next event of the same agent names as its previous one.
func ExampleEncode() {
	def := events.RootDef{Name: "architect", Primer: "You design specialists.",
		Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}}}
	e := &events.Event{ID: "01JD0000000000000000000000", Type: events.CapabilityRevoked, Version: events.SchemaVersion,
		Root: def.Fingerprint(), Path: "math_solver", Time: 1, Actor: "user:alice", Correlation: "c1",
		Revoked: &events.RevokedData{Kind: events.KindModule, Name: "math", Members: []string{"sqrt"}}}
	b, err := events.Encode(e)
	if err != nil {
		log.Fatal(err)
	}
	back, err := events.Decode(b)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(back.Type, back.Path, back.Revoked.Members)
	fmt.Println(events.Subject("agentreg", back.Root, back.Path) == "agentreg."+def.Fingerprint()+".math_solver")
	fmt.Println(len(events.Hash(b)))
	// Output:
	// CapabilityRevoked math_solver [sqrt]
	// true
	// 64
}
