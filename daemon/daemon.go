package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/internal/inspect"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
)

// Log keys, in one place.
const (
	keyEndpoint = "endpoint"
	keyCode     = "code"
	keyErr      = "err"
	keyRoot     = "root"
	keyRootName = "root_name"
	keyURL      = "url"
	keyDir      = "data"
)

// Version is the API version the micro service announces.
const Version = "1.0.0"

// Config configures a daemon. The zero value of each field takes the
// default shown.
type Config struct {
	// Embedded server (used when Conn.URL is empty).
	DataDir    string // default "./data"
	Host       string // default 127.0.0.1
	Port       int    // default 4222; -1 picks a free port
	NATSConfig string // a nats-server configuration file (cluster routes, accounts, TLS, auth); it sets the listen address, so Host and Port are ignored with it

	// Conn: an external server or cluster when Conn.URL is set; without
	// it, the credentials (and TLS options) of the embedded server's
	// in-process connection.
	Conn   natsstore.ConnectOptions
	Stream natsstore.Config // stream and bucket names, replicas, limits

	APIPrefix      string         // API subjects <APIPrefix>.<endpoint>; default "agentd"; must lie outside the stream's subjects
	HTTPAddr       string         // /healthz and /metrics; "" serves no HTTP
	Catalog        *agent.Catalog // nil: capabilities stay symbolic (recipes only)
	Executor       agent.Executor // non-nil serves the task_invoke endpoint
	SnapshotEvery  uint64         // default 1000
	MaxLoadedRoots int            // registries kept in memory, least recently used dropped; default 10000
	RequestTimeout time.Duration  // default 10s
	SigningSeed    []byte         // an nkeys seed: agentd signs every event it writes
	TrustedSigners []string       // nkey public keys: a trust policy for every registry (agent.WithTrustedSigners)
	// Identity is the actor agentd records for a write whose caller the
	// NATS server does not name (see CallerAccounts); default "agentd".
	// A request's `actor` is recorded only as the event's claimed
	// on-behalf-of (wire key `obo`), whoever the caller is.
	Identity string
	// CallerAccounts are the NATS accounts whose callers agentd names: a
	// request that crossed a service import of the API (its reply subject
	// is the `_R_.` one the server substituted, which nats-server refuses
	// from any client connection) carries the Nats-Request-Info header the
	// server set, replacing the caller's; if it names one of these
	// accounts ("*": any), the actor is "nats:<account>/<user>" (the
	// import's `share: true` adds the user; without it
	// "nats:<account>"). Empty: the header is ignored. What remains
	// trusted: the cluster's servers and any leafnode connection bound to
	// agentd's account (docs/permissions.md, "Who asked").
	CallerAccounts []string
	Logger         *slog.Logger // default slog.Default()

	// Workers run API requests concurrently (agentd --workers); default
	// 64. QueueSize requests wait for a worker before more are answered
	// 503; default 16 per worker. The health probe runs outside the pool.
	Workers   int
	QueueSize int
	// MinSeqWaiters reads may wait, outside the pool, for the follower
	// to reach their min_seq (minseq.go) before more are answered 503;
	// default QueueSize.
	MinSeqWaiters int
	// MetricsTopRoots > 0 adds per-root series (label root and name) for
	// that many loaded roots with the most events; default 0: no root
	// label, every metric's label set bounded.
	MetricsTopRoots int
	// The follower is reported stalled (WARN, agentreg_follower_stalled)
	// when it lags the stream's last sequence by more than
	// FollowerLagThreshold messages (default 10000; 1 means any lag) for
	// longer than FollowerLagFor (default 30s), checked every
	// FollowerCheck (default 5s).
	FollowerLagThreshold uint64
	FollowerLagFor       time.Duration
	FollowerCheck        time.Duration
}

