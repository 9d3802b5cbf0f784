package natsstore

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ErrStoreLocked: another process (or another embedded server in this
// one) runs a server on the JetStream store directory.
var ErrStoreLocked = errors.New("store directory in use by another process")

// EmbeddedOptions configure an embedded NATS server.
type EmbeddedOptions struct {
	Dir  string // data directory; JetStream stores under it. Required.
	Host string // listen host; default 127.0.0.1. Not with ConfigFile
	Port int    // listen port; default -1 (a random free port). Not with ConfigFile
	// ConfigFile is a nats-server configuration file. It sets the listen
	// address (a file with no listen, host or net listens on 127.0.0.1,
	// not nats-server's 0.0.0.0; with no listen or port on 4222), and Dir
	// sets the store directory unless the file sets one (jetstream {
	// store_dir }).
	ConfigFile string
	NoListen   bool // accept in-process connections only (no TCP listener)
	Logger     server.Logger
}

// Embedded is a NATS server with JetStream running inside this process,
// holding an exclusive lock on the JetStream store directory it uses.
type Embedded struct {
	srv   *server.Server
	store string // the store directory (the server keeps its JetStream data in store/jetstream)
	// listenHost is the configured listen host ("" for all interfaces is
	// 0.0.0.0); host the one clients dial (127.0.0.1 for all interfaces).
	listenHost, host string
	lock             *os.File
	cleanup          func()
}

const lockName = "agentreg.lock"

// StartEmbedded starts a server on the data directory (or the store
// directory its configuration file names). The lock is taken on the
// JetStream store directory the server will really use, whatever set it:
// two servers writing one store would each acknowledge writes the other
// overwrites. If another process holds it, StartEmbedded fails with
// ErrStoreLocked and names the URL that process serves, so the caller can
// connect to it instead.
func StartEmbedded(o EmbeddedOptions) (*Embedded, error) {
	if o.Dir == "" {
		return nil, fmt.Errorf("embedded server: no data directory given")
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded server: data directory %s: %w", o.Dir, err)
	}
	var err error
	opts := &server.Options{}
	if o.ConfigFile != "" {
		if o.Host != "" || o.Port != 0 {
			return nil, fmt.Errorf("embedded server: config file %s sets the listen address; give no host or port with it", o.ConfigFile)
		}
		sc, err := ReadServerConfig(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("embedded server: %w", err)
		}
		opts, err = server.ProcessConfigFile(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("embedded server: config file %s: %w", o.ConfigFile, err)
		}
		if !sc.SetsHost {
			opts.Host = DefaultHost
		}
	} else {
		opts.Host = DefaultHost
		opts.Port = -1
		if o.Host != "" {
			opts.Host = o.Host
		}
		if o.Port != 0 {
			opts.Port = o.Port
		}
	}
	opts.JetStream = true
	opts.DontListen = o.NoListen
	if opts.StoreDir == "" {
		opts.StoreDir = o.Dir
	}
	if abs, err := filepath.Abs(opts.StoreDir); err == nil {
		opts.StoreDir = abs
	}
	if err := os.MkdirAll(opts.StoreDir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded server: store directory %s: %w", opts.StoreDir, err)
	}
	lock, err := lockDir(opts.StoreDir)
	if err != nil {
		return nil, err
	}
	opts.NoSigs = true
	if o.Logger == nil {
		opts.NoLog = true
	}
	if !opts.DontListen && opts.Port > 0 {
		// Say at once that the port is taken, rather than after the
		// server's readiness wait.
		addr := net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			lock.Close()
			return nil, fmt.Errorf("embedded server: cannot listen on %s (another server there? pick another port): %w", addr, err)
		}
		ln.Close()
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("embedded server: %w", err)
	}
	if o.Logger != nil {
		srv.SetLoggerV2(o.Logger, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		lock.Close()
		return nil, fmt.Errorf("embedded server on %s:%d: not ready after 30s (port in use?)", opts.Host, opts.Port)
	}
	url := srv.ClientURL()
	if o.NoListen {
		url = "in-process only"
	}
	if err := writeLockInfo(lock, url); err != nil {
		srv.Shutdown()
		lock.Close()
		return nil, err
	}
	listenHost := opts.Host
	if listenHost == "" {
		listenHost = "0.0.0.0"
	}
	host := listenHost
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = DefaultHost
	}
	return &Embedded{srv: srv, store: opts.StoreDir, lock: lock, listenHost: listenHost, host: host}, nil
}

