package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"
)

// agentdBin is the agentd binary TestMain builds once for every test.
var agentdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agentd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentd test:", err)
		os.Exit(1)
	}
	agentdBin = filepath.Join(dir, "agentd")
	build := exec.Command("go", "build", "-o", agentdBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "agentd test: go build:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// agentd is one run of the agentd binary.
type agentd struct {
	t        *testing.T
	name     string
	args     []string
	env      []string      // added to this process's environment
	natsOpts []nats.Option // how waitReady connects (credentials)
	url      string        // NATS client URL
	httpAddr string
	cmd      *exec.Cmd
	out      *syncBuffer
	started  time.Time
	done     chan struct{} // closed when the process has exited
	state    *os.ProcessState
}

// startAgentd starts agentd with args; the process is killed in
// t.Cleanup if still running, and its output logged if the test failed.
func startAgentd(t *testing.T, name, url, httpAddr string, args ...string) *agentd {
	t.Helper()
	return (&agentd{t: t, name: name, args: args, url: url, httpAddr: httpAddr}).start()
}

// start starts the process a describes (name, args, env, url, httpAddr).
func (a *agentd) start() *agentd {
	t := a.t
	t.Helper()
	a.out, a.done, a.state = &syncBuffer{}, make(chan struct{}), nil
	a.cmd = exec.Command(agentdBin, a.args...)
	a.cmd.Env = append(os.Environ(), a.env...)
	a.cmd.Stdout, a.cmd.Stderr = a.out, a.out
	a.started = time.Now()
	require.NoError(t, a.cmd.Start())
	go func() {
		_ = a.cmd.Wait()
		a.state = a.cmd.ProcessState
		close(a.done)
	}()
	t.Cleanup(func() {
		a.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s (pid %d) output:\n%s", a.name, a.cmd.Process.Pid, a.out.String())
		}
	})
	return a
}

// restart starts the same command again (same data, ports and config).
func (a *agentd) restart() *agentd {
	a.t.Helper()
	return (&agentd{t: a.t, name: a.name, args: a.args, env: a.env, natsOpts: a.natsOpts, url: a.url, httpAddr: a.httpAddr}).start()
}

func (a *agentd) exited() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// kill sends sig and waits (at most 20 s) for the process to exit.
func (a *agentd) kill(sig syscall.Signal) (*os.ProcessState, time.Duration) {
	if a.exited() {
		return a.state, 0
	}
	start := time.Now()
	_ = a.cmd.Process.Signal(sig)
	select {
	case <-a.done:
		return a.state, time.Since(start)
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		return nil, time.Since(start)
	}
}

// waitReady polls until the process answers /healthz and agentd.health
// through its own server (or exits, or the deadline passes), and returns
// how long since the start it took. On a cluster another node's daemon may
// answer agentd.health; /healthz is this process's own, served once its
// daemon has started.
func (a *agentd) waitReady(timeout time.Duration) time.Duration {
	a.t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if a.exited() {
			a.t.Fatalf("%s exited during start-up (%v); output:\n%s", a.name, a.state, a.out.String())
		}
		if last = a.healthz(); last == nil {
			if last = healthy(a.url, a.natsOpts...); last == nil {
				return time.Since(a.started)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("%s not ready after %v: %v; output:\n%s", a.name, timeout, last, a.out.String())
	return 0
}

// healthz asks the process's HTTP endpoint /healthz.
func (a *agentd) healthz() error {
	client := http.Client{Timeout: time.Second}
	resp, err := client.Get("http://" + a.httpAddr + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/healthz: %s: %s", resp.Status, body)
	}
	return nil
}

// healthy asks the daemon reached through url for agentd.health.
func healthy(url string, opts ...nats.Option) error {
	nc, err := nats.Connect(url, append([]nats.Option{nats.Timeout(time.Second), nats.NoReconnect()}, opts...)...)
	if err != nil {
		return err
	}
	defer nc.Close()
	msg, err := nc.Request("agentd.health", nil, time.Second)
	if err != nil {
		return err
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return fmt.Errorf("health: %s %s", code, msg.Header.Get(micro.ErrorHeader))
	}
	return nil
}

// api is a NATS client of the agentd API.
type api struct {
	t  *testing.T
	nc *nats.Conn
}

func connect(t *testing.T, url string) *api {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond), nats.Timeout(2*time.Second))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return &api{t: t, nc: nc}
}

// reply is an API reply: the body, or a micro error.
type reply struct {
	data       []byte
	code, desc string
	err        error // no reply at all
}

func (r reply) ok() bool { return r.err == nil && r.code == "" }

