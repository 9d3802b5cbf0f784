package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"
)

// operatorMode is a decentralized-auth (JWT) setup: an operator, a system
// account, account AGENTREG with JetStream, and .creds files for its users.
type operatorMode struct {
	conf  string
	creds map[string]string // user -> .creds file
}

func newOperatorMode(t *testing.T, dir string, port int, store string, users ...string) operatorMode {
	t.Helper()
	okp, err := nkeys.CreateOperator()
	require.NoError(t, err)
	opub, err := okp.PublicKey()
	require.NoError(t, err)
	ojwt, err := jwt.NewOperatorClaims(opub).Encode(okp)
	require.NoError(t, err)
	account := func(name string, js bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		require.NoError(t, err)
		pub, err := kp.PublicKey()
		require.NoError(t, err)
		c := jwt.NewAccountClaims(pub)
		c.Name = name
		if js {
			c.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit, Streams: jwt.NoLimit, Consumer: jwt.NoLimit}
		}
		tok, err := c.Encode(okp)
		require.NoError(t, err)
		return kp, pub, tok
	}
	_, sysPub, sysJWT := account("SYS", false)
	akp, accPub, accJWT := account("AGENTREG", true)
	om := operatorMode{creds: map[string]string{}}
	for _, user := range users {
		ukp, err := nkeys.CreateUser()
		require.NoError(t, err)
		upub, err := ukp.PublicKey()
		require.NoError(t, err)
		uc := jwt.NewUserClaims(upub)
		uc.Name = user
		tok, err := uc.Encode(akp)
		require.NoError(t, err)
		seed, err := ukp.Seed()
		require.NoError(t, err)
		creds, err := jwt.FormatUserConfig(tok, seed)
		require.NoError(t, err)
		om.creds[user] = filepath.Join(dir, user+".creds")
		require.NoError(t, os.WriteFile(om.creds[user], creds, 0o600))
	}
	om.conf = filepath.Join(dir, "operator.conf")
	require.NoError(t, os.WriteFile(om.conf, []byte(fmt.Sprintf(`listen: 127.0.0.1:%d
jetstream { store_dir: %q }
operator: %s
system_account: %s
resolver: MEMORY
resolver_preload: {
  %s: %s
  %s: %s
}
`, port, store, ojwt, sysPub, sysPub, sysJWT, accPub, accJWT)), 0o600))
	return om
}

// TestNATSConfigCreds: agentd's embedded server in operator mode (JWT
// accounts and users): agentd connects in-process with --creds (here
// NATS_CREDS) and serves a client that connects with its own .creds;
// without credentials it stops at once.
func TestNATSConfigCreds(t *testing.T) {
	dir := t.TempDir()
	port, httpPort := freePort(t), freePort(t)
	om := newOperatorMode(t, dir, port, filepath.Join(dir, "store"), "agentd", "client")
	url, httpAddr := fmt.Sprintf("nats://127.0.0.1:%d", port), fmt.Sprintf("127.0.0.1:%d", httpPort)

	code, out := runAgentd(t, nil, "--nats-config", om.conf)
	require.Equal(t, 1, code, out)
	require.Contains(t, out, "connect to embedded server: nats: Authorization Violation")

	a := &agentd{t: t, name: "agentd", url: url, httpAddr: httpAddr,
		args:     []string{"--nats-config", om.conf, "--http", httpAddr},
		env:      []string{"NATS_CREDS=" + om.creds["agentd"]},
		natsOpts: []nats.Option{nats.UserCredentials(om.creds["client"])}}
	a.start()
	a.waitReady(30 * time.Second)
	nc, err := nats.Connect(url, nats.UserCredentials(om.creds["client"]))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	c := &api{t: t, nc: nc}
	h := createHierarchy(t, c)
	h.resolveAll(t, c, 0)
}
