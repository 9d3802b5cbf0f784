package natsstore

import (
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
)

// ConnectOptions are the ways to reach and authenticate to an external
// NATS server or cluster. The zero value of each field is "not set".
type ConnectOptions struct {
	URL       string // comma-separated server URLs
	User      string
	Password  string
	Token     string
	NKeySeed  string // path of a file holding an nkey seed
	CredsFile string // path of a .creds file (JWT and seed)
	TLSCA     string // CA certificate file to verify the server
	TLSCert   string // client certificate file
	TLSKey    string // client key file
	Name      string // connection name shown by the server
}

// NATSOptions turns the connect options into nats.go options.
func (o ConnectOptions) NATSOptions() ([]nats.Option, error) {
	var opts []nats.Option
	if o.Name != "" {
		opts = append(opts, nats.Name(o.Name))
	}
	if o.User != "" || o.Password != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.NKeySeed != "" {
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeed)
		if err != nil {
			return nil, fmt.Errorf("nkey seed file %s: %w", o.NKeySeed, err)
		}
		opts = append(opts, opt)
	}
	if o.CredsFile != "" {
		if _, err := os.Stat(o.CredsFile); err != nil {
			return nil, fmt.Errorf("creds file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	}
	if o.TLSCA != "" {
		opts = append(opts, nats.RootCAs(o.TLSCA))
	}
	if o.TLSCert != "" || o.TLSKey != "" {
		if o.TLSCert == "" || o.TLSKey == "" {
			return nil, fmt.Errorf("TLS client certificate and key go together: got cert %q, key %q", o.TLSCert, o.TLSKey)
		}
		opts = append(opts, nats.ClientCert(o.TLSCert, o.TLSKey))
	}
	return opts, nil
}

// Dial connects with the options, and then extra (an error handler, say).
func (o ConnectOptions) Dial(extra ...nats.Option) (*nats.Conn, error) {
	if o.URL == "" {
		return nil, fmt.Errorf("connect: no NATS URL given")
	}
	opts, err := o.NATSOptions()
	if err != nil {
		return nil, err
	}
	return Connect(o.URL, append(opts, extra...)...)
}
