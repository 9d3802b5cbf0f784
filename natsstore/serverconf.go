package natsstore

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
)

// DefaultHost is where an embedded server listens unless told otherwise,
// a configuration file without a listen address included.
const DefaultHost = "127.0.0.1"

// ServerConfig is what a nats-server configuration file says about the
// settings an embedded server's options would otherwise give: the client
// listen address and the JetStream store directory.
type ServerConfig struct {
	Listen   string // the client listen address an embedded server uses with this file (host:port)
	SetsHost bool   // listen, host or net is set
	SetsPort bool   // listen or port is set
	StoreDir string // the JetStream store directory it sets (store_dir, jetstream { store_dir }), "" if none
}

// ReadServerConfig reads the settings of a nats-server configuration file
// that an embedded server's own options would otherwise set, as
// nats-server reads them (includes and $VARIABLES resolved).
func ReadServerConfig(path string) (ServerConfig, error) {
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		return ServerConfig{}, fmt.Errorf("config file %s: %w", path, err)
	}
	m, err := conf.ParseFile(path)
	if err != nil {
		return ServerConfig{}, fmt.Errorf("config file %s: %w", path, err)
	}
	var sc ServerConfig
	for k := range m {
		switch strings.ToLower(k) {
		case "listen":
			sc.SetsHost, sc.SetsPort = true, true
		case "host", "net":
			sc.SetsHost = true
		case "port":
			sc.SetsPort = true
		}
	}
	host, port := opts.Host, opts.Port
	if !sc.SetsHost {
		host = DefaultHost
	} else if host == "" {
		host = "0.0.0.0" // nats-server's default, for "listen: :4222"
	}
	if port == 0 {
		port = server.DEFAULT_PORT
	}
	sc.Listen = net.JoinHostPort(host, strconv.Itoa(port))
	sc.StoreDir = opts.StoreDir
	return sc, nil
}
