package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
	"github.com/agentreg/agentreg/projector"
)

// common holds the flags every command takes.
type common struct {
	conn    natsstore.ConnectOptions
	data    string
	stream  string
	prefix  string
	seq     uint64
	at      string
	root    string
	json    bool
	stderr  io.Writer
	signers map[string]bool  // audit's allow-list; nil: any signer
	trust   *projector.Trust // the same keys as a trust policy: folds apply only their events

	signersArg string
	fs         *flag.FlagSet
}

func newFlagSet(name, args, summary string, c *common, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: replay %s [flags] %s\n\n%s\n\nFlags:\n", name, args, summary)
		fs.PrintDefaults()
	}
	c.stderr, c.fs = stderr, fs
	fs.StringVar(&c.conn.URL, "nats-url", os.Getenv("NATS_URL"), "NATS server URL(s) (env NATS_URL)")
	fs.StringVar(&c.conn.CredsFile, "creds", os.Getenv("NATS_CREDS"), "NATS .creds file (env NATS_CREDS)")
	fs.StringVar(&c.conn.User, "user", os.Getenv("NATS_USER"), "NATS user (env NATS_USER)")
	fs.StringVar(&c.conn.Password, "password", os.Getenv("NATS_PASSWORD"), "NATS password (env NATS_PASSWORD)")
	fs.StringVar(&c.conn.Token, "token", os.Getenv("NATS_TOKEN"), "NATS token (env NATS_TOKEN)")
	fs.StringVar(&c.conn.NKeySeed, "nkey", os.Getenv("NATS_NKEY"), "file holding an nkey seed (env NATS_NKEY)")
	fs.StringVar(&c.conn.TLSCA, "tls-ca", os.Getenv("NATS_CA"), "CA certificate to verify the server (env NATS_CA)")
	fs.StringVar(&c.conn.TLSCert, "tls-cert", os.Getenv("NATS_CERT"), "client certificate (env NATS_CERT)")
	fs.StringVar(&c.conn.TLSKey, "tls-key", os.Getenv("NATS_KEY"), "client key (env NATS_KEY)")
	fs.StringVar(&c.data, "data", "", "read a stopped agentd's or demo's data directory offline (read-only) instead of connecting")
	fs.StringVar(&c.stream, "stream", "AGENTREG", "stream name")
	fs.StringVar(&c.prefix, "prefix", "agentreg", "subject prefix")
	fs.Uint64Var(&c.seq, "seq", 0, "point in history: the stream sequence to stop at (default: now)")
	fs.StringVar(&c.at, "time", "", "point in history: an RFC3339 time to stop at (default: now)")
	fs.StringVar(&c.root, "root", "", "root: a fingerprint (or a unique prefix of one) or a root name")
	fs.BoolVar(&c.json, "json", false, "print JSON (one object per line where there are several)")
	fs.StringVar(&c.signersArg, "signers", os.Getenv("AGENTREG_SIGNERS"), "trusted signers' nkey public keys, comma-separated, or a file of them (one a line, as agentd\n--signers reads): folds apply only events signed by one of them, a trust policy; audit also\nreports every event not signed by one (env AGENTREG_SIGNERS)")
	return fs
}

// loadSigners reads --signers into the allow-list and the trust policy.
func (c *common) loadSigners(cmd string) error {
	v := strings.TrimSpace(c.signersArg)
	if v == "" || c.trust != nil {
		return nil
	}
	list := strings.Split(v, ",")
	if !strings.Contains(v, ",") {
		if _, err := nkeys.FromPublicKey(v); err != nil { // not a key: a file of keys
			b, err := os.ReadFile(v)
			if err != nil {
				return usageErr(cmd, "--signers %q: neither an nkey public key nor a readable file: %v", v, err)
			}
			if list, err = projector.ParseSigners(string(b)); err != nil {
				return usageErr(cmd, "--signers file %s: %v", v, err)
			}
		}
	}
	var keys []string
	for _, k := range list {
		if k = strings.TrimSpace(k); k == "" {
			continue
		}
		if _, err := nkeys.FromPublicKey(k); err != nil {
			return usageErr(cmd, "--signers: %q is not an nkey public key", k)
		}
		if c.signers == nil {
			c.signers = map[string]bool{}
		}
		c.signers[k] = true
		keys = append(keys, k)
	}
	trust, err := projector.NewTrust(keys)
	if err != nil {
		return usageErr(cmd, "--signers: %v", err)
	}
	c.trust = trust
	return nil
}

// errHelp is returned by a command whose --help was asked for: the usage
// has been printed and there is nothing more to do (Run returns nil).
var errHelp = errors.New("help requested")

