package security_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/natsstore"
)

const tlsConf = "testdata/tls.conf"

// authority is a test CA that issues certificates into a directory.
type authority struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
}

var serial int64

func newAuthority(t *testing.T, dir, name string) *authority {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	a := &authority{t: t, dir: dir, cert: cert, key: key, file: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, a.file, "CERTIFICATE", der)
	return a
}

// issue makes a certificate for name (server: for 127.0.0.1 and
// localhost) and returns the certificate and key files.
func (a *authority) issue(name string, server bool) (certFile, keyFile string) {
	t := a.t
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(a.dir, name+"-cert.pem"), filepath.Join(a.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
}

// TestAgentdOverTLS starts a nats-server from testdata/tls.conf with
// certificates from a test CA and runs agentd against it over TLS.
func TestAgentdOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newAuthority(t, dir, "agentreg-test")
	serverCert, serverKey := ca.issue("nats-server", true)
	agentdCert, agentdKey := ca.issue("agentd", false)
	clientCert, clientKey := ca.issue("client", false)
	t.Setenv("NATS_SERVER_CERT", serverCert)
	t.Setenv("NATS_SERVER_KEY", serverKey)
	t.Setenv("NATS_CA", ca.file)

	opts, err := server.ProcessConfigFile(tlsConf)
	require.NoError(t, err)
	require.Equal(t, tls.RequireAndVerifyClientCert, opts.TLSConfig.ClientAuth, "the server requires client certificates")
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.StoreDir = t.TempDir()
	opts.NoSigs = true
	srv, err := server.NewServer(opts)
	require.NoError(t, err)
	v := &violations{t: t, by: map[string][]string{}}
	srv.SetLoggerV2(v, false, false, false)
	srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second))
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
		v.mu.Lock()
		v.done = true
		v.mu.Unlock()
	})
	url := "tls://" + srv.Addr().String()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := daemon.Start(ctx, daemon.Config{
		Conn:   natsstore.ConnectOptions{URL: url, TLSCA: ca.file, TLSCert: agentdCert, TLSKey: agentdKey, Name: "agentd"},
		Logger: testLogger(t),
	})
	require.NoError(t, err, "agentd over TLS")
	t.Cleanup(func() { require.NoError(t, d.Close()) })

	t.Run("agentd serves over TLS", func(t *testing.T) {
		nc, err := natsstore.ConnectOptions{URL: url, TLSCA: ca.file, TLSCert: clientCert, TLSKey: clientKey}.Dial()
		require.NoError(t, err)
		defer nc.Close()
		state, err := nc.TLSConnectionState()
		require.NoError(t, err)
		require.True(t, state.HandshakeComplete)
		require.NotEmpty(t, state.VerifiedChains, "the client verified the server against the CA")
		require.Equal(t, "nats-server", state.PeerCertificates[0].Subject.CommonName)
		var health map[string]any
		call(t, nc, "health", nil, &health)
		require.Equal(t, "ok", health["status"])
		require.Equal(t, "AGENTREG", health["stream"])
	})

	t.Run("without the CA the server is not trusted", func(t *testing.T) {
		start := time.Now()
		_, err := daemon.Start(ctx, daemon.Config{
			Conn:   natsstore.ConnectOptions{URL: url, TLSCert: agentdCert, TLSKey: agentdKey},
			Logger: testLogger(t),
		})
		require.Error(t, err)
		var unknown x509.UnknownAuthorityError
		require.True(t, errors.As(err, &unknown), "want x509.UnknownAuthorityError, got %T: %v", err, err)
		require.Contains(t, err.Error(), "connect to NATS at "+url)
		require.Contains(t, err.Error(), "tls: failed to verify certificate: x509: certificate signed by unknown authority")
		require.Less(t, time.Since(start), 10*time.Second, "fails at once, no retries")
	})

	const noCert = "TLS handshake error: tls: client didn't provide a certificate"
	t.Run("without a client certificate the server refuses", func(t *testing.T) {
		before := v.count(noCert)
		_, err := natsstore.ConnectOptions{URL: url, TLSCA: ca.file}.Dial()
		require.Error(t, err)
		require.Contains(t, err.Error(), "tls")
		v.logged(t, before, noCert)
	})

	t.Run("a client certificate from another CA is refused", func(t *testing.T) {
		rogue := newAuthority(t, dir, "rogue")
		cert, key := rogue.issue("mallory", false)
		before := v.count(noCert)
		_, err := natsstore.ConnectOptions{URL: url, TLSCA: ca.file, TLSCert: cert, TLSKey: key}.Dial()
		require.Error(t, err)
		require.Contains(t, err.Error(), "tls")
		// The server names the CAs it accepts; Go's client withholds a
		// certificate none of them signed.
		v.logged(t, before, noCert)
	})

	t.Run("a client without TLS options does not trust the server", func(t *testing.T) {
		// nats:// upgrades to TLS when the server requires it, then
		// verifies the server against the system roots.
		_, err := natsstore.ConnectOptions{URL: "nats://" + srv.Addr().String()}.Dial()
		var unknown x509.UnknownAuthorityError
		require.True(t, errors.As(err, &unknown), "want x509.UnknownAuthorityError, got %T: %v", err, err)
	})
}
