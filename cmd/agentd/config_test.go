package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"
)

// permissionsConfig is the least-privilege configuration docs/permissions.md
// prints (the fenced block security/testdata/agentreg.conf must equal),
// taken from the doc itself.
func permissionsConfig(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/permissions.md")
	require.NoError(t, err)
	const head = "```\n# agentreg on a nats-server: one account, a user per role"
	i := strings.Index(string(doc), head)
	require.GreaterOrEqual(t, i, 0, "docs/permissions.md holds no block starting %q", head)
	text := string(doc)[i+len("```\n"):]
	end := strings.Index(text, "\n```\n")
	require.Greater(t, end, 0)
	return text[:end+1]
}

// docPasswords are the passwords the test gives the configuration's users
// through nats-server's environment ($AGENTD_PASSWORD, ...).
var docPasswords = map[string]string{"agentd": "agentd-pw", "writer": "writer-pw", "reader": "reader-pw", "client": "client-pw", "viewer": "viewer-pw"}

func passwordEnv() []string {
	var env []string
	for user, pw := range docPasswords {
		env = append(env, strings.ToUpper(user)+"_PASSWORD="+pw)
	}
	return env
}

// writeDocConfig writes the doc's configuration and a file that includes
// it and then sets a free port and a store directory of the test's (a key
// set again replaces the included one; not listen, which would leave the
// included port to win or lose by map order), and returns that file.
func writeDocConfig(t *testing.T, port int) (conf, store string) {
	t.Helper()
	dir := t.TempDir()
	store = filepath.Join(dir, "store")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "agentreg.conf"), []byte(permissionsConfig(t)), 0o600))
	conf = filepath.Join(dir, "test.conf")
	require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf("include \"agentreg.conf\"\nhost: 127.0.0.1\nport: %d\njetstream { store_dir: %q }\n", port, store)), 0o600))
	return conf, store
}

// userConn connects as one of the configuration's users and collects the
// errors the server sends it asynchronously.
type userConn struct {
	nc   *nats.Conn
	mu   sync.Mutex
	errs []error
}

func connectAs(t *testing.T, url, user string) *userConn {
	t.Helper()
	u := &userConn{}
	nc, err := nats.Connect(url, nats.UserInfo(user, docPasswords[user]), nats.Timeout(2*time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			u.mu.Lock()
			u.errs = append(u.errs, err)
			u.mu.Unlock()
		}))
	require.NoError(t, err, "connect as %s", user)
	t.Cleanup(nc.Close)
	u.nc = nc
	return u
}

// request sends a JSON body to agentd.<endpoint> and returns the reply or
// the error.
func (u *userConn) request(endpoint string, body any) (*nats.Msg, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return u.nc.Request("agentd."+endpoint, data, 3*time.Second)
}

func (u *userConn) sawError(substr string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, err := range u.errs {
		if strings.Contains(err.Error(), substr) {
			return true
		}
	}
	return false
}

