package testutil

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RunServer starts a JetStream server in the test process on a random
// loopback port with file storage in t.TempDir(), and shuts it down in
// t.Cleanup.
func RunServer(t testing.TB) *server.Server {
	t.Helper()
	return RunServerWithOptions(t, ServerOptions(t.TempDir()))
}

// ServerOptions returns the options RunServer uses, for a test that wants
// to change one (or restart a server on the same store directory).
func ServerOptions(storeDir string) *server.Options {
	return &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  storeDir,
		NoLog:     true,
		NoSigs:    true,
	}
}

// RunServerWithOptions starts a server with opts and shuts it down in
// t.Cleanup. Server logs go to t.Log when opts.NoLog is false.
func RunServerWithOptions(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("testutil: new server: %v", err)
	}
	if !opts.NoLog {
		srv.SetLoggerV2(testLogger{t}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		t.Fatalf("testutil: server on %s not ready within 10s", srv.ClientURL())
	}
	remember(srv, opts)
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

// started holds, for each server these helpers started, its options with
// the ports it bound (a port of -1 picks a new one on every start), so
// that Restart brings it back where its clients and peers look for it.
var started sync.Map // *server.Server -> *server.Options

func remember(srv *server.Server, opts *server.Options) {
	o := opts.Clone()
	if a, ok := srv.Addr().(*net.TCPAddr); ok {
		o.Port = a.Port
	}
	if a := srv.ClusterAddr(); a != nil {
		o.Cluster.Port = a.Port
	}
	started.Store(srv, o)
}

// Restart shuts srv down (if it still runs) and starts a new server with
// the options srv was started with by RunServer, RunServerWithOptions or
// RunCluster: same name, store directory, client and cluster ports and
// routes, as a node that comes back after a crash or an upgrade. Clients
// that reconnect forever find it again. The new server is shut down in
// t.Cleanup and can itself be restarted.
func Restart(t testing.TB, srv *server.Server) *server.Server {
	t.Helper()
	o, ok := started.Load(srv)
	if !ok {
		t.Fatalf("testutil: Restart: server %s was not started by testutil", srv.Name())
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	return RunServerWithOptions(t, o.(*server.Options).Clone())
}

// Connect opens a client connection to srv, closed in t.Cleanup.
func Connect(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("testutil: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// RunCluster starts n JetStream servers clustered over loopback routes, each
// with its own store directory, and waits until the meta group has a leader
// that sees all n servers online with JetStream (before that, creating a
// replicated stream fails with "no suitable peers for placement").
func RunCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	servers := make([]*server.Server, n)
	srvOpts := make([]*server.Options, n)
	for i := range servers {
		opts := ServerOptions(t.TempDir())
		opts.ServerName = fmt.Sprintf("n%d", i+1)
		opts.Cluster = server.ClusterOpts{Name: "agentreg-test", Host: "127.0.0.1", Port: ports[i]}
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		srvOpts[i] = opts
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("testutil: new cluster server %d: %v", i+1, err)
		}
		srv.Start()
		servers[i] = srv
		t.Cleanup(func() {
			srv.Shutdown()
			srv.WaitForShutdown()
		})
	}
	for i, srv := range servers {
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatalf("testutil: cluster server %d not ready within 10s", i+1)
		}
		remember(srv, srvOpts[i])
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range servers {
			if s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == n {
				return servers
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("testutil: cluster of %d has no JetStream meta leader seeing every peer after 30s", n)
	return nil
}

// ClusterURL joins the client URLs of servers for nats.Connect.
func ClusterURL(servers []*server.Server) string {
	var urls []string
	for _, s := range servers {
		if s.Running() {
			urls = append(urls, s.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}

// PublishRaw publishes data (and optional headers) to subject through
// JetStream, bypassing the library, and returns the stream sequence: for
// tests that put bad input on the stream.
func PublishRaw(t testing.TB, nc *nats.Conn, subject string, data []byte, hdr nats.Header) uint64 {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("testutil: jetstream: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data, Header: hdr})
	if err != nil {
		t.Fatalf("testutil: publish raw to %s: %v", subject, err)
	}
	return ack.Sequence
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testutil: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type testLogger struct{ t testing.TB }

func (l testLogger) Noticef(format string, v ...any) { l.t.Logf("nats: "+format, v...) }
func (l testLogger) Warnf(format string, v ...any)   { l.t.Logf("nats WARN: "+format, v...) }
func (l testLogger) Fatalf(format string, v ...any)  { l.t.Logf("nats FATAL: "+format, v...) }
func (l testLogger) Errorf(format string, v ...any)  { l.t.Logf("nats ERROR: "+format, v...) }
func (l testLogger) Debugf(format string, v ...any)  { l.t.Logf("nats DEBUG: "+format, v...) }
func (l testLogger) Tracef(format string, v ...any)  { l.t.Logf("nats TRACE: "+format, v...) }