// parse parses flags and reports usage errors with a hint. After -h or
// --help it returns errHelp, so that the command stops there instead of
// going on to run.
//
// Flags may come before, between or after the positional arguments
// (`resolve REF --seq 4`): the standard flag package stops at the first
// positional one, so parse takes it aside and goes on parsing the rest.
// After "--" everything is positional (a flag's value "--", as in `--root --`,
// is no terminator). The positional arguments end up in
// fs.Args() in their order.
func parse(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return errHelp
			}
			return fmt.Errorf("%s: %v\nhint: run 'replay %s --help': %w", fs.Name(), err, fs.Name(), errUsage)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if endsWithTerminator(fs, args[:len(args)-len(rest)]) {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	// Parsing "--" alone sets no flag and leaves exactly these as fs.Args().
	return fs.Parse(append([]string{"--"}, positional...))
}

// endsWithTerminator reports whether the arguments fs.Parse consumed end
// with the "--" that ends the flags, rather than with a flag's value that
// happens to be "--" (`--root -- REF`). It walks them as the flag package
// does: a flag without "=" that is not a bool flag takes the next argument
// as its value.
func endsWithTerminator(fs *flag.FlagSet, parsed []string) bool {
	for i := 0; i < len(parsed); i++ {
		a := parsed[i]
		if a == "--" {
			return true
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // fs.Parse would have failed on it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		i++ // its value
	}
	return false
}

func usageErr(cmd, format string, a ...any) error {
	return fmt.Errorf("%s: %s\nhint: run 'replay %s --help': %w", cmd, fmt.Sprintf(format, a...), cmd, errUsage)
}

// point is a place in history: a stream sequence, a time, or now.
type point struct {
	seq uint64
	at  time.Time
}

func (c *common) point(cmd string) (point, error) {
	return parsePoint(cmd, c.seq, c.at)
}

func parsePoint(cmd string, seq uint64, at string) (point, error) {
	if seq != 0 && at != "" {
		return point{}, usageErr(cmd, "give --seq or --time, not both")
	}
	p := point{seq: seq}
	if at != "" {
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return point{}, usageErr(cmd, "--time %q is not an RFC3339 time (e.g. 2026-11-24T18:40:55Z)", at)
		}
		p.at = t
	}
	return p, nil
}

// includes reports whether a record lies at or before the point.
func (p point) includes(r events.Record) bool {
	if p.seq != 0 && r.Seq > p.seq {
		return false
	}
	if !p.at.IsZero() && r.Time.After(p.at) {
		return false
	}
	return true
}

func (p point) String() string {
	switch {
	case p.seq != 0:
		return fmt.Sprintf("seq %d", p.seq)
	case !p.at.IsZero():
		return p.at.Format(time.RFC3339)
	}
	return "now"
}

// source is an opened log: over a connection or on an offline copy.
type source struct {
	close func()
	log   *natsstore.Log
	snaps *natsstore.Snapshots
	emb   *natsstore.Embedded
	cfg   natsstore.Config
}

func (s *source) Close() {
	if s.close != nil {
		s.close()
	}
	if s.emb != nil {
		_ = s.emb.Close()
	}
}

// open connects (or opens the data directory) and opens the log. It never
// creates a stream: a tool that reads must not write.
func (c *common) open(ctx context.Context, cmd string) (*source, error) {
	if err := c.loadSigners(cmd); err != nil {
		return nil, err
	}
	s := &source{cfg: natsstore.Config{Stream: c.stream, Prefix: c.prefix}}
	var err error
	switch {
	case c.data != "" && c.flagSet("nats-url"):
		return nil, usageErr(cmd, "give --nats-url or --data, not both")
	case c.data != "":
		// An explicit --data wins over a URL that only came from NATS_URL.
		c.conn.URL = ""
		s.emb, err = natsstore.StartCopy(c.data)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", c.data, err)
		}
		nc, cerr := s.emb.Connect()
		if cerr != nil {
			s.Close()
			return nil, cerr
		}
		s.close = nc.Close
		s.log, err = natsstore.ExistingLog(ctx, nc, s.cfg)
	case c.conn.URL != "":
		c.conn.Name = "agentreg-replay"
		nc, cerr := c.conn.Dial()
		if cerr != nil {
			return nil, cerr
		}
		s.close = nc.Close
		s.log, err = natsstore.ExistingLog(ctx, nc, s.cfg)
	default:
		return nil, usageErr(cmd, "no log to read: give --nats-url URL (or set NATS_URL) or --data DIR")
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	s.snaps, err = natsstore.ExistingSnapshots(ctx, s.log)
	if err != nil && !errors.Is(err, natsstore.ErrNoSnapshots) {
		s.Close()
		return nil, err
	}
	return s, nil
}

// flagSet reports whether the flag was given on the command line (not
// merely defaulted, possibly from the environment).
func (c *common) flagSet(name string) bool {
	set := false
	if c.fs != nil {
		c.fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	}
	return set
}

// rootInfo is a root found in the stream.
type rootInfo struct {
	Fingerprint string
	Name        string
}