func (r reply) String() string {
	if r.err != nil {
		return "no reply: " + r.err.Error()
	}
	if r.code != "" {
		return r.code + " " + r.desc
	}
	return string(r.data)
}

// send sends body (a string as is, anything else as JSON) to agentd.<endpoint>.
func (c *api) send(endpoint string, body any) reply {
	c.t.Helper()
	data, isString := body.(string)
	if !isString && body != nil {
		b, err := json.Marshal(body)
		require.NoError(c.t, err)
		data = string(b)
	}
	start := time.Now()
	msg, err := c.nc.Request("agentd."+endpoint, []byte(data), 15*time.Second)
	var r reply
	if err != nil {
		r = reply{err: err}
	} else {
		r = reply{data: msg.Data, code: msg.Header.Get(micro.ErrorCodeHeader), desc: msg.Header.Get(micro.ErrorHeader)}
	}
	if took := time.Since(start); took > time.Second {
		c.t.Logf("slow request: %s took %v: %.200s", endpoint, took, r)
	}
	return r
}

// call sends a request that must succeed and decodes its reply into a
// generic JSON object.
func (c *api) call(endpoint string, body any) map[string]any {
	c.t.Helper()
	r := c.send(endpoint, body)
	require.True(c.t, r.ok(), "%s %v: %s", endpoint, body, r)
	var out map[string]any
	require.NoError(c.t, json.Unmarshal(r.data, &out), "%s reply %s", endpoint, r.data)
	return out
}

// eventually retries a request until it succeeds (a cluster electing a new
// leader answers with errors for a moment), within timeout.
func (c *api) eventually(endpoint string, body any, timeout time.Duration) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := c.send(endpoint, body)
		if r.ok() {
			var out map[string]any
			require.NoError(c.t, json.Unmarshal(r.data, &out), "%s reply %s", endpoint, r.data)
			return out
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s %v: no success within %v; last: %s", endpoint, body, timeout, r)
		}
		c.t.Logf("%s: %.200s; retrying", endpoint, r)
		time.Sleep(50 * time.Millisecond)
	}
}

func seqOf(t *testing.T, m map[string]any) uint64 {
	t.Helper()
	s, ok := m["seq"].(float64)
	require.True(t, ok, "reply without seq: %v", m)
	return uint64(s)
}

func task(name string, fields ...string) map[string]any {
	var fs []any
	for _, f := range fields {
		fs = append(fs, map[string]any{"name": f, "schema": map[string]any{"type": "string"}, "required": true})
	}
	return map[string]any{"name": name, "doc": name + " something",
		"input": map[string]any{"type": "object", "fields": fs}, "output": map[string]any{"type": "string"}}
}

// hierarchy is what a test created, and what it must find again.
type hierarchy struct {
	root    string
	refs    []string          // task refs
	acked   uint64            // highest acknowledged write sequence
	resolve map[string]any    // ref -> resolve reply, as a JSON object
	grants  map[string]string // path -> a capability granted after creation
}

// createHierarchy creates root architect, math_solver and
// math_solver/equation_parser with tasks, through c.
func createHierarchy(t *testing.T, c *api) *hierarchy {
	t.Helper()
	h := &hierarchy{grants: map[string]string{}}
	ack := func(m map[string]any) map[string]any {
		s := seqOf(t, m)
		require.Greater(t, s, h.acked, "acknowledged sequences grow")
		h.acked = s
		return m
	}
	w := ack(c.call("root.register", map[string]any{"def": map[string]any{"name": "architect", "primer": "You design specialists.",
		"caps":  []any{map[string]any{"kind": "module", "name": "math"}, map[string]any{"kind": "module", "name": "io"}},
		"tasks": []any{task("design", "brief")}}, "actor": "user:root"}))
	h.root = w["root"].(string)
	require.Len(t, h.root, 64)
	h.refs = append(h.refs, h.root+"/#design")

	ack(c.call("agent.create", map[string]any{"root": h.root, "name": "math_solver", "primer": "You solve equations.",
		"caps":  []any{map[string]any{"kind": "module", "name": "math", "include": []string{"sqrt", "abs"}}},
		"tasks": []any{task("solve", "equation")}, "actor": "user:alice"}))
	h.refs = append(h.refs, h.root+"/math_solver#solve")

	ack(c.call("agent.create", map[string]any{"root": h.root, "parent": "math_solver", "name": "equation_parser", "primer": "You parse equations.",
		"caps":  []any{map[string]any{"kind": "module", "name": "math", "include": []string{"sqrt"}}},
		"tasks": []any{task("parse", "text")}, "actor": "user:bob"}))
	h.refs = append(h.refs, h.root+"/math_solver/equation_parser#parse")

	w = ack(c.call("task.define", map[string]any{"root": h.root, "path": "math_solver/equation_parser", "task": task("tokenize", "text"), "actor": "user:bob"}))
	require.Equal(t, h.root+"/math_solver/equation_parser#tokenize", w["ref"])
	h.refs = append(h.refs, w["ref"].(string))
	return h
}