func (c Config) withDefaults() Config {
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if c.Host == "" {
		c.Host = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = 4222
	}
	if c.Stream.Prefix == "" {
		c.Stream.Prefix = "agentreg"
	}
	if c.APIPrefix == "" {
		c.APIPrefix = "agentd"
	}
	if c.MaxLoadedRoots == 0 {
		c.MaxLoadedRoots = 10_000
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 1000
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 10 * time.Second
	}
	if c.Identity == "" {
		c.Identity = "agentd"
	}
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 16 * c.Workers
	}
	if c.MinSeqWaiters <= 0 {
		c.MinSeqWaiters = c.QueueSize
	}
	if c.FollowerLagThreshold == 0 {
		c.FollowerLagThreshold = 10_000
	}
	if c.FollowerLagFor == 0 {
		c.FollowerLagFor = 30 * time.Second
	}
	if c.FollowerCheck == 0 {
		c.FollowerCheck = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Stream.Logger == nil {
		c.Stream.Logger = c.Logger.With("component", "agentd")
	}
	if c.Catalog == nil {
		c.Catalog = agent.SymbolicCatalog()
	}
	return c
}

// Daemon owns the stream, keeps the registries of active roots hot by
// following the stream, takes snapshots, and answers the API over NATS.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
	emb     *natsstore.Embedded
	nc      *nats.Conn
	store   *natsstore.Log
	rt      *agent.Runtime
	svc     micro.Service
	http    *http.Server
	httpLn  net.Listener
	metrics *metrics
	pool    *pool
	waiting *waiters // reads waiting for their min_seq
	wg      sync.WaitGroup
	errc    chan error

	gate     sync.Mutex     // guards closing and inflight.Add
	closing  bool           // Close has begun: handlers refuse new work
	inflight sync.WaitGroup // API handlers running

	denied atomic.Pointer[error] // the last permissions violation the server reported

	lastFollowed atomic.Uint64     // the follower's last sequence
	violLogged   map[string]uint64 // root -> the newest violation's sequence logged; watchViolations only
}

