package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const operationsDoc = "../../docs/operations.md"

// A walkthrough step: a fenced sh block of docs/operations.md with its
// marker (run=NAME: runs and exits 0; fails=NAME: runs and exits non-zero;
// start=NAME: a server started in the background), or a comment
// <!-- walkthrough: stop NAME --> (SIGTERM, exit 0) or kill NAME (SIGKILL).
type step struct {
	kind, name, text string
	line             int
}

var (
	fenceRE  = regexp.MustCompile("^```sh(?: (run|fails|start)=(\\S+))?\\s*$")
	markerRE = regexp.MustCompile(`^<!-- walkthrough: (stop|kill) (\S+) -->$`)
	// Ports on the page: 42xx (clients), 62xx (cluster routes), 82xx
	// (HTTP), each replaced by a free port.
	portRE = regexp.MustCompile(`\b[468]2\d\d\b`)
)

// walkthroughSteps reads the steps of the doc, in order. Every sh block
// must carry a marker: each command on the page is run.
func walkthroughSteps(doc string) ([]step, error) {
	var steps []step
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		if m := markerRE.FindStringSubmatch(lines[i]); m != nil {
			steps = append(steps, step{kind: m[1], name: m[2], line: i + 1})
			continue
		}
		if !strings.HasPrefix(lines[i], "```sh") {
			continue
		}
		m := fenceRE.FindStringSubmatch(lines[i])
		if m == nil || m[1] == "" {
			return nil, fmt.Errorf("line %d: an sh block without run=NAME, fails=NAME or start=NAME: %q", i+1, lines[i])
		}
		s := step{kind: m[1], name: m[2], line: i + 1}
		var body []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			body = append(body, lines[i])
		}
		if i == len(lines) {
			return nil, fmt.Errorf("line %d: sh block not closed", s.line)
		}
		s.text = strings.Join(body, "\n") + "\n"
		steps = append(steps, s)
	}
	return steps, nil
}

// tool finds a command the walkthrough needs on the PATH or in
// $(go env GOPATH)/bin. Missing, the test fails under CI=true (.ci/run
// installs it) and is skipped elsewhere, naming the install command.
func tool(t *testing.T, name, install string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "bin", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found on the PATH or in $(go env GOPATH)/bin; the operations walkthrough needs it: %s", name, install)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (.ci/run installs it)")
	}
	t.Skip(msg)
	return ""
}

// walkthroughChecks say what each named block's output must show.
var walkthroughChecks = map[string]func(out string) error{
	"write": func(out string) error {
		return wantAll(out, `"root":"3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10","seq":1`, `"path":"math_solver","seq":2`)
	},
	"restarted":  func(out string) error { return wantAll(out, `"path":"math_solver"`, `"primer":"You solve equations."`) },
	"micro":      func(out string) error { return wantAll(out, "agentreg", "agent_create", "Requests", "root_register") },
	"http":       func(out string) error { return wantAll(out, `"status":"ok"`, "agentreg_events_followed_total 2") },
	"backup":     func(out string) error { return wantAll(out, "OK: ", "2 messages") },
	"audit-data": func(out string) error { return wantAll(out, "clean: every hash chain intact") },
	"restore": func(out string) error {
		return wantAll(out, `Restored stream "AGENTREG"`, "clean: every hash chain intact")
	},
	"restored":          func(out string) error { return wantAll(out, `"path":"math_solver"`, `"primer":"You solve equations."`) },
	"restored-embedded": func(out string) error { return wantAll(out, `"path":"math_solver"`, `"primer":"You solve equations."`) },
	"nkey": func(out string) error {
		if !regexp.MustCompile(`(?m)^U[A-Z2-7]{55}$`).MatchString(out) {
			return fmt.Errorf("no user public key in the output")
		}
		return nil
	},
	"secure-client": func(out string) error { return wantAll(out, `"status":"ok"`) },
	"anonymous":     func(out string) error { return wantAll(out, "Authorization Violation") },
	"admin":         func(out string) error { return wantAll(out, "Information for Stream AGENTREG") },
	"cluster-write": func(out string) error {
		// micro ls: one row per instance, each with its 22-character id.
		if n := len(regexp.MustCompile(`│ [0-9A-Za-z]{22} │`).FindAllString(out, -1)); n != 3 {
			return fmt.Errorf("micro ls lists %d agentd instances, want 3", n)
		}
		if n := strings.Count(out, ", current,"); n != 2 {
			return fmt.Errorf("stream info shows %d current replicas besides the leader, want 2", n)
		}
		return wantAll(out, `"seq":1`, "Leader: n")
	},
	"degraded-write": func(out string) error { return wantAll(out, `"path":"math_solver","seq":2`) },
	// Blocks that write files the next ones use: exit status 0 is their check.
	"config": exitOnly, "cluster-config": exitOnly, "lost-disk": exitOnly,
	"recovered": func(out string) error {
		if strings.Contains(out, "Leader: n3 ") {
			return nil // the leader is current by definition
		}
		return wantAll(out, "Replica: n3, current")
	},
	"recovered-audit": func(out string) error { return wantAll(out, "clean: every hash chain intact", `"path":"math_solver"`) },
}

