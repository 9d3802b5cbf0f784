// Package events is agentreg's event model: the events that make up the log,
// their msgpack wire format, agent paths and the subjects they map to, and
// the domain model the events carry (capabilities, tasks with their JSON
// Schemas, tool definitions and contract digests, root definitions and
// their fingerprints).
//
// The package imports no infrastructure. The wire format is specified in
// docs/wire.md (summarised in ARCHITECTURE.md); golden vectors under
// testdata/golden pin its bytes, and the language-neutral vectors under
// testdata/conformance (see its README.md) pin decoding, hashes,
// signatures and the fold for implementations in other languages.
//
//	def := events.RootDef{Name: "architect", Primer: "You build specialists."}
//	root := def.Fingerprint() // 64 hex digits, equal in every process
//	subj := events.Subject("agentreg", root, "math_solver/equation_parser")
//	// agentreg.<root>.math_solver.equation_parser
package events