// Start starts a daemon: the embedded server (or a connection), the stream
// and buckets, the runtime and its follower of the stream, the API and the
// HTTP endpoints. It reads nothing per root: roots load on first use.
// Close stops it.
func Start(ctx context.Context, cfg Config) (*Daemon, error) {
	cfg = cfg.withDefaults()
	if cfg.APIPrefix == cfg.Stream.Prefix || strings.HasPrefix(cfg.APIPrefix, cfg.Stream.Prefix+".") {
		return nil, fmt.Errorf("API prefix %q lies under the event prefix %q: the stream would capture API requests; pick another", cfg.APIPrefix, cfg.Stream.Prefix)
	}
	d := &Daemon{cfg: cfg, log: cfg.Logger.With("component", "agentd"), metrics: newMetrics(), errc: make(chan error, 4),
		pool: newPool(cfg.Workers, cfg.QueueSize), waiting: &waiters{max: cfg.MinSeqWaiters}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	var err error
	if cfg.Conn.URL == "" {
		eo := natsstore.EmbeddedOptions{Dir: cfg.DataDir, Host: cfg.Host, Port: cfg.Port}
		if cfg.NATSConfig != "" {
			eo = natsstore.EmbeddedOptions{Dir: cfg.DataDir, ConfigFile: cfg.NATSConfig}
		}
		d.emb, err = natsstore.StartEmbedded(eo)
		if err != nil {
			return nil, err
		}
		// In-process, with the credentials given (a configuration with
		// accounts and users admits no one without them).
		var copts []nats.Option
		copts, err = cfg.Conn.NATSOptions()
		if err != nil {
			return nil, err
		}
		d.nc, err = d.emb.Connect(append(copts, nats.MaxReconnects(-1), nats.ErrorHandler(d.asyncError))...)
	} else {
		d.nc, err = cfg.Conn.Dial(nats.ErrorHandler(d.asyncError))
	}
	if err != nil {
		return nil, err
	}
	d.watchConnection()
	snaps, err := d.openStore(ctx)
	if err != nil {
		return nil, err
	}
	opts := []agent.Option{agent.WithLog(observedLog{d.store, d.metrics.appendConflicts.Inc}, snaps), agent.WithSnapshotHook(d.snapshotted), agent.WithCatalog(cfg.Catalog), agent.WithLogger(cfg.Logger),
		agent.WithSnapshotEvery(cfg.SnapshotEvery), agent.WithDefaultActor("agentd"), agent.WithMaxLoadedRoots(cfg.MaxLoadedRoots),
		agent.WithAdoptRoots(), agent.WithFollowHook(func(seq, pending uint64) {
			d.metrics.eventsSeen.Inc()
			d.metrics.lag.Set(float64(pending))
			d.followed(seq)
			d.releaseWaiters(seq)
		})}
	if cfg.Executor != nil {
		opts = append(opts, agent.WithExecutor(cfg.Executor))
	}
	if len(cfg.SigningSeed) > 0 {
		opts = append(opts, agent.WithSigningSeed(cfg.SigningSeed))
	}
	if len(cfg.TrustedSigners) > 0 {
		opts = append(opts, agent.WithTrustedSigners(cfg.TrustedSigners...))
	}
	d.rt, err = agent.Open(ctx, opts...)
	if err != nil {
		return nil, err
	}
	// Roots load lazily, on first use (snapshot plus tail), and stay
	// current through the runtime's one follower of the stream: start-up
	// reads nothing per root.
	if err := d.rt.StartFollowing(ctx); err != nil {
		return nil, err
	}
	d.releaseWaiters(d.rt.FollowPosition()) // where it started: the hook tells only what follows
	d.pool.start(d.ctx, &d.wg)
	if err := d.startService(); err != nil {
		return nil, err
	}
	// The endpoints' subscriptions reach the server asynchronously: flush,
	// so that a client asking right after Start returns finds a responder.
	if err := d.nc.FlushTimeout(cfg.RequestTimeout); err != nil {
		return nil, fmt.Errorf("start API service: flush subscriptions: %w", err)
	}
	if cfg.HTTPAddr != "" {
		if err := d.startHTTP(); err != nil {
			return nil, err
		}
	}
	d.wg.Add(2)
	go d.watchViolations()
	go d.watchFollower()
	ok = true
	return d, nil
}

// followed sees every sequence the runtime's follower receives, in stream
// order, and logs at WARN each gap: stream sequences the follower never
// got are messages deleted from the stream (or purged), which silently
// change what a registry says at its next load and break the hash chain of
// every later event of that agent. The first sequence followed has no
// predecessor to compare with (the follower starts near the stream's end).
func (d *Daemon) followed(seq uint64) {
	last := d.lastFollowed.Load()
	if seq > last {
		d.lastFollowed.Store(seq)
	}
	if last == 0 || seq <= last+1 {
		return
	}
	d.metrics.gaps.Add(float64(seq - last - 1))
	d.log.Warn("stream sequences missing: deleted or purged messages", "stream", d.store.Config().Stream,
		"seq", last+1, "through_seq", seq-1, "count", seq-last-1, "next_seq", seq)
}

// violationPoll is how often the daemon looks for new violations in the
// loaded registries.
var violationPoll = 500 * time.Millisecond

// watchViolations logs at WARN, once each, every violation the fold of a
// loaded root records: an event stored but not applied (forged, malformed,
// an escalation, a broken hash chain), with its sequence. The runtime
// reports each root's violation count (Runtime.Stats); when it grows, the
// root's registry is read for the new ones (those past the newest already
// logged), without waiting for the stream.
func (d *Daemon) watchViolations() {
	defer d.wg.Done()
	d.violLogged = map[string]uint64{}
	counts := map[string]int{}
	t := time.NewTicker(violationPoll)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range d.rt.Stats() {
			if s.Violations == counts[string(s.Root)] {
				continue
			}
			counts[string(s.Root)] = s.Violations
			d.logViolations(string(s.Root), s.Seq)
		}
	}
}