// URL is the client URL the server listens on.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// ListenAddr is the address the server's client listener is bound to,
// host as configured (0.0.0.0 for all interfaces) and port as bound, ""
// without a listener.
func (e *Embedded) ListenAddr() string {
	a := e.srv.Addr()
	if a == nil {
		return ""
	}
	_, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return net.JoinHostPort(e.listenHost, port)
}

// Server returns the running server.
func (e *Embedded) Server() *server.Server { return e.srv }

// Connect opens an in-process client connection (no TCP) to the server,
// with credentials when its configuration requires them
// (ConnectOptions.NATSOptions: nats.UserInfo, nats.UserCredentials,
// nats.NkeyOptionFromSeed...). The connection is a client like any other:
// authenticated as, and limited to, the user it names. TLS is optional on
// it (nats-server offers it but does not require it in-process, even with
// verify: true); TLS options make it a TLS connection, which
// verify_and_map needs to map the client certificate to a user.
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(inProcess{e.srv}), nats.Name("agentreg")}, opts...)
	// A nats:// URL: the server's own is tls:// when it has TLS, which
	// would make the client start TLS (and verify the server against the
	// system's CAs) though no TLS option asked for it. TLS options name
	// the host the server's certificate must hold.
	url := "nats://" + net.JoinHostPort(e.host, "4222")
	if a := e.srv.Addr(); a != nil {
		if _, port, err := net.SplitHostPort(a.String()); err == nil {
			url = "nats://" + net.JoinHostPort(e.host, port)
		}
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
			return nil, fmt.Errorf("connect to embedded server: %w (its configuration requires authentication: give the credentials of a user it defines)", err)
		}
		return nil, fmt.Errorf("connect to embedded server: %w", err)
	}
	return nc, nil
}

// StoreDir is the store directory the server uses (its JetStream data is
// in StoreDir/jetstream), which this process holds locked: the data
// directory, unless the configuration file names another store_dir.
func (e *Embedded) StoreDir() string { return e.store }

// Close shuts the server down cleanly and releases the store directory.
func (e *Embedded) Close() error {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	_ = e.lock.Truncate(0)
	err := e.lock.Close()
	if e.cleanup != nil {
		e.cleanup()
	}
	return err
}

func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock store directory %s: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		info, _ := os.ReadFile(path)
		f.Close()
		holder := strings.TrimSpace(string(info))
		if holder == "" {
			holder = "another process (starting up)"
		}
		return nil, fmt.Errorf("%w: %s is held by %s; stop that process, or connect to the URL it serves (agent.WithNATSURL, --nats-url) instead of embedding",
			ErrStoreLocked, dir, holder)
	}
	return f, nil
}

func writeLockInfo(f *os.File, url string) error {
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("write lock file: %w", err)
	}
	if _, err := f.WriteAt([]byte(fmt.Sprintf("pid %d serving %s\n", os.Getpid(), url)), 0); err != nil {
		return fmt.Errorf("write lock file: %w", err)
	}
	return f.Sync()
}

// Connect dials an external NATS server or cluster (comma-separated URLs),
// reconnecting forever.
func Connect(url string, opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.Name("agentreg"), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// StartCopy starts an embedded server, with no listener, on a copy of the
// data directory dir made in a temporary directory: a read-only view of a
// stopped daemon's or demo's store that leaves the original untouched. It
// fails with ErrStoreLocked if a running process holds dir. The returned
// Embedded's Close removes the copy.
func StartCopy(dir string) (*Embedded, error) {
	if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
		return nil, fmt.Errorf("data directory %s holds no JetStream store (no jetstream/ folder): %w", dir, err)
	}
	// Check the lock without creating a lock file: the directory is only read.
	lock, err := os.Open(filepath.Join(dir, lockName))
	switch {
	case errors.Is(err, os.ErrNotExist):
		// No process ever ran an embedded server here with a lock: nothing holds it.
	case err != nil:
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	default:
		defer lock.Close() // held only while copying
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
			info, _ := os.ReadFile(filepath.Join(dir, lockName))
			return nil, fmt.Errorf("%w: %s is held by %s; stop that process, or connect to the URL it serves instead",
				ErrStoreLocked, dir, strings.TrimSpace(string(info)))
		}
	}
	tmp, err := os.MkdirTemp("", "agentreg-copy-")
	if err != nil {
		return nil, fmt.Errorf("copy data directory: %w", err)
	}
	if err := os.CopyFS(tmp, os.DirFS(dir)); err != nil {
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("copy data directory %s: %w", dir, err)
	}
	_ = os.Remove(filepath.Join(tmp, lockName))
	e, err := StartEmbedded(EmbeddedOptions{Dir: tmp, NoListen: true})
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	e.cleanup = func() { os.RemoveAll(tmp) }
	return e, nil
}
