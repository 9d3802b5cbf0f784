package daemon

// ListenAddr is the address the embedded server's client listener is
// bound to (host:port, 0.0.0.0 for all interfaces), "" with an external
// server.
func (d *Daemon) ListenAddr() string {
	if d.emb == nil {
		return ""
	}
	return d.emb.ListenAddr()
}

// StoreDir is the directory the embedded server stores in (its JetStream
// data is under StoreDir/jetstream): the data directory, unless the NATS
// configuration file names another store_dir; "" with an external server.
func (d *Daemon) StoreDir() string {
	if d.emb == nil {
		return ""
	}
	return d.emb.StoreDir()
}