func (d *Daemon) logViolations(root string, seq uint64) {
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.RequestTimeout)
	defer cancel()
	err := inspect.View(agent.WithMinSeq(ctx, seq), d.rt, string(agent.RootID(root)), func(reg *projector.Registry) error {
		after := d.violLogged[root]
		name := "" // a root whose registration was refused has none
		if reg.Def != nil {
			name = reg.Def.Name
		}
		for _, v := range reg.Violations {
			if v.Seq <= after {
				continue
			}
			d.log.Warn("event not applied: violation", keyRoot, root, keyRootName, name, "seq", v.Seq, "subject", v.Subject, "path", v.Path,
				"type", v.Type, "id", v.EventID, keyCode, v.Code, "reason", v.Reason)
			d.metrics.violationsLogged.Inc()
			d.violLogged[root] = max(d.violLogged[root], v.Seq)
		}
		return nil
	})
	if err != nil && d.ctx.Err() == nil {
		d.log.Warn("read violations", keyRoot, root, keyErr, err)
	}
}

// openStore opens (or creates) the stream and the snapshot buckets. It
// retries with backoff, until ctx ends, while JetStream cannot answer yet:
// a clustered server answers the JetStream API only once the cluster has
// elected a meta leader, and a replicated stream needs its peers, so the
// nodes of a cluster started together would otherwise exit at once (their
// first request goes unanswered). Other errors (an existing stream with
// settings the log cannot use, replicas on a single server) fail at once.
func (d *Daemon) openStore(ctx context.Context) (*natsstore.Snapshots, error) {
	// A request JetStream drops while it has no leader is never answered,
	// and a creation answered only once the new asset has a leader may
	// outlast an attempt (the next attempt finds it made): keep attempts
	// short (1 s three times, then 2 s three times, ...) so that the first
	// one after the cluster is ready comes soon.
	backoff := 100 * time.Millisecond
	maxAttempt := min(d.cfg.Stream.Timeout, 5*time.Second)
	if maxAttempt <= 0 {
		maxAttempt = 5 * time.Second
	}
	for try := 1; ; try++ {
		attempt := min(time.Second<<min((try-1)/3, 3), maxAttempt)
		actx, cancel := context.WithTimeout(ctx, attempt)
		store, err := natsstore.OpenLog(actx, d.nc, d.cfg.Stream)
		var snaps *natsstore.Snapshots
		if err == nil {
			snaps, err = natsstore.OpenSnapshots(actx, store)
		}
		cancel()
		if err == nil {
			d.store = store
			return snaps, nil
		}
		if denied := d.denied.Load(); denied != nil {
			// A request the server refused to route is never answered: it
			// looks like a JetStream that is not ready, but waiting is futile.
			return nil, fmt.Errorf("open stream %s: %w; the NATS user lacks a permission agentd needs (docs/permissions.md lists them)", d.cfg.Stream.Stream, *denied)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("open stream %s: %w (last error: %v)", d.cfg.Stream.Stream, ctx.Err(), err)
		}
		if !jetStreamNotReady(err) {
			return nil, err
		}
		d.log.Warn("JetStream not ready (cluster forming?); retrying", "attempt", try, "in", backoff, keyErr, err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("open stream %s: %w (last error: %v)", d.cfg.Stream.Stream, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// jetStreamNotReady reports whether err is one JetStream gives while it
// starts or while its cluster forms: no answer, no responders, or an API
// error saying the cluster or its peers are not available yet.
func jetStreamNotReady(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var jsErr jetstream.JetStreamError
	if errors.As(err, &jsErr) && jsErr.APIError() != nil {
		switch api := jsErr.APIError(); {
		case api.Code == 503: // not enabled yet, cluster unavailable, insufficient resources, incomplete results
			return true
		case api.ErrorCode == 10005, api.ErrorCode == 10009, api.ErrorCode == 10118: // no suitable peers, not leader, stream offline
			return true
		}
	}
	return false
}

// asyncError logs what the server reports asynchronously on the connection
// (a permissions violation, a slow consumer) and keeps the last permissions
// violation for openStore.
func (d *Daemon) asyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) {
		d.denied.Store(&err)
	}
	if d.ctx.Err() != nil {
		return
	}
	if sub != nil {
		d.log.Error("NATS", "subject", sub.Subject, keyErr, err)
		return
	}
	d.log.Error("NATS", keyErr, err)
}

// unsafeReply reports whether a request's reply subject lies where agentd
// itself writes: under the event prefix, a KV bucket or object store
// ($KV, $O), the JetStream API ($JS), the service API ($SRV) or the API
// prefix. agentd answers with its own permissions, so a client allowed
// only to send requests could otherwise have it store the reply in the
// event stream or a snapshot bucket (docs/permissions.md).
func (d *Daemon) unsafeReply(reply string) bool {
	under := func(prefix string) bool { return reply == prefix || strings.HasPrefix(reply, prefix+".") }
	return under(d.cfg.Stream.Prefix) || under(d.cfg.APIPrefix) || under("$KV") || under("$O") || under("$JS") || under("$SRV")
}

// enter admits an API handler unless Close has begun; the caller calls
// d.inflight.Done when it returns true.
func (d *Daemon) enter() bool {
	d.gate.Lock()
	defer d.gate.Unlock()
	if d.closing {
		return false
	}
	d.inflight.Add(1)
	return true
}

// URL is where clients reach the daemon's NATS server.
func (d *Daemon) URL() string {
	if d.emb != nil {
		return d.emb.URL()
	}
	return d.cfg.Conn.URL
}

// HTTPAddr is the address the HTTP endpoints listen on ("" if none).
func (d *Daemon) HTTPAddr() string {
	if d.httpLn == nil {
		return ""
	}
	return d.httpLn.Addr().String()
}

// APIPrefix is the subject prefix of the API.
func (d *Daemon) APIPrefix() string { return d.cfg.APIPrefix }

// Runtime is the daemon's runtime, for programs that embed the daemon.
func (d *Daemon) Runtime() *agent.Runtime { return d.rt }

// Err reports a fatal error of the HTTP server. (The follower does not
// fail: its ordered consumer recreates itself, and its errors are logged.)
func (d *Daemon) Err() <-chan error { return d.errc }

func (d *Daemon) startService() error {
	svc, err := micro.AddService(d.nc, micro.Config{
		Name:        "agentreg",
		Version:     Version,
		Description: "agentreg registry daemon: durable dynamic agents",
		QueueGroup:  "agentreg",
		// Workers answer after micro's handler returned, so micro counts
		// arrivals only: answers, errors and time are in each endpoint's data.
		StatsHandler: func(e *micro.Endpoint) any { return d.metrics.endpoint(e.Name).snapshot() },
	})
	if err != nil {
		return fmt.Errorf("start API service: %w", err)
	}
	d.svc = svc
	g := svc.AddGroup(d.cfg.APIPrefix)
	add := func(name, subject string, h micro.Handler, desc string) error {
		return g.AddEndpoint(name, h, micro.WithEndpointSubject(subject), micro.WithEndpointMetadata(map[string]string{"description": desc}))
	}
	eps := []struct {
		name, subject, desc string
		h                   micro.Handler
	}{
		{epRootRegister, "root.register", "register a root from its recipe: " + requestFields[RegisterRootRequest](), handle(d, epRootRegister, d.registerRoot)},
		{epAgentCreate, "agent.create", "create an agent: " + requestFields[CreateRequest](), handle(d, epAgentCreate, d.create)},
		{epAgentGrant, "agent.grant", "grant a capability: " + requestFields[GrantRequest](), handle(d, epAgentGrant, d.grant)},
		{epAgentRevoke, "agent.revoke", "revoke a capability, or some of its members, from an agent and its subtree: " + requestFields[RevokeRequest](), handle(d, epAgentRevoke, d.revoke)},
		{epRootMigrate, "root.migrate", "refs of root from resolve through root to (registered, same name) from now on: " + requestFields[MigrateRequest](), handle(d, epRootMigrate, d.migrate)},
		{epTaskDefine, "task.define", "define a task: " + requestFields[DefineTaskRequest](), handle(d, epTaskDefine, d.defineTask)},
		{epAgentRetire, "agent.retire", "retire an agent and its subtree: " + requestFields[RetireRequest](), handle(d, epAgentRetire, d.retire)},
		{epTaskResolve, "task.resolve", "resolve a task ref, pinned (@contract) or not: " + requestFields[ResolveRequest](), handle(d, epTaskResolve, d.resolve)},
		{epAgentDescribe, "agent.describe", "describe an agent: " + requestFields[ReadRequest](), handle(d, epAgentDescribe, d.describe)},
		{epAgentList, "agent.list", "list a root's agents, a page at a time: " + requestFields[ReadRequest](), handle(d, epAgentList, d.list)},
		{epAgentLineage, "agent.lineage", "ancestors and descendants with actor and time: " + requestFields[ReadRequest](), handle(d, epAgentLineage, d.lineage)},
		{epAgentTools, "agent.tools", "an agent's tasks as MCP-shaped tool definitions: " + requestFields[ToolsRequest](), handle(d, epAgentTools, d.tools)},
		{epHealth, "health", "readiness: the stream is reachable", handle(d, epHealth, d.health)},
	}
	if d.cfg.Executor != nil {
		eps = append(eps, struct {
			name, subject, desc string
			h                   micro.Handler
		}{epTaskInvoke, "task.invoke", "call a task: " + requestFields[InvokeRequest](), handle(d, epTaskInvoke, d.invoke)})
	}
	for _, ep := range eps {
		if err := add(ep.name, ep.subject, ep.h, ep.desc); err != nil {
			return fmt.Errorf("add endpoint %s: %w", ep.name, err)
		}
	}
	return nil
}

// Close stops taking requests, lets in-flight ones finish, stops the
// follower, drains the connection and shuts the embedded server down.
func (d *Daemon) Close() error {
	if d.svc != nil {
		_ = d.svc.Stop() // unsubscribes; messages already received are still handed to handlers
	}
	// Let running handlers finish before their context is cancelled (a
	// write cut short after its append would be reported as failed).
	// A request that reaches a handler from now on is refused with 503.
	d.gate.Lock()
	d.closing = true
	d.gate.Unlock()
	for _, j := range d.waiting.all() {
		j.answer("503", "agentd is shutting down: send the request again (another daemon of the queue group, or this one restarted, takes it)")
	}
	done := make(chan struct{})
	go func() {
		d.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d.cfg.RequestTimeout + time.Second):
		d.log.Warn("requests still running at shutdown; cancelling them")
	}
	if d.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = d.http.Shutdown(ctx)
		cancel()
	}
	d.cancel()
	d.wg.Wait()
	d.pool.drain() // only if requests outlived the wait above: answered at once, their context is cancelled
	if d.rt != nil {
		_ = d.rt.Close() // stops the follower, waits for background snapshots
	}
	if d.nc != nil {
		if err := d.nc.Drain(); err == nil {
			deadline := time.Now().Add(5 * time.Second)
			for !d.nc.IsClosed() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		d.nc.Close()
	}
	if d.emb != nil {
		return d.emb.Close()
	}
	return nil
}

// Run starts a daemon, prints where it listens and stores, and serves
// until ctx ends (SIGINT/SIGTERM in agentd) or a background part fails.
func Run(ctx context.Context, cfg Config, ready func(*Daemon)) error {
	d, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	if ready != nil {
		ready(d)
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-d.errc:
	}
	if err := d.Close(); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// requestFields lists the JSON fields of a request type, as the endpoint
// descriptions show them ({root, path, ...}): taken from the type itself,
// so a description never drifts from what the endpoint accepts.
func requestFields[R any]() string {
	t := reflect.TypeFor[R]()
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return "{" + strings.Join(names, ", ") + "}"
}
