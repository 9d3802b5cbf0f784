package natsstore_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/natsstore"
)

// writeConf writes a nats-server configuration into dir.
func writeConf(t *testing.T, dir, text string) string {
	t.Helper()
	path := filepath.Join(dir, "nats.conf")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

func startEmbedded(t *testing.T, o natsstore.EmbeddedOptions) *natsstore.Embedded {
	t.Helper()
	e, err := natsstore.StartEmbedded(o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// TestEmbeddedAuth: an embedded server whose configuration has accounts,
// users and nkeys (no no_auth_user) admits its in-process connection with
// a user's credentials, and refuses one without them at once, saying why
// (not "io: read/write on closed pipe" after the server's 10 s write
// deadline).
func TestEmbeddedAuth(t *testing.T) {
	dir := t.TempDir()
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	seedFile := filepath.Join(dir, "agentd.nk")
	require.NoError(t, os.WriteFile(seedFile, seed, 0o600))
	conf := writeConf(t, dir, `listen: 127.0.0.1:-1
accounts {
  AGENTREG {
    jetstream: enabled
    users: [
      {user: agentd, password: secret}
      {nkey: `+pub+`}
    ]
  }
}
`)
	e := startEmbedded(t, natsstore.EmbeddedOptions{Dir: filepath.Join(dir, "data"), ConfigFile: conf})

	for name, opt := range map[string]nats.Option{
		"password": nats.UserInfo("agentd", "secret"),
		"nkey":     mustNkey(t, seedFile),
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := e.Connect(opt)
			require.NoError(t, err)
			defer nc.Close()
			// The connection is the user's, in its account, with JetStream.
			msg, err := nc.Request("$JS.API.INFO", nil, 5*time.Second)
			require.NoError(t, err)
			require.Contains(t, string(msg.Data), `"type":"io.nats.jetstream.api.v1.account_info_response"`)
			require.NotContains(t, string(msg.Data), `"error"`)
			// Publish-subscribe over the in-process connection, past the handshake.
			sub, err := nc.SubscribeSync("x.y")
			require.NoError(t, err)
			big := []byte(strings.Repeat("z", 200_000))
			for range 20 {
				require.NoError(t, nc.Publish("x.y", big))
			}
			for range 20 {
				m, err := sub.NextMsg(5 * time.Second)
				require.NoError(t, err)
				require.Len(t, m.Data, len(big))
			}
		})
	}

	for name, opts := range map[string][]nats.Option{
		"wrong password": {nats.UserInfo("agentd", "guess")},
		"no credentials": nil,
		"unknown user":   {nats.UserInfo("mallory", "secret")},
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := e.Connect(opts...)
			require.ErrorIs(t, err, nats.ErrAuthorization)
			require.Contains(t, err.Error(), "connect to embedded server: nats: Authorization Violation")
			require.Contains(t, err.Error(), "give the credentials of a user it defines")
			require.Less(t, time.Since(start), 2*time.Second, "refused at once")
		})
	}
}

func mustNkey(t *testing.T, seedFile string) nats.Option {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(seedFile)
	require.NoError(t, err)
	return opt
}

// TestEmbeddedListen: a configuration file without a listen address
// listens on 127.0.0.1 (nats-server alone would take 0.0.0.0); one with
// it listens where it says; host and port options do not mix with a file.
func TestEmbeddedListen(t *testing.T) {
	dir := t.TempDir()
	conf := writeConf(t, dir, "port: -1\n")
	e := startEmbedded(t, natsstore.EmbeddedOptions{Dir: filepath.Join(dir, "a"), ConfigFile: conf})
	host, _, err := net.SplitHostPort(e.ListenAddr())
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", host, "no listen in the file: loopback only")

	sc, err := natsstore.ReadServerConfig(conf)
	require.NoError(t, err)
	require.Equal(t, natsstore.ServerConfig{Listen: "127.0.0.1:-1", SetsPort: true}, sc)

	dir2 := t.TempDir()
	store := filepath.Join(dir2, "store")
	conf2 := writeConf(t, dir2, "listen: 0.0.0.0:-1\njetstream { store_dir: "+`"`+store+`"`+" }\n")
	sc, err = natsstore.ReadServerConfig(conf2)
	require.NoError(t, err)
	require.Equal(t, natsstore.ServerConfig{Listen: "0.0.0.0:-1", SetsHost: true, SetsPort: true, StoreDir: store}, sc)
	e2 := startEmbedded(t, natsstore.EmbeddedOptions{Dir: filepath.Join(dir2, "unused"), ConfigFile: conf2})
	host, _, err = net.SplitHostPort(e2.ListenAddr())
	require.NoError(t, err)
	require.Equal(t, "0.0.0.0", host, "the file's listen address")
	require.Equal(t, store, e2.StoreDir(), "the file's store_dir")

	_, err = natsstore.StartEmbedded(natsstore.EmbeddedOptions{Dir: t.TempDir(), ConfigFile: conf, Port: 4333})
	require.ErrorContains(t, err, "sets the listen address; give no host or port with it")
}

// TestEmbeddedTLS: a configuration that requires TLS with client
// certificates (verify: true) of its TCP clients still admits the
// in-process connection without TLS (nats-server makes TLS optional
// in-process), and with TLS options the in-process connection is TLS,
// verified both ways.
func TestEmbeddedTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caFile := selfSignedCA(t, dir)
	serverCert, serverKey := issueCert(t, dir, "server", ca, caKey, true)
	clientCert, clientKey := issueCert(t, dir, "agentd", ca, caKey, false)
	conf := writeConf(t, dir, `port: -1
tls {
  cert_file: "`+serverCert+`"
  key_file: "`+serverKey+`"
  ca_file: "`+caFile+`"
  verify: true
}
`)
	e := startEmbedded(t, natsstore.EmbeddedOptions{Dir: filepath.Join(dir, "data"), ConfigFile: conf})

	nc, err := e.Connect()
	require.NoError(t, err, "in-process without TLS")
	_, err = nc.TLSConnectionState()
	require.Error(t, err, "not a TLS connection")
	require.NoError(t, nc.Flush())
	nc.Close()

	opts, err := natsstore.ConnectOptions{TLSCA: caFile, TLSCert: clientCert, TLSKey: clientKey}.NATSOptions()
	require.NoError(t, err)
	nc, err = e.Connect(opts...)
	require.NoError(t, err, "in-process with TLS")
	defer nc.Close()
	state, err := nc.TLSConnectionState()
	require.NoError(t, err)
	require.True(t, state.HandshakeComplete)
	require.NotEmpty(t, state.VerifiedChains, "the client verified the server")
	require.NoError(t, nc.Flush())

	// Over TCP the server requires TLS and a client certificate.
	_, err = nats.Connect(e.URL(), nats.RootCAs(caFile))
	require.Error(t, err, "a TCP client without a certificate")
	tcp, err := nats.Connect(e.URL(), nats.RootCAs(caFile), nats.ClientCert(clientCert, clientKey))
	require.NoError(t, err)
	tcp.Close()
}

func selfSignedCA(t *testing.T, dir string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	file := filepath.Join(dir, "ca.pem")
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	return cert, key, file
}

func issueCert(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, server bool) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(dir, name+"-cert.pem"), filepath.Join(dir, name+"-key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile
}
