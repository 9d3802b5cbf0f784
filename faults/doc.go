// Package faults proves that agentreg keeps its promises when things break:
// every event a writer was told is stored is in the log exactly once, and a
// registry folded from the log, from a snapshot plus its tail, or kept hot
// by a follower, is the same registry (same projector.StateHash).
//
// It holds tests only, each against real NATS servers started in the test
// process (package testutil) or real processes on 127.0.0.1:
//
//   - TestWriterKilled: a writer process (faults/internal/writer, built with
//     go build) appending through agent.Runtime is SIGKILLed at random points
//     20 times and restarted; it re-sends some appends with the same event
//     ids. After each kill every acknowledged event is in the stream exactly
//     once at the sequence it was acknowledged with, no event id appears
//     twice, and a fresh fold, a runtime that followed along and a runtime
//     restored from the writer's snapshots agree.
//   - TestServerRestarts: the NATS server is restarted 5 times on the same
//     port and store while a runtime writes and an in-process daemon follows
//     the stream. Acknowledged writes are there exactly once, writes that
//     failed are absent or there exactly once (never in part), and the
//     daemon's follower ends on the fresh fold's state.
//   - TestClusterFailover: on a 3-node cluster with an R3 stream, a
//     non-leader and then the stream leader are shut down under load and
//     restarted; writes resume after the election, nothing acknowledged is
//     lost, and the restarted nodes catch up.
//   - TestRacingWriters: 16 runtimes grant and revoke on one agent at once;
//     each write succeeds or fails with agent.ErrConflict, and the registry
//     is the serial fold of the writes that succeeded.
//   - TestSnapshotCorruption: flipped bytes, a truncated body, a wrong
//     version header and an undecodable header are skipped with a warning,
//     and a fresh runtime still reaches the full replay's state.
//   - TestStreamFull: a stream with a small MaxBytes refuses the append that
//     does not fit with an error naming the limit; nothing stored is damaged
//     and reads go on.
//
// Randomised tests log their seed; rerun one with
//
//	go test ./faults/ -run TestWriterKilled -faults.seed=N
//
// The default runs are short: about 20 s together with -race on two cores
// (20 kills of runs of up to 30 events, 5 restarts, one shutdown of a
// non-leader and one of the stream leader, 3 s of racing writers). The soak
// variants run longer with more faults: 100 kills of runs of up to 200
// events, 20 restarts, two rounds of cluster shutdowns, 10 s of racing
// writers (about 4 minutes with -race):
//
//	go test -race ./faults/ -faults.soak -timeout 30m
package faults