// TestNATSConfigPermissions runs agentd's embedded server with the
// least-privilege configuration of docs/permissions.md (accounts, users,
// no no_auth_user) and agentd's own user's credentials: agentd starts and
// serves the client and the viewer as the doc says, and refuses what the
// doc says each may not do. Without credentials agentd stops at once,
// saying why.
func TestNATSConfigPermissions(t *testing.T) {
	port, httpPort := freePort(t), freePort(t)
	conf, store := writeDocConfig(t, port)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)

	t.Run("WithoutCredentials", func(t *testing.T) {
		code, out := runAgentd(t, passwordEnv(), "--nats-config", conf, "--http", httpAddr)
		require.Equal(t, 1, code, out)
		require.Contains(t, out, "agentd: connect to embedded server: nats: Authorization Violation (its configuration requires authentication")
	})

	// The password through the environment, as the nats CLI takes it.
	a := &agentd{t: t, name: "agentd", url: url, httpAddr: httpAddr,
		args:     []string{"--nats-config", conf, "--user", "agentd", "--http", httpAddr},
		env:      append(passwordEnv(), "NATS_PASSWORD="+docPasswords["agentd"]),
		natsOpts: []nats.Option{nats.UserInfo("viewer", docPasswords["viewer"])}}
	a.start()
	a.waitReady(30 * time.Second)
	require.Contains(t, a.out.String(), fmt.Sprintf("embedded NATS listening on 127.0.0.1:%d", port))
	require.Contains(t, a.out.String(), "store in "+store)
	_, err := os.Stat(filepath.Join(store, "jetstream"))
	require.NoError(t, err, "JetStream stores in the configuration's store_dir")

	client := connectAs(t, url, "client")
	c := &api{t: t, nc: client.nc}
	h := createHierarchy(t, c)
	h.resolveAll(t, c, 0)

	viewer := connectAs(t, url, "viewer")
	msg, err := viewer.request("agent.describe", map[string]any{"root": h.root, "path": "math_solver", "min_seq": h.acked})
	require.NoError(t, err, "the viewer calls a read endpoint")
	require.Empty(t, msg.Header.Get(micro.ErrorCodeHeader), "%s", msg.Header.Get(micro.ErrorHeader))
	require.Contains(t, string(msg.Data), `"math_solver"`)

	t.Run("ViewerCannotWrite", func(t *testing.T) {
		_, err := viewer.request("agent.create", map[string]any{"root": h.root, "name": "intruder"})
		require.ErrorIs(t, err, nats.ErrTimeout, "the server drops the request: nobody answers")
		require.Eventually(t, func() bool {
			return viewer.sawError(`Permissions Violation for Publish to "agentd.agent.create"`)
		}, 5*time.Second, 10*time.Millisecond)
	})
	t.Run("ClientHasNoJetStream", func(t *testing.T) {
		_, err := client.nc.Request("$JS.API.STREAM.INFO.AGENTREG", nil, time.Second)
		require.ErrorIs(t, err, nats.ErrTimeout)
		require.Eventually(t, func() bool {
			return client.sawError(`Permissions Violation for Publish to "$JS.API.STREAM.INFO.AGENTREG"`)
		}, 5*time.Second, 10*time.Millisecond)
		err = client.nc.Publish("agentreg."+h.root, []byte("forged"))
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			return client.sawError(fmt.Sprintf("Permissions Violation for Publish to %q", "agentreg."+h.root))
		}, 5*time.Second, 10*time.Millisecond)
	})
	t.Run("NoAnonymousClient", func(t *testing.T) {
		_, err := nats.Connect(url, nats.Timeout(2*time.Second))
		require.ErrorIs(t, err, nats.ErrAuthorization)
	})
	// Nothing the refused requests tried was written.
	list := c.call("agent.list", map[string]any{"root": h.root, "min_seq": h.acked})
	require.NotContains(t, fmt.Sprint(list["agents"]), "intruder")
	require.False(t, a.exited())
}

