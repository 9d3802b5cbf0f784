// Package testutil starts real NATS JetStream servers inside a test process
// (a single server or a loopback cluster) and publishes raw bytes for
// bad-input tests. Servers use random loopback ports and t.TempDir()
// storage and are shut down in t.Cleanup.
//
//	srv := testutil.RunServer(t)
//	nc := testutil.Connect(t, srv.ClientURL())
//	seq := testutil.PublishRaw(t, nc, "agentreg."+root, []byte("garbage"), nil)
package testutil
