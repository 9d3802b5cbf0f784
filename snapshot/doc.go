// Package snapshot captures, verifies and restores per-root registries.
//
// A snapshot is the canonical encoding of a projector.Registry at stream
// sequence Seq, with a Header carrying the format and projector versions,
// the root, the sequence, the time and the SHA-256 of the body. Capture
// does no I/O; a Store persists snapshots (natsstore.Snapshots keeps them in
// a JetStream object store, indexed per root in a KV bucket).
//
// Restore loads the newest snapshot at or below a target sequence that
// verifies, and folds the log's tail on top; a snapshot that fails its
// checksum or has an unknown version is skipped with a warning:
//
//	res, err := snapshot.Restore(ctx, store, log, root, 0, logger)
//	reg := res.Registry // same state hash as a full replay
package snapshot
