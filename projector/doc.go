// Package projector folds a root's events into its local registry.
//
// The fold is pure: Registry.Apply takes one Record (stream sequence,
// subject, bytes) and changes the registry; it does no I/O, reads no clock
// and logs nothing. The caller owns the loop: fetch records from the log,
// apply them in order, checkpoint with a snapshot.
//
// Invariants the fold keeps, whatever the stream holds:
//   - a child never effectively holds a capability its parent lacks
//     (Registry.Effective intersects with every ancestor, and a revocation
//     removes the capability from the whole subtree);
//   - retiring an agent retires its descendants;
//   - an event that breaks an invariant, does not decode, sits on the wrong
//     subject, breaks its agent's hash chain or comes from a newer schema is
//     not applied but recorded in Registry.Violations, and the fold goes on.
//
// Example:
//
//	reg := projector.New(rootFingerprint)
//	for _, rec := range records { // []events.Record
//		reg.Apply(rec)
//	}
//	eff, _ := reg.Effective("math_solver")
//	hash, _ := reg.StateHash()
package projector