// resolveAll resolves every ref with min_seq set to the newest acknowledged
// write, and returns the replies by ref.
func (h *hierarchy) resolveAll(t *testing.T, c *api, timeout time.Duration) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, ref := range h.refs {
		r := c.eventually("task.resolve", map[string]any{"ref": ref, "min_seq": h.acked}, timeout)
		require.Equal(t, ref, r["ref"])
		require.GreaterOrEqual(t, seqOf(t, r), h.acked, "%s: the reply covers every acknowledged write", ref)
		out[ref] = r
	}
	return out
}

// checkGrants checks that every acknowledged grant is in the registry.
func (h *hierarchy) checkGrants(t *testing.T, c *api, timeout time.Duration) {
	t.Helper()
	for path, capName := range h.grants {
		v := c.eventually("agent.describe", map[string]any{"root": h.root, "path": path, "min_seq": h.acked}, timeout)
		var names []string
		for _, g := range v["granted"].([]any) {
			names = append(names, g.(map[string]any)["name"].(string))
		}
		require.Contains(t, names, capName, "grant of %s to %s", capName, path)
	}
}

// serviceInstances counts the daemons that answer a `nats micro ping
// agentreg`, waiting (at most 5 s) until want of them have answered.
func serviceInstances(t *testing.T, c *api, want int) int {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := c.nc.SubscribeSync(inbox)
	require.NoError(t, err)
	defer sub.Unsubscribe()
	require.NoError(t, c.nc.PublishRequest("$SRV.PING.agentreg", inbox, nil))
	ids := map[string]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for len(ids) < want {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			break
		}
		var ping struct {
			ID string `json:"id"`
		}
		require.NoError(t, json.Unmarshal(msg.Data, &ping))
		ids[ping.ID] = true
	}
	return len(ids)
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// TestAgentdProcess runs agentd as a real process: restart after SIGTERM,
// survival of acknowledged writes across SIGKILL, bad requests, service
// discovery and the HTTP endpoints.
func TestAgentdProcess(t *testing.T) {
	data := t.TempDir()
	port, httpPort := freePort(t), freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	d := startAgentd(t, "agentd", url, httpAddr, "--data", data, "--port", fmt.Sprint(port), "--http", httpAddr, "--log-level", "debug")
	t.Logf("agentd ready %v after start (fresh data directory)", d.waitReady(30*time.Second))

	c := connect(t, url)
	h := createHierarchy(t, c)
	h.resolve = h.resolveAll(t, c, 0)

	t.Run("SIGTERMRestart", func(t *testing.T) {
		state, took := d.kill(syscall.SIGTERM)
		require.NotNil(t, state, "agentd did not exit within 20s of SIGTERM")
		require.Equal(t, 0, state.ExitCode(), "exit status %v; output:\n%s", state, d.out.String())
		require.Less(t, took, 10*time.Second)
		t.Logf("SIGTERM: agentd exited 0 after %v", took)

		d = d.restart()
		t.Logf("restart after SIGTERM: ready after %v", d.waitReady(30*time.Second))
		// Nothing was written: every reply is the same, sequences included.
		require.Equal(t, h.resolve, h.resolveAll(t, c, 5*time.Second))
	})

	t.Run("SIGKILLKeepsAcknowledgedWrites", func(t *testing.T) {
		w := c.call("agent.grant", map[string]any{"root": h.root, "path": "math_solver",
			"cap": map[string]any{"kind": "module", "name": "io"}, "actor": "user:carol"})
		require.Greater(t, seqOf(t, w), h.acked)
		h.acked = seqOf(t, w)
		h.grants["math_solver"] = "io"
		before := h.resolveAll(t, c, 0)
		require.NotEqual(t, h.resolve[h.root+"/math_solver#solve"], before[h.root+"/math_solver#solve"], "the grant changes what solve may use")

		state, _ := d.kill(syscall.SIGKILL)
		require.NotNil(t, state)
		require.False(t, state.Success())
		d = d.restart()
		t.Logf("restart after SIGKILL: ready after %v", d.waitReady(30*time.Second))
		h.checkGrants(t, c, 5*time.Second)
		require.Equal(t, before, h.resolveAll(t, c, 5*time.Second))
		h.resolve = before
	})

	t.Run("BadRequests", func(t *testing.T) {
		unknown := strings.Repeat("0", 64)
		for _, tc := range []struct {
			name, endpoint string
			body           any
			code           string
			names          string // the description names the bad input
		}{
			{"MalformedJSON", "agent.create", `{"root": "` + h.root + `", "name": `, "400", "malformed JSON"},
			{"UnknownRoot", "agent.create", map[string]any{"root": unknown, "name": "x"}, "404", "root 000000000000"},
			{"InvalidPath", "agent.create", map[string]any{"root": h.root, "name": "a.b"}, "400", `"a.b"`},
			{"InvalidParent", "agent.describe", map[string]any{"root": h.root, "path": "math_solver//x"}, "400", `"math_solver//x"`},
			{"Escalation", "agent.grant", map[string]any{"root": h.root, "path": "math_solver/equation_parser",
				"cap": map[string]any{"kind": "module", "name": "os"}}, "403", `module "os"`},
			{"EscalationBeyondParent", "agent.grant", map[string]any{"root": h.root, "path": "math_solver/equation_parser",
				"cap": map[string]any{"kind": "module", "name": "math", "include": []string{"pow"}}}, "403", `pow`},
			{"UnknownField", "task.resolve", map[string]any{"ref": h.refs[1], "limit": 3}, "400", `"limit"`},
			{"BadTaskRef", "task.resolve", map[string]any{"ref": "math_solver#solve"}, "400", `"math_solver#solve"`},
			{"MissingTask", "task.resolve", map[string]any{"ref": h.root + "/math_solver#integrate"}, "404", `"integrate"`},
			{"MissingAgent", "task.resolve", map[string]any{"ref": h.root + "/physics#solve"}, "404", `"physics"`},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := c.send(tc.endpoint, tc.body)
				require.NoError(t, r.err)
				require.Equal(t, tc.code, r.code, "reply: %s", r)
				require.Contains(t, r.desc, tc.names)
			})
		}
		require.NoError(t, healthy(url), "agentd answers health after bad requests")
		require.False(t, d.exited())
		require.Equal(t, h.resolve, h.resolveAll(t, c, 0), "nothing was written by the bad requests")
	})

	t.Run("Discovery", func(t *testing.T) {
		msg, err := c.nc.Request("$SRV.INFO.agentreg", nil, 5*time.Second)
		require.NoError(t, err)
		var info struct {
			Name      string `json:"name"`
			Version   string `json:"version"`
			Endpoints []struct {
				Name       string `json:"name"`
				Subject    string `json:"subject"`
				QueueGroup string `json:"queue_group"`
			} `json:"endpoints"`
		}
		require.NoError(t, json.Unmarshal(msg.Data, &info), "%s", msg.Data)
		require.Equal(t, "agentreg", info.Name)
		subjects := map[string]string{}
		for _, e := range info.Endpoints {
			subjects[e.Name] = e.Subject
			require.Equal(t, "agentreg", e.QueueGroup, "endpoint %s", e.Name)
		}
		require.Equal(t, "agentd.agent.create", subjects["agent_create"])
		require.Equal(t, "agentd.task.resolve", subjects["task_resolve"])
		require.Equal(t, "agentd.health", subjects["health"])
		require.NotContains(t, subjects, "task_invoke", "agentd has no executor")
	})

	t.Run("HTTP", func(t *testing.T) {
		code, body := httpGet(t, "http://"+httpAddr+"/healthz")
		require.Equal(t, http.StatusOK, code, body)
		// A write in this process's life: its follower counts one more event.
		followed := func() int {
			_, body := httpGet(t, "http://"+httpAddr+"/metrics")
			m := regexp.MustCompile(`(?m)^agentreg_events_followed_total (\d+)$`).FindStringSubmatch(body)
			require.NotNil(t, m, "no agentreg_events_followed_total in /metrics")
			n, err := strconv.Atoi(m[1])
			require.NoError(t, err)
			return n
		}
		before := followed()
		w := c.call("task.define", map[string]any{"root": h.root, "path": "math_solver", "task": task("check", "solution")})
		h.acked = seqOf(t, w)
		require.Eventually(t, func() bool { return followed() >= before+1 }, 10*time.Second, 10*time.Millisecond,
			"the follower counts the write (%d before it)", before)
		code, body = httpGet(t, "http://"+httpAddr+"/metrics")
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, body, `agentreg_request_duration_seconds_count{code="200",endpoint="task_resolve"}`)
		require.Contains(t, body, `agentreg_request_duration_seconds_count{code="400",endpoint="agent_create"}`)
	})
}

