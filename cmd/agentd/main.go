// Command agentd is the agentreg registry daemon: it owns the event stream,
// keeps every active root's registry hot, takes snapshots, and answers a
// NATS micro service API (agentd.*). With no flags it runs an
// embedded NATS server with JetStream on 127.0.0.1:4222, storing in ./data.
//
// agentd is a thin main over package daemon, which a service imports to
// run the daemon with its own catalog and executor.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/natsstore"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "agentd:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// envInt reads a whole number from the environment variable name, def
// when it is unset; a value that is not one is recorded in bad (agentd
// refuses to start with it rather than use the default unsaid).
func envInt(name string, def int, bad *[]string) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		*bad = append(*bad, fmt.Sprintf("%s=%q is not a whole number", name, v))
		return def
	}
	return n
}

// Run parses flags, starts the daemon and serves until ctx ends.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg daemon.Config
	var badEnv []string // environment values that do not parse
	fs := flag.NewFlagSet("agentd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: agentd [flags]\n\nRuns the agentreg registry daemon. With no flags: an embedded NATS server on 127.0.0.1:4222, data in ./data.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.DataDir, "data", env("AGENTD_DATA", "./data"), "data directory of the embedded server; not with a --nats-config that sets store_dir (env AGENTD_DATA)")
	fs.StringVar(&cfg.Host, "host", env("AGENTD_HOST", "127.0.0.1"), "embedded server: listen host; not with --nats-config (env AGENTD_HOST)")
	fs.IntVar(&cfg.Port, "port", envInt("AGENTD_PORT", 4222, &badEnv), "embedded server: client port, -1 for a free one; not with --nats-config (env AGENTD_PORT)")
	fs.StringVar(&cfg.NATSConfig, "nats-config", env("AGENTD_NATS_CONFIG", ""), "embedded server: a nats-server configuration file (cluster, accounts, TLS, auth); it sets the listen address (127.0.0.1:4222 if it has no listen) and, with store_dir, the store directory (env AGENTD_NATS_CONFIG)")
	fs.StringVar(&cfg.Conn.URL, "nats-url", os.Getenv("NATS_URL"), "connect to this NATS server or cluster instead of embedding one (env NATS_URL)")
	// Credentials and TLS options serve the embedded server's in-process
	// connection and an external server alike; their environment
	// variables are those of the nats CLI.
	fs.StringVar(&cfg.Conn.User, "user", os.Getenv("NATS_USER"), "NATS user agentd connects as, to the embedded server (a --nats-config with users) or an external one (env NATS_USER)")
	fs.StringVar(&cfg.Conn.Password, "password", os.Getenv("NATS_PASSWORD"), "the user's password (env NATS_PASSWORD)")
	fs.StringVar(&cfg.Conn.CredsFile, "creds", os.Getenv("NATS_CREDS"), "a .creds file (user JWT and seed) to connect with (env NATS_CREDS)")
	fs.StringVar(&cfg.Conn.NKeySeed, "nkey", os.Getenv("NATS_NKEY"), "a file holding the nkey seed of the user to connect as (env NATS_NKEY)")
	fs.StringVar(&cfg.Conn.Token, "token", os.Getenv("NATS_TOKEN"), "an authentication token (env NATS_TOKEN)")
	fs.StringVar(&cfg.Conn.TLSCA, "tls-ca", os.Getenv("NATS_CA"), "CA certificate that verifies the server (env NATS_CA)")
	fs.StringVar(&cfg.Conn.TLSCert, "tls-cert", os.Getenv("NATS_CERT"), "client certificate (env NATS_CERT); with the embedded server it makes the in-process connection TLS (verify_and_map)")
	fs.StringVar(&cfg.Conn.TLSKey, "tls-key", os.Getenv("NATS_KEY"), "client key (env NATS_KEY)")
	fs.IntVar(&cfg.Stream.Replicas, "replicas", envInt("AGENTD_REPLICAS", 1, &badEnv), "stream and bucket replicas: 3 on a cluster (env AGENTD_REPLICAS)")
	fs.StringVar(&cfg.Stream.Stream, "stream", "AGENTREG", "stream name")
	fs.StringVar(&cfg.Stream.Prefix, "prefix", "agentreg", "subject prefix of the events")
	fs.StringVar(&cfg.APIPrefix, "api-prefix", "agentd", "subject prefix of the API (outside the event prefix)")
	fs.StringVar(&cfg.HTTPAddr, "http", env("AGENTD_HTTP", ""), "serve /healthz and /metrics on this address, e.g. 127.0.0.1:8222 (env AGENTD_HTTP)")
	fs.IntVar(&cfg.MaxLoadedRoots, "max-loaded-roots", envInt("AGENTD_MAX_LOADED_ROOTS", 10_000, &badEnv), "registries kept in memory; the least recently used beyond it are reloaded when needed (env AGENTD_MAX_LOADED_ROOTS)")
	fs.IntVar(&cfg.Workers, "workers", envInt("AGENTD_WORKERS", 64, &badEnv), "API requests handled at once; more wait in a queue of 16 per worker, beyond it they are answered 503 (env AGENTD_WORKERS)")
	fs.IntVar(&cfg.MinSeqWaiters, "min-seq-waiters", envInt("AGENTD_MIN_SEQ_WAITERS", 0, &badEnv), "reads waiting for a min_seq the follower has not reached, held outside the workers; beyond it the one waiting for the furthest sequence is answered 503 (0: the queue size; env AGENTD_MIN_SEQ_WAITERS)")
	snapEvery := fs.Uint64("snapshot-every", 1000, "take a snapshot of a root after this many of its events")
	seedFile := fs.String("signing-seed", "", "file holding an nkeys seed: agentd signs every event it writes (or the seed itself in env AGENTREG_SIGNING_SEED)")
	signersFile := fs.String("signers", env("AGENTREG_SIGNERS_FILE", ""), "file of trusted signers' nkey public keys, one a line: events not signed by one are violations, not applied (env AGENTREG_SIGNERS_FILE)")
	fs.StringVar(&cfg.Identity, "identity", env("AGENTD_IDENTITY", "agentd"), "the actor recorded for writes whose caller the NATS server does not name; a request's \"actor\" is recorded only as a claimed on-behalf-of (env AGENTD_IDENTITY)")
	callerAccounts := fs.String("caller-accounts", env("AGENTD_CALLER_ACCOUNTS", ""), "comma-separated NATS accounts (\"*\": any) whose requests through a service import of the API are recorded with actor nats:<account>/<user>, from the Nats-Request-Info header the server sets (share: true adds the user); docs/permissions.md, \"Who asked\" (env AGENTD_CALLER_ACCOUNTS)")
	logFormat := fs.String("log-format", env("AGENTD_LOG_FORMAT", "text"), "text or json (env AGENTD_LOG_FORMAT)")
	logLevel := fs.String("log-level", env("AGENTD_LOG_LEVEL", "info"), "debug, info, warn or error (env AGENTD_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%v\nhint: run 'agentd --help': %w", err, errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q\nhint: run 'agentd --help': %w", fs.Arg(0), errUsage)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.Conn.URL != "" && !set["nats-url"] {
		// Exported for the nats CLI, it also decides where agentd stores:
		// say so, rather than connect somewhere the user did not name.
		fmt.Fprintf(stderr, "agentd: NATS_URL=%s in the environment: connecting to that server, embedding none (unset NATS_URL to embed one)\n", cfg.Conn.URL)
	}
	if len(badEnv) > 0 {
		return fmt.Errorf("%s\nhint: run 'agentd --help': %w", strings.Join(badEnv, "; "), errUsage)
	}
	for _, c := range []struct {
		name string
		v    int
		min  int
	}{{"workers", cfg.Workers, 1}, {"max-loaded-roots", cfg.MaxLoadedRoots, 1}, {"min-seq-waiters", cfg.MinSeqWaiters, 0}} {
		if c.v < c.min {
			return fmt.Errorf("--%s %d: must be at least %d\nhint: run 'agentd --help': %w", c.name, c.v, c.min, errUsage)
		}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error: %w", *logLevel, errUsage)
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch *logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		return fmt.Errorf("--log-format %q: want text or json: %w", *logFormat, errUsage)
	}
	if cfg.Stream.Replicas < 1 || cfg.Stream.Replicas > 5 {
		return fmt.Errorf("--replicas %d: want 1..5: %w", cfg.Stream.Replicas, errUsage)
	}
	cfg.SnapshotEvery = *snapEvery
	switch {
	case *seedFile != "":
		b, err := os.ReadFile(*seedFile)
		if err != nil {
			return fmt.Errorf("--signing-seed: %v: %w", err, errUsage)
		}
		cfg.SigningSeed = bytes.TrimSpace(b)
	case os.Getenv("AGENTREG_SIGNING_SEED") != "":
		cfg.SigningSeed = []byte(strings.TrimSpace(os.Getenv("AGENTREG_SIGNING_SEED")))
	}
	for _, a := range strings.Split(*callerAccounts, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.CallerAccounts = append(cfg.CallerAccounts, a)
		}
	}
	if *signersFile != "" {
		keys, err := agent.SignersFromFile(*signersFile)
		if err != nil {
			return fmt.Errorf("--signers: %v: %w", err, errUsage)
		}
		cfg.TrustedSigners = keys
	}
	if err := checkOverrides(fs, cfg); err != nil {
		return err
	}
	return daemon.Run(ctx, cfg, func(d *daemon.Daemon) {
		where := "embedded NATS listening on " + d.ListenAddr() + " (" + d.URL() + "), store in " + d.StoreDir()
		if cfg.Conn.URL != "" {
			where = "NATS at " + cfg.Conn.URL + " (external)"
		}
		if a := d.HTTPAddr(); a != "" {
			where += ", HTTP on " + a
		}
		fmt.Fprintf(stdout, "agentd: serving %s.* on %s\n", d.APIPrefix(), where)
	})
}

