// Package daemon is agentd as a library: the registry daemon that owns the
// event stream, loads roots on first use and keeps them current through
// its runtime's follower of the stream, takes snapshots, and answers a NATS micro service API (agentd.*,
// JSON in and out) with /healthz and Prometheus /metrics over HTTP.
//
// cmd/agentd is a thin main over it. A service that wants the daemon with
// its own catalog (so that capabilities resolve to its Go functions) and an
// executor (which adds the task_invoke endpoint) runs it itself:
//
//	err := daemon.Run(ctx, daemon.Config{
//		DataDir:  "./data",           // embedded NATS; or Conn: natsstore.ConnectOptions{URL: ...}
//		Catalog:  cat,
//		Executor: agent.ExecutorFunc(modelLoop),
//		HTTPAddr: "127.0.0.1:8222",
//	}, func(d *daemon.Daemon) { log.Println("serving on", d.URL()) })
//
// Requests run concurrently on a bounded pool (Config.Workers, QueueSize;
// a full queue answers 503), each with a deadline from its arrival
// (Config.RequestTimeout, 504); pool.go says how. A read waiting for a
// min_seq the stream has not reached waits outside the pool (minseq.go). Statuses are decided in
// one place (codeOf, errors.go), after every field is checked (400 naming
// the field).
//
// Lifecycle: Start opens the store (retrying while a cluster elects a
// leader), starts the follower, then the API and HTTP; it reads nothing
// per root (roots are adopted from the log and loaded when first used).
// Close stops taking requests, waits for in-flight ones, stops the
// follower, drains the connection and shuts an embedded server down. Run
// does both around ctx.
package daemon
