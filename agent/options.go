package agent

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
	"github.com/agentreg/agentreg/snapshot"
)

// Option configures Open. Each returns an error for a bad value.
type Option func(*config) error

type config struct {
	url       string
	dataDir   string
	store     natsstore.Config
	catalog   *Catalog
	executor  Executor
	actor     string
	snapEvery uint64
	maxRoots  int
	signer    events.Signer
	logger    *slog.Logger
	now       clock
	log       Log
	snaps     snapshot.Store
	adopt     bool
	onFollow  func(seq, pending uint64)
	onSnap    func(root string, seq uint64, err error)
	noFollow  bool
	trust     *projector.Trust
}

func defaultConfig() config {
	return config{
		dataDir:   "agentreg-data",
		store:     natsstore.Config{Prefix: "agentreg"},
		catalog:   NewCatalog(),
		actor:     "anonymous",
		snapEvery: 1000,
		logger:    slog.Default(),
		now:       time.Now,
	}
}

// WithNATSURL connects to an external NATS server or cluster
// (comma-separated URLs) instead of starting an embedded one.
func WithNATSURL(url string) Option {
	return func(c *config) error {
		if url == "" {
			return fmt.Errorf("WithNATSURL: empty URL")
		}
		c.url = url
		return nil
	}
}

// WithDataDir sets the embedded server's data directory.
func WithDataDir(dir string) Option {
	return func(c *config) error {
		if dir == "" {
			return fmt.Errorf("WithDataDir: empty directory")
		}
		c.dataDir = dir
		return nil
	}
}

// WithReplicas sets the replica count of the stream and buckets (3 on a
// cluster).
func WithReplicas(n int) Option {
	return func(c *config) error {
		if n < 1 || n > 5 {
			return fmt.Errorf("WithReplicas: %d is not in 1..5", n)
		}
		c.store.Replicas = n
		return nil
	}
}

// WithStream sets the stream's configuration (names, prefix, limits).
func WithStream(cfg natsstore.Config) Option {
	return func(c *config) error {
		if cfg.Prefix == "" {
			cfg.Prefix = "agentreg"
		}
		c.store = cfg
		return nil
	}
}

// WithCatalog sets what this process offers agents.
func WithCatalog(cat *Catalog) Option {
	return func(c *config) error {
		if cat == nil {
			return fmt.Errorf("WithCatalog: nil catalog")
		}
		c.catalog = cat
		return nil
	}
}

// WithExecutor sets the executor that runs task calls (the model loop).
func WithExecutor(e Executor) Option {
	return func(c *config) error {
		c.executor = e
		return nil
	}
}

// WithDefaultActor sets the principal recorded on writes whose context
// carries none (see WithActor). Default "anonymous".
func WithDefaultActor(principal string) Option {
	return func(c *config) error {
		if principal == "" {
			return fmt.Errorf("WithDefaultActor: empty principal")
		}
		c.actor = principal
		return nil
	}
}

// WithSnapshotEvery takes a snapshot of a root after every n folded events
// (0 turns automatic snapshots off). Default 1000.
func WithSnapshotEvery(n uint64) Option {
	return func(c *config) error {
		c.snapEvery = n
		return nil
	}
}

// WithSigningSeed signs every event this runtime appends with the ed25519
// key of an nkeys seed (for instance a user seed, "SU..."): the event carries
// the public key and the signature, which `replay audit` verifies.
func WithSigningSeed(seed []byte) Option {
	return func(c *config) error {
		kp, err := nkeys.FromSeed(seed)
		if err != nil {
			return fmt.Errorf("WithSigningSeed: not an nkeys seed: %w", err)
		}
		c.signer = kp
		return nil
	}
}

// WithMaxLoadedRoots bounds how many roots' registries stay in memory;
// the least recently used beyond n are dropped and reloaded (snapshot plus
// tail) when next used. 0, the default, keeps every registry loaded.
func WithMaxLoadedRoots(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("WithMaxLoadedRoots: %d is negative", n)
		}
		c.maxRoots = n
		return nil
	}
}

// WithLogger sets the logger; default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("WithLogger: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithClock sets the clock that stamps events (tests).
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("WithClock: nil clock")
		}
		c.now = now
		return nil
	}
}

// WithLog uses an already opened log and snapshot store instead of opening
// a connection (the caller owns and closes them).
func WithLog(l Log, s snapshot.Store) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("WithLog: nil log")
		}
		c.log, c.snaps = l, s
		return nil
	}
}

// WithAdoptRoots lets the runtime serve roots it did not register in code:
// the first use of such a root (a resolve, a read, a write) reads the root
// definition recorded on the root's own subject and registers it, with
// capabilities checked against the catalog as RegisterRoot does. agentd
// uses it (with a symbolic catalog) so that it loads roots lazily instead
// of registering every root in the log at start-up.
func WithAdoptRoots() Option {
	return func(c *config) error {
		c.adopt = true
		return nil
	}
}

// WithFollowHook calls fn for every record the runtime's follower
// receives, with its stream sequence and the messages still pending after
// it (agentd's metrics). fn must return quickly.
func WithFollowHook(fn func(seq, pending uint64)) Option {
	return func(c *config) error {
		c.onFollow = fn
		return nil
	}
}

// WithSnapshotHook calls fn after each background snapshot (the policy of
// WithSnapshotEvery) with the root, the sequence it covers and the error
// if it failed (agentd's metrics). fn must return quickly.
func WithSnapshotHook(fn func(root string, seq uint64, err error)) Option {
	return func(c *config) error {
		c.onSnap = fn
		return nil
	}
}

// WithFollow(false) makes a runtime that never follows the log: it
// creates no consumer and keeps no root loaded for writes. Each write
// reads the written agent's ancestor chain (the root's subject, each
// ancestor's and the agent's own: literal subjects), checks, appends, and
// reads the chain again to confirm its event was applied: three round
// trips, whose cost follows the chain and not the root. Resolves read the
// chain too; View and StateHash read the root's new events up to the
// stream's last sequence each time. Automatic snapshots then come only
// from roots read whole (View), not from writes. For short-lived processes, and for a
// service whose NATS user may create consumers only on its own roots
// (docs/permissions.md). Default true: follow, and write to loaded roots
// in one round trip.
func WithFollow(follow bool) Option {
	return func(c *config) error {
		c.noFollow = !follow
		return nil
	}
}

// WithTrustedSigners gives every registry of the runtime a trust policy:
// only events signed (over their stored bytes) by one of keys, nkey public
// keys, are applied; an unsigned event, a bad signature or another signer
// is a violation. Writes of this runtime must then be signed by a trusted
// key (WithSigningSeed), or the fold refuses them. Default: no policy,
// signatures are only audited (replay audit --signers).
func WithTrustedSigners(keys ...string) Option {
	return func(c *config) error {
		t, err := projector.NewTrust(keys)
		if err != nil {
			return fmt.Errorf("WithTrustedSigners: %w", err)
		}
		c.trust = t
		return nil
	}
}

// SignersFromFile reads a file of trusted signers for WithTrustedSigners
// (projector.ParseSigners: one nkey public key a line, # comments).
func SignersFromFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signers file: %w", err)
	}
	keys, err := projector.ParseSigners(string(b))
	if err != nil {
		return nil, fmt.Errorf("signers file %s: %w", path, err)
	}
	return keys, nil
}