// checkOverrides refuses the flags a setting elsewhere would override,
// rather than ignore them: with --nats-config the file sets the listen
// address (so --host and --port), and a file that sets a JetStream
// store_dir sets where the data is (so --data); with --nats-url nothing is
// embedded. A flag counts as given when set on the command line or
// through its environment variable.
func checkOverrides(fs *flag.FlagSet, cfg daemon.Config) error {
	given := map[string]string{} // flag -> how it was given
	fs.Visit(func(f *flag.Flag) { given[f.Name] = "--" + f.Name + " " + f.Value.String() })
	for name, envName := range map[string]string{"host": "AGENTD_HOST", "port": "AGENTD_PORT", "data": "AGENTD_DATA", "nats-config": "AGENTD_NATS_CONFIG"} {
		if _, ok := given[name]; !ok && os.Getenv(envName) != "" {
			given[name] = envName + "=" + os.Getenv(envName)
		}
	}
	if cfg.Conn.URL != "" {
		external := "NATS_URL=" + cfg.Conn.URL + " in the environment (the nats CLI's variable too)"
		if _, ok := given["nats-url"]; ok {
			external = "--nats-url " + cfg.Conn.URL
		}
		for _, name := range []string{"host", "port", "data", "nats-config"} {
			if how, ok := given[name]; ok {
				return fmt.Errorf("%s: with %s agentd connects to that server and embeds none; drop %s, or the URL\nhint: run 'agentd --help': %w", how, external, how, errUsage)
			}
		}
		return nil
	}
	if cfg.NATSConfig == "" {
		return nil
	}
	sc, err := natsstore.ReadServerConfig(cfg.NATSConfig)
	if err != nil {
		return fmt.Errorf("--nats-config: %w", err)
	}
	for _, name := range []string{"host", "port"} {
		how, ok := given[name]
		if !ok {
			continue
		}
		if sc.SetsHost || sc.SetsPort {
			return fmt.Errorf("%s: the --nats-config file %s sets the listen address (listen/host/port: %s); change it there, or drop %s\nhint: run 'agentd --help': %w",
				how, cfg.NATSConfig, sc.Listen, how, errUsage)
		}
		return fmt.Errorf("%s: with --nats-config the file %s sets the listen address; it has no listen, so the server listens on %s: add listen: <host>:<port> to it, or drop %s\nhint: run 'agentd --help': %w",
			how, cfg.NATSConfig, sc.Listen, how, errUsage)
	}
	if how, ok := given["data"]; ok && sc.StoreDir != "" {
		return fmt.Errorf("%s: the --nats-config file %s sets the store directory (jetstream store_dir: %s); change it there, or drop %s\nhint: run 'agentd --help': %w",
			how, cfg.NATSConfig, sc.StoreDir, how, errUsage)
	}
	return nil
}
