// Package natsstore is the JetStream adapter: the only package that imports
// the NATS client for the event log and the snapshot store.
//
//   - Log appends events to one stream (subjects prefix.<root>.<path>) with
//     optimistic concurrency per agent subject (Nats-Expected-Last-Subject-
//     Sequence), deduplication by event id (Nats-Msg-Id), and atomic
//     multi-event appends (JetStream atomic batch publish). It reads one
//     root's subtree, or any set of agent subjects, without scanning the rest
//     of the stream. JetStream's wrong-last-sequence errors (10071, 10164)
//     become events.ErrConflict.
//   - Snapshots implements snapshot.Store on an object store (bodies) and a
//     KV bucket (per-root index).
//   - StartEmbedded runs a nats-server with JetStream inside the process,
//     holding a lock on its data directory (or a configuration file's
//     store_dir; ReadServerConfig says what a file sets); Embedded.Connect
//     connects in-process, with credentials when the configuration has
//     users; Connect dials an external server.
//
// Example:
//
//	emb, _ := natsstore.StartEmbedded(natsstore.EmbeddedOptions{Dir: "./data"})
//	nc, _ := emb.Connect()
//	log, _ := natsstore.OpenLog(ctx, nc, natsstore.Config{})
//	seq, err := log.Append(ctx, []events.Message{msg}) // errors.Is(err, events.ErrConflict)
package natsstore