// writeNATSConfig writes a nats-server configuration for cluster node n.
func writeNATSConfig(t *testing.T, dir string, n, port, clusterPort int, routes []int) string {
	t.Helper()
	var rs []string
	for _, p := range routes {
		rs = append(rs, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	conf := fmt.Sprintf(`server_name: n%d
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: agentreg
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, n, port, filepath.Join(dir, "jetstream"), clusterPort, strings.Join(rs, ", "))
	path := filepath.Join(dir, "nats.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o644))
	return path
}

// TestCluster runs three agentd processes as a NATS cluster with the
// stream replicated three times, kills nodes, and checks that the API keeps
// answering and that every acknowledged write is still there.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster of three agentd processes: skipped with -short")
	}
	const n = 3
	// A request or a read that went to a node just killed is lost and
	// answered only by the timeout (10 s in agentd, 15 s here), and a new
	// stream leader is elected in a few seconds: allow for both.
	const failover = 45 * time.Second
	var nodes [n]*agentd
	ports, clusterPorts := make([]int, n), make([]int, n)
	for i := range n {
		ports[i], clusterPorts[i] = freePort(t), freePort(t)
	}
	for i := range n {
		dir := t.TempDir()
		conf := writeNATSConfig(t, dir, i+1, ports[i], clusterPorts[i], clusterPorts)
		httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		url := fmt.Sprintf("nats://127.0.0.1:%d", ports[i])
		nodes[i] = startAgentd(t, fmt.Sprintf("n%d", i+1), url, httpAddr,
			"--nats-config", conf, "--replicas", "3", "--http", httpAddr, "--log-level", "debug")
	}
	start := time.Now()
	for _, node := range nodes {
		node.waitReady(60 * time.Second)
	}
	t.Logf("cluster of %d ready after %v", n, time.Since(start))

	c := connect(t, nodes[0].url)
	require.Equal(t, 3, serviceInstances(t, c, 3), "every daemon serves the API")
	h := createHierarchy(t, c)
	h.resolve = h.resolveAll(t, c, 0)
	// Every node's daemon reads the writes acknowledged through node 1.
	for _, node := range nodes[1:] {
		other := connect(t, node.url)
		require.Equal(t, h.resolve, h.resolveAll(t, other, 0), "read through %s", node.name)
	}

	grant := func(c *api, path, capName string, timeout time.Duration) {
		t.Helper()
		w := c.eventually("agent.grant", map[string]any{"root": h.root, "path": path,
			"cap": map[string]any{"kind": "module", "name": capName}, "actor": "user:carol"}, timeout)
		require.Greater(t, seqOf(t, w), h.acked)
		h.acked = seqOf(t, w)
		h.grants[path] = capName
	}

	t.Run("KillAnotherNode", func(t *testing.T) {
		state, _ := nodes[2].kill(syscall.SIGKILL)
		require.NotNil(t, state)
		// Two of three replicas remain: reads and writes go on.
		h.resolveAll(t, c, failover)
		grant(c, "math_solver", "io", failover)
		h.checkGrants(t, c, failover)
		h.resolveAll(t, c, failover)

		// Bring it back, so that killing another node leaves a quorum.
		nodes[2] = nodes[2].restart()
		t.Logf("%s restarted, ready after %v", nodes[2].name, nodes[2].waitReady(60*time.Second))
		require.Equal(t, 3, serviceInstances(t, c, 3))
		back := connect(t, nodes[2].url)
		h.resolveAll(t, back, failover)
		h.checkGrants(t, back, failover)
	})

	t.Run("KillConnectedNode", func(t *testing.T) {
		state, _ := nodes[0].kill(syscall.SIGKILL)
		require.NotNil(t, state)
		c := connect(t, nodes[1].url+","+nodes[2].url)
		c.eventually("health", nil, failover)
		require.Equal(t, 2, serviceInstances(t, c, 2), "the daemons left serve the API")
		replies := h.resolveAll(t, c, failover)
		h.checkGrants(t, c, failover)
		for ref, r := range replies {
			require.Equal(t, h.root, strings.SplitN(ref, "/", 2)[0])
			require.Equal(t, "architect", r.(map[string]any)["root_name"])
		}
		// The surviving daemons take writes too.
		grant(c, "math_solver/equation_parser", "io", failover)
		h.checkGrants(t, c, failover)
		// And every daemon left answers for every acknowledged write.
		for _, node := range nodes[1:] {
			h.resolveAll(t, connect(t, node.url), failover)
		}
	})
}
