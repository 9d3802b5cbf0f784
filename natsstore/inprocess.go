package natsstore

import (
	"net"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
)

// inProcess hands nats.go in-process connections to an embedded server
// whose handshake cannot deadlock (see handshakeConn).
type inProcess struct{ srv *server.Server }

func (p inProcess) InProcessConn() (net.Conn, error) {
	conn, err := p.srv.InProcessConn()
	if err != nil {
		return nil, err
	}
	return newHandshakeConn(conn), nil
}

// handshakeConn is the client end of an in-process connection (a
// net.Pipe, where a write blocks until the other end reads it). nats.go
// writes CONNECT and then PING before it reads the server's answer; a
// server that refuses the CONNECT (wrong or missing credentials) writes
// its -ERR and closes without reading the PING, so each side waits for
// the other until the server's write deadline (10 s) and the client sees
// only "io: read/write on closed pipe" (nats-server's createClientEx and
// closeConnection, nats.go's sendConnect). So the writes of the handshake,
// up to the first bytes the server sends after them, are written by a
// goroutine of their own and the client goes on to read the answer:
// "nats: authorization violation", at once. Later writes go straight to
// the pipe, after the queued ones, in order.
type handshakeConn struct {
	net.Conn
	mu     sync.Mutex
	queued bool          // the handshake: writes go to q
	wrote  bool          // a write was queued
	q      chan []byte   // the handshake's writes, in order; closed when it ends
	done   chan struct{} // closed once every queued write was written (or failed)
	err    error         // the first queued write's error; read after done
}

func newHandshakeConn(conn net.Conn) *handshakeConn {
	c := &handshakeConn{Conn: conn, queued: true, q: make(chan []byte, 16), done: make(chan struct{})}
	go c.writeQueued()
	return c
}

func (c *handshakeConn) writeQueued() {
	defer close(c.done)
	for b := range c.q {
		if c.err != nil {
			continue
		}
		if _, err := c.Conn.Write(b); err != nil {
			c.err = err
		}
	}
}

// endHandshake stops queueing writes; c.mu held.
func (c *handshakeConn) endHandshake() {
	if c.queued {
		c.queued = false
		close(c.q)
	}
}

func (c *handshakeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.queued {
		c.wrote = true
		c.q <- append([]byte(nil), p...) // a handshake is a few writes: never more than q holds
		c.mu.Unlock()
		return len(p), nil
	}
	c.mu.Unlock()
	<-c.done
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Write(p)
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if c.wrote {
			c.endHandshake() // the server answered what the client sent
		}
		c.mu.Unlock()
	}
	return n, err
}

func (c *handshakeConn) Close() error {
	c.mu.Lock()
	c.endHandshake()
	c.mu.Unlock()
	return c.Conn.Close()
}