// runAgentd runs agentd to its end (at most 30 s) and returns its exit
// code and output.
func runAgentd(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, agentdBin, args...)
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "agentd %v did not stop within 30s; output:\n%s", args, out)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run agentd: %v", err)
	}
	t.Logf("agentd %v: exit %d after %v", args, cmd.ProcessState.ExitCode(), time.Since(start).Round(time.Millisecond))
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestConfigOverrides: flags a setting elsewhere overrides are refused,
// naming the flag and the setting; the start-up line names the listen
// address and the store directory really in use.
func TestConfigOverrides(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	withListen := filepath.Join(dir, "listen.conf")
	store := filepath.Join(dir, "store")
	require.NoError(t, os.WriteFile(withListen, []byte(fmt.Sprintf("listen: 0.0.0.0:%d\njetstream { store_dir: %q }\n", port, store)), 0o644))
	noListen := filepath.Join(dir, "nolisten.conf")
	require.NoError(t, os.WriteFile(noListen, []byte(fmt.Sprintf("port: %d\n", port)), 0o644))
	bare := filepath.Join(dir, "bare.conf")
	require.NoError(t, os.WriteFile(bare, []byte("jetstream: enabled\n"), 0o644))

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"PortWithListen", nil, []string{"--nats-config", withListen, "--port", "4333"},
			fmt.Sprintf("agentd: --port 4333: the --nats-config file %s sets the listen address (listen/host/port: 0.0.0.0:%d); change it there, or drop --port 4333", withListen, port)},
		{"HostWithListen", nil, []string{"--host", "0.0.0.0", "--nats-config", withListen},
			fmt.Sprintf("agentd: --host 0.0.0.0: the --nats-config file %s sets the listen address (listen/host/port: 0.0.0.0:%d)", withListen, port)},
		{"HostWithPortOnly", nil, []string{"--host", "10.1.2.3", "--nats-config", noListen},
			fmt.Sprintf("sets the listen address (listen/host/port: 127.0.0.1:%d)", port)},
		{"PortWithoutListen", nil, []string{"--port", "4333", "--nats-config", bare},
			"with --nats-config the file " + bare + " sets the listen address; it has no listen, so the server listens on 127.0.0.1:4222: add listen: <host>:<port> to it, or drop --port 4333"},
		{"PortFromEnv", []string{"AGENTD_PORT=4333"}, []string{"--nats-config", withListen},
			"agentd: AGENTD_PORT=4333: the --nats-config file"},
		{"DataWithStoreDir", nil, []string{"--nats-config", withListen, "--data", filepath.Join(dir, "data")},
			fmt.Sprintf("agentd: --data %s: the --nats-config file %s sets the store directory (jetstream store_dir: %s); change it there, or drop --data", filepath.Join(dir, "data"), withListen, store)},
		{"DataWithExternal", nil, []string{"--nats-url", "nats://127.0.0.1:1", "--data", "x"},
			"agentd: --data x: with --nats-url nats://127.0.0.1:1 agentd connects to that server and embeds none; drop --data x, or the URL"},
		{"PortEnvNotANumber", []string{"AGENTD_PORT=4223x"}, nil, `AGENTD_PORT="4223x" is not a whole number`},
		{"WorkersEnvNotANumber", []string{"AGENTD_WORKERS=sixteen"}, nil, `AGENTD_WORKERS="sixteen" is not a whole number`},
		{"WorkersZero", nil, []string{"--workers", "0"}, "--workers 0: must be at least 1"},
		{"MaxLoadedRootsNegative", nil, []string{"--max-loaded-roots", "-5"}, "--max-loaded-roots -5: must be at least 1"},
		{"ConfigWithNATSURLEnv", []string{"NATS_URL=nats://127.0.0.1:1"}, []string{"--nats-config", withListen},
			"agentd: --nats-config " + withListen + ": with NATS_URL=nats://127.0.0.1:1 in the environment (the nats CLI's variable too) agentd connects to that server and embeds none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runAgentd(t, tc.env, tc.args...)
			require.Equal(t, 2, code, "a usage error; output:\n%s", out)
			require.Contains(t, out, tc.want)
			require.Contains(t, out, "hint: run 'agentd --help'")
			_, err := os.Stat(store)
			require.True(t, os.IsNotExist(err), "nothing started: no store directory")
		})
	}

	startupLine := regexp.MustCompile(`agentd: serving agentd\.\* on embedded NATS listening on (\S+) \((\S+)\), store in ([^,\n]+)`)
	startup := func(t *testing.T, a *agentd) []string {
		t.Helper()
		a.waitReady(30 * time.Second)
		m := startupLine.FindStringSubmatch(a.out.String())
		require.NotNil(t, m, "no start-up line in:\n%s", a.out.String())
		return m[1:]
	}

	t.Run("ConfigWithoutListenBindsLoopback", func(t *testing.T) {
		httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		data := filepath.Join(t.TempDir(), "data")
		a := startAgentd(t, "agentd", fmt.Sprintf("nats://127.0.0.1:%d", port), httpAddr,
			"--nats-config", noListen, "--data", data, "--http", httpAddr)
		m := startup(t, a)
		require.Equal(t, fmt.Sprintf("127.0.0.1:%d", port), m[0], "a config without listen: loopback, not 0.0.0.0")
		require.Equal(t, data, m[2], "no store_dir in the config: the --data directory")
		_, err := os.Stat(filepath.Join(data, "jetstream"))
		require.NoError(t, err)
		a.kill(syscall.SIGTERM)
	})

	t.Run("ConfigStoreDir", func(t *testing.T) {
		httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		a := startAgentd(t, "agentd", fmt.Sprintf("nats://127.0.0.1:%d", port), httpAddr, "--nats-config", withListen, "--http", httpAddr)
		m := startup(t, a)
		require.Equal(t, fmt.Sprintf("0.0.0.0:%d", port), m[0], "the config's listen address")
		require.Equal(t, store, m[2], "the config's store_dir, not ./data")
		_, err := os.Stat(filepath.Join(store, "jetstream"))
		require.NoError(t, err)
		a.kill(syscall.SIGTERM)
	})

	t.Run("DefaultsNameAbsoluteData", func(t *testing.T) {
		httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := freePort(t)
		wd := t.TempDir()
		a := &agentd{t: t, name: "agentd", url: fmt.Sprintf("nats://127.0.0.1:%d", p), httpAddr: httpAddr,
			args: []string{"--http", httpAddr}, env: []string{fmt.Sprintf("AGENTD_PORT=%d", p), "AGENTD_DATA=" + filepath.Join(wd, "d")}}
		a.start()
		m := startup(t, a)
		require.Equal(t, fmt.Sprintf("127.0.0.1:%d", p), m[0])
		require.Equal(t, filepath.Join(wd, "d"), m[2])
	})
}

// A NATS_URL exported for the nats CLI makes agentd connect there instead
// of embedding a server: it says so first (here the URL reaches nothing,
// so it then fails to connect).
func TestNATSURLFromEnvironmentIsAnnounced(t *testing.T) {
	url := fmt.Sprintf("nats://127.0.0.1:%d", freePort(t))
	code, out := runAgentd(t, []string{"NATS_URL=" + url}, "--http", "")
	require.NotEqual(t, 0, code, "nothing listens at %s; output:\n%s", url, out)
	require.Contains(t, out, "agentd: NATS_URL="+url+" in the environment: connecting to that server, embedding none (unset NATS_URL to embed one)")
	// Given as a flag, it is what the user asked for: no notice.
	code, out = runAgentd(t, nil, "--nats-url", url, "--http", "")
	require.NotEqual(t, 0, code)
	require.NotContains(t, out, "in the environment")
}