// roots lists the roots that have events in the stream, with the name of
// their definition when it is there.
func (s *source) roots(ctx context.Context) ([]rootInfo, error) {
	subjects, err := s.log.Subjects(ctx, s.cfg.Prefix+".*")
	if err != nil {
		return nil, err
	}
	var out []rootInfo
	for _, subj := range subjects {
		fp, _, err := events.ParseSubject(s.cfg.Prefix, subj)
		if err != nil || events.ValidateFingerprint(fp) != nil {
			continue
		}
		ri := rootInfo{Fingerprint: fp}
		stop := errors.New("stop")
		_, err = s.log.ReadSubjects(ctx, []string{subj}, 1, func(r events.Record) error {
			if e, err := events.Decode(r.Data); err == nil && e.Type == events.RootRegistered {
				ri.Name = e.Registered.Def.Name
				return stop
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			return nil, err
		}
		out = append(out, ri)
	}
	slices.SortFunc(out, func(a, b rootInfo) int { return strings.Compare(a.Name+a.Fingerprint, b.Name+b.Fingerprint) })
	return out, nil
}

// pickRoot resolves --root (fingerprint, fingerprint prefix or name); with
// no --root it takes the only root there is.
func (s *source) pickRoot(ctx context.Context, cmd, sel string) (string, error) {
	if events.ValidateFingerprint(sel) == nil {
		return sel, nil
	}
	roots, err := s.roots(ctx)
	if err != nil {
		return "", err
	}
	var match []rootInfo
	for _, r := range roots {
		if sel == "" || r.Name == sel || strings.HasPrefix(r.Fingerprint, sel) {
			match = append(match, r)
		}
	}
	switch {
	case len(match) == 1:
		return match[0].Fingerprint, nil
	case len(roots) == 0:
		return "", fmt.Errorf("%s: the stream %s has no roots", cmd, s.cfg.Stream)
	}
	var names []string
	for _, r := range roots {
		names = append(names, fmt.Sprintf("%s (%.12s)", r.Name, r.Fingerprint))
	}
	if sel == "" {
		return "", usageErr(cmd, "the stream has %d roots; pick one with --root: %s", len(roots), strings.Join(names, ", "))
	}
	if len(match) == 0 {
		return "", usageErr(cmd, "no root matches --root %q; roots: %s", sel, strings.Join(names, ", "))
	}
	return "", usageErr(cmd, "--root %q matches %d roots; give more of the fingerprint: %s", sel, len(match), strings.Join(names, ", "))
}

// records reads a root's records up to the point, showing progress on a
// terminal.
func (s *source) records(ctx context.Context, c *common, root string, p point) ([]events.Record, error) {
	var out []events.Record
	err := s.scan(ctx, c, events.RootSubjects(s.cfg.Prefix, root), p, func(r events.Record) error {
		out = append(out, r)
		return nil
	})
	return out, err
}

var errPast = errors.New("past the point")

// longReplay is the number of events from which a read reports its rate on
// stderr.
const longReplay = 100_000

// scan calls fn for each record on subjects up to the point.
func (s *source) scan(ctx context.Context, c *common, subjects []string, p point, fn func(events.Record) error) error {
	bar := c.progress(ctx, s, subjects)
	start, n := time.Now(), 0
	_, err := s.log.ReadSubjects(ctx, subjects, 1, func(r events.Record) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !p.includes(r) {
			return errPast
		}
		n++
		if bar != nil {
			_ = bar.Set64(int64(r.Seq))
		}
		return fn(r)
	})
	if bar != nil {
		_ = bar.Finish()
	}
	if d := time.Since(start); n >= longReplay {
		fmt.Fprintf(c.stderr, "replayed %d events in %s (%.0f events/s)\n", n, d.Round(time.Millisecond), float64(n)/d.Seconds())
	}
	if errors.Is(err, errPast) {
		return nil
	}
	return err
}

// progress returns a progress bar over stream sequences when stderr is a
// terminal, nil otherwise.
func (c *common) progress(ctx context.Context, s *source, subjects []string) *progressbar.ProgressBar {
	f, ok := c.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	last, err := s.log.LastSeq(ctx, subjects)
	if err != nil || last < 10000 {
		return nil
	}
	return progressbar.NewOptions64(int64(last),
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription("replaying"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("events"),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
}

// fold folds records into a new registry of root.
func fold(root string, recs []events.Record) *projector.Registry {
	return foldTrusted(root, recs, nil)
}

// foldTrusted is fold under a trust policy (nil: none).
func foldTrusted(root string, recs []events.Record, trust *projector.Trust) *projector.Registry {
	reg := projector.New(root)
	reg.SetTrust(trust)
	for _, r := range recs {
		reg.Apply(r)
	}
	return reg
}

// registryAt reads and folds a root up to the point.
func (s *source) registryAt(ctx context.Context, c *common, root string, p point) (*projector.Registry, []events.Record, error) {
	recs, err := s.records(ctx, c, root, p)
	if err != nil {
		return nil, nil, err
	}
	return foldTrusted(root, recs, c.trust), recs, nil
}

func fmtTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format(time.RFC3339)
}

// fmtTimeString is an RFC3339Nano time as text shows it (to the second).
func fmtTimeString(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.Format(time.RFC3339)
}
