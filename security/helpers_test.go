package security_test

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/natsstore"
)

// passwords are what the test puts in the environment for the variables
// the configuration reads ($AGENTD_PASSWORD, ...).
var passwords = map[string]string{
	"agentd": "agentd-secret",
	"writer": "writer-secret",
	"reader": "reader-secret",
	"client": "client-secret",
	"viewer": "viewer-secret",
}

// violations records the permission violations the server logs, by user,
// and the lines of its error log.
type violations struct {
	mu     sync.Mutex
	t      testing.TB
	done   bool
	by     map[string][]string // user -> "Publish Violation - Subject ..." lines
	errors []string
}

// A server log line for a violation names the account and user:
// ... - "v1.55.0:go:agentreg" - "AGENTREG/reader" - Publish Violation - Subject "x"
var violationRE = regexp.MustCompile(`"[^"/]+/(?:user:)?([^"]+)" - ((?:Publish|Subscription) Violation.*)$`)

func (v *violations) log(level, format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	v.mu.Lock()
	defer v.mu.Unlock()
	if m := violationRE.FindStringSubmatch(line); m != nil {
		v.by[m[1]] = append(v.by[m[1]], m[2])
	}
	if level == "ERR" {
		v.errors = append(v.errors, line)
	}
	if !v.done {
		v.t.Logf("nats %s: %s", level, line)
	}
}

func (v *violations) of(user string) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.by[user]...)
}

// count returns how many error lines hold substr.
func (v *violations) count(substr string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, l := range v.errors {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// logged waits until the server logs an error line holding substr after
// the before-th one.
func (v *violations) logged(t *testing.T, before int, substr string) {
	t.Helper()
	require.Eventually(t, func() bool { return v.count(substr) > before }, 5*time.Second, 10*time.Millisecond,
		"the server logged no error holding %q", substr)
}

func (v *violations) Noticef(format string, a ...any) { v.log("INF", format, a...) }
func (v *violations) Warnf(format string, a ...any)   { v.log("WRN", format, a...) }
func (v *violations) Fatalf(format string, a ...any)  { v.log("FTL", format, a...) }
func (v *violations) Errorf(format string, a ...any)  { v.log("ERR", format, a...) }
func (v *violations) Debugf(format string, a ...any)  { v.log("DBG", format, a...) }
func (v *violations) Tracef(format string, a ...any)  { v.log("TRC", format, a...) }

// startConfigured starts a nats-server from a configuration file as an
// operator would (server.ProcessConfigFile), except that it listens on a
// free loopback port and stores in t.TempDir(). Passwords are set in the
// environment first. It returns the server and its violation log.
func startConfigured(t *testing.T, conf string) (*server.Server, *violations) {
	t.Helper()
	for user, pw := range passwords {
		t.Setenv(strings.ToUpper(user)+"_PASSWORD", pw)
	}
	opts, err := server.ProcessConfigFile(conf)
	require.NoError(t, err, "nats-server config %s", conf)
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.StoreDir = t.TempDir()
	opts.NoSigs = true
	srv, err := server.NewServer(opts)
	require.NoError(t, err)
	v := &violations{t: t, by: map[string][]string{}}
	srv.SetLoggerV2(v, false, false, false)
	srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second), "server not ready")
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		v.mu.Lock()
		v.done = true
		v.mu.Unlock()
	})
	return srv, v
}

// asyncErrs collects the errors the server sends a connection
// asynchronously (-ERR 'Permissions Violation for Publish to ...').
type asyncErrs struct {
	mu   sync.Mutex
	errs []error
}

func (a *asyncErrs) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs = append(a.errs, err)
}

// waitFor waits until an error mentioning substr arrives, and returns it.
func (a *asyncErrs) waitFor(t *testing.T, substr string) error {
	t.Helper()
	var found error
	require.Eventually(t, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, err := range a.errs {
			if strings.Contains(err.Error(), substr) {
				found = err
				return true
			}
		}
		return false
	}, 5*time.Second, 10*time.Millisecond, "no async error mentioning %q", substr)
	return found
}

// dial connects as user with natsstore.ConnectOptions (the options agentd
// and replay take), collecting asynchronous errors, and closes in
// t.Cleanup.
func dial(t *testing.T, url, user string) (*nats.Conn, *asyncErrs) {
	t.Helper()
	co := natsstore.ConnectOptions{URL: url, User: user, Password: passwords[user], Name: "security-test-" + user}
	opts, err := co.NATSOptions()
	require.NoError(t, err)
	errs := &asyncErrs{}
	nc, err := natsstore.Connect(co.URL, append(opts, nats.ErrorHandler(errs.handler))...)
	require.NoError(t, err, "connect as %s", user)
	t.Cleanup(nc.Close)
	return nc, errs
}

// short is a context for an operation expected to be refused: a publish
// the server drops for lack of permission is never answered, so the
// operation lasts until the context ends.
func short(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestMain removes the replay binary buildReplayOnce built, once every test
// that runs it is done (a test's own cleanup would remove it under later
// tests).
func TestMain(m *testing.M) {
	code := m.Run()
	if replayBinDir != "" {
		_ = os.RemoveAll(replayBinDir)
	}
	os.Exit(code)
}