// retried blocks are run again until they succeed (within 45 s): a
// cluster electing leaders or a node catching up.
var retried = map[string]bool{"cluster-write": true, "degraded-write": true, "recovered": true, "recovered-audit": true}

func exitOnly(string) error { return nil }

func wantAll(out string, subs ...string) error {
	for _, s := range subs {
		if !strings.Contains(out, s) {
			return fmt.Errorf("output lacks %q", s)
		}
	}
	return nil
}

// server is a process a start block began, in a process group of its own.
type server struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

func (s *server) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// TestOperationsWalkthrough runs docs/operations.md: every sh block in
// order, in one working directory, servers on loopback with free ports.
func TestOperationsWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the operations walkthrough: servers, a cluster, backups")
	}
	natsBin := tool(t, "nats", "go install github.com/nats-io/natscli/nats@v0.5.1")
	serverBin := tool(t, "nats-server", "go install github.com/nats-io/nats-server/v2@v2.15.2")
	tool(t, "curl", "install curl")
	doc, err := os.ReadFile(operationsDoc)
	require.NoError(t, err)
	steps, err := walkthroughSteps(string(doc))
	require.NoError(t, err)

	// agentd and replay on the PATH, with the tools found.
	bin := t.TempDir()
	require.NoError(t, os.Symlink(agentdBin, filepath.Join(bin, "agentd")))
	out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "replay"), "../replay").CombinedOutput()
	require.NoError(t, err, "go build replay: %s", out)
	work, home := t.TempDir(), t.TempDir()
	writeWalkthroughCerts(t, work)
	env := []string{"HOME=" + home, "CLIENT_PASSWORD=client-secret", "ADMIN_PASSWORD=admin-secret",
		"PATH=" + strings.Join([]string{bin, filepath.Dir(natsBin), filepath.Dir(serverBin), os.Getenv("PATH")}, string(os.PathListSeparator))}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "HOME" || name == "PATH" || strings.HasPrefix(name, "NATS_") || strings.HasPrefix(name, "AGENTD_") || strings.HasPrefix(name, "AGENTREG_") {
			continue // nothing of the caller's NATS or agentd settings
		}
		env = append(env, kv)
	}

	ports := map[string]string{}
	withPorts := func(text string) string {
		return portRE.ReplaceAllStringFunc(text, func(p string) string {
			if _, ok := ports[p]; !ok {
				ports[p] = fmt.Sprint(freePort(t))
			}
			return ports[p]
		})
	}

	servers := map[string]*server{}
	var pending []*server
	t.Cleanup(func() {
		for _, s := range servers {
			if !s.exited() {
				_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
				<-s.done
			}
			if t.Failed() {
				t.Logf("%s output:\n%s", s.name, s.out.String())
			}
		}
	})
	// waitReady waits until every server started since the last wait
	// says it is ready (a cluster's nodes start together).
	waitReady := func() {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for _, s := range pending {
			ready := "agentd: serving"
			if s.name == "nats-server" {
				ready = "Server is ready"
			}
			for !strings.Contains(s.out.String(), ready) {
				if s.exited() {
					t.Fatalf("%s exited before it was ready (%v); output:\n%s", s.name, s.cmd.ProcessState, s.out.String())
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s not ready within 60s; output:\n%s", s.name, s.out.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		pending = nil
	}
	run := func(s step) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", withPorts(s.text))
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	start := time.Now()
	for _, s := range steps {
		begun := time.Now()
		switch s.kind {
		case "start":
			if old := servers[s.name]; old != nil && !old.exited() {
				t.Fatalf("line %d: %s started while still running", s.line, s.name)
			}
			cmd := exec.Command("bash", "-c", withPorts(s.text))
			cmd.Dir, cmd.Env = work, env
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			srv := &server{name: s.name, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
			cmd.Stdout, cmd.Stderr = srv.out, srv.out
			require.NoError(t, cmd.Start(), "line %d: start %s", s.line, s.name)
			go func() { _ = cmd.Wait(); close(srv.done) }()
			servers[s.name] = srv
			pending = append(pending, srv)
		case "stop", "kill":
			waitReady()
			srv := servers[s.name]
			require.NotNil(t, srv, "line %d: %s %s, which was never started", s.line, s.kind, s.name)
			sig := map[string]syscall.Signal{"stop": syscall.SIGTERM, "kill": syscall.SIGKILL}[s.kind]
			require.NoError(t, syscall.Kill(-srv.cmd.Process.Pid, sig))
			select {
			case <-srv.done:
			case <-time.After(20 * time.Second):
				t.Fatalf("line %d: %s still running 20s after %v", s.line, s.name, sig)
			}
			if s.kind == "stop" {
				require.Equal(t, 0, srv.cmd.ProcessState.ExitCode(), "line %d: %s exits 0 on SIGTERM; output:\n%s", s.line, s.name, srv.out.String())
			}
		case "run", "fails":
			waitReady()
			check := walkthroughChecks[s.name]
			require.NotNil(t, check, "line %d: no check for block %s", s.line, s.name)
			deadline := time.Now().Add(45 * time.Second)
			for {
				out, err := run(s)
				if s.kind == "fails" {
					require.Error(t, err, "line %d: block %s should fail; output:\n%s", s.line, s.name, out)
					var exit *exec.ExitError
					require.ErrorAs(t, err, &exit, "line %d: block %s", s.line, s.name)
				}
				if s.kind == "run" && err != nil {
					err = fmt.Errorf("%w; output:\n%s", err, out)
				} else {
					err = check(out)
				}
				if err == nil {
					t.Logf("line %d: %s %s: ok (%v)", s.line, s.kind, s.name, time.Since(begun).Round(time.Millisecond))
					break
				}
				if !retried[s.name] || time.Now().After(deadline) {
					t.Fatalf("line %d: block %s: %v\n%s", s.line, s.name, err, out)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	}
	t.Logf("walkthrough: %d steps in %v", len(steps), time.Since(start).Round(time.Millisecond))
}

// TestWalkthroughSteps: the doc parses into the steps the walkthrough
// needs, and an unmarked sh block is an error (every command is run).
func TestWalkthroughSteps(t *testing.T) {
	doc, err := os.ReadFile(operationsDoc)
	require.NoError(t, err)
	steps, err := walkthroughSteps(string(doc))
	require.NoError(t, err)
	kinds := map[string]int{}
	for _, s := range steps {
		kinds[s.kind]++
		if s.kind == "run" || s.kind == "fails" {
			require.Contains(t, walkthroughChecks, s.name, "line %d: block %s has no check", s.line, s.name)
		}
	}
	require.Positive(t, kinds["run"])
	require.Positive(t, kinds["fails"])
	require.Positive(t, kinds["start"])
	require.Positive(t, kinds["stop"])
	require.Positive(t, kinds["kill"])
	_, err = walkthroughSteps("text\n```sh\nrm -rf /\n```\n")
	require.ErrorContains(t, err, "line 2: an sh block without run=NAME")
}

// writeWalkthroughCerts writes what the doc takes from the operator's CA:
// ca.pem, a server certificate for 127.0.0.1, and a client certificate.
func writeWalkthroughCerts(t *testing.T, dir string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "walkthrough CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	writePEMFile(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", caDER)
	for i, name := range []string{"server", "client"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		if name == "server" {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
			tmpl.DNSNames = []string{"localhost"}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		require.NoError(t, err)
		kder, err := x509.MarshalPKCS8PrivateKey(key)
		require.NoError(t, err)
		writePEMFile(t, filepath.Join(dir, name+"-cert.pem"), "CERTIFICATE", der)
		writePEMFile(t, filepath.Join(dir, name+"-key.pem"), "PRIVATE KEY", kder)
	}
}

func writePEMFile(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}
