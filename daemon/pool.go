package daemon

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// How a request is handled.
//
// nats.go's micro calls an endpoint's handler for one message at a time
// (one subscription, one goroutine), so the handler only admits the
// request: it takes the body, the reply subject and the caller the server
// named, and hands the work to the daemon's pool of Config.Workers
// goroutines through a queue of Config.QueueSize requests, shared by every
// endpoint. When the queue is full the request is answered 503 at once,
// naming the endpoint and the pool's size. A worker answers on the
// request's reply subject itself (a plain publish with micro's error
// headers: micro's own Request must not be touched after its handler
// returned).
//
// Each request's deadline (Config.RequestTimeout) runs from its arrival,
// queue time included; a request still queued at its deadline is answered
// 504 without running. A request whose work has not returned shortly after
// its deadline is answered 504 by a timer; its worker stays busy until the
// work returns (the pool stays bounded), and the late result is logged and
// dropped.
//
// The pool adds no lock: agent.Runtime serialises what must be (the
// writes and folds of one root, under that root's lock); requests for
// different roots, and reads, run in parallel.

// lateGrace is how long after a request's deadline its work may still
// answer before the timer answers 504: enough for work that honours its
// context to report its own error, which says what it was waiting for.
const lateGrace = 200 * time.Millisecond

// pool is the daemon's bounded set of request workers.
type pool struct {
	jobs    chan func()
	workers int
	running atomic.Int64 // requests a worker is running
	queued  atomic.Int64 // requests waiting for a worker
}

func newPool(workers, queue int) *pool {
	return &pool{jobs: make(chan func(), queue), workers: workers}
}

// start runs the workers until ctx ends; wg counts them.
func (p *pool) start(ctx context.Context, wg *sync.WaitGroup) {
	for range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case job := <-p.jobs:
					p.queued.Add(-1)
					p.running.Add(1)
					job()
					p.running.Add(-1)
				case <-ctx.Done():
					return
				}
			}
		}()
	}
}

// submit queues job, false when the queue is full.
func (p *pool) submit(job func()) bool {
	p.queued.Add(1)
	select {
	case p.jobs <- job:
		return true
	default:
		p.queued.Add(-1)
		return false
	}
}

// drain runs the jobs still queued (after the workers stopped: their
// context is cancelled, so each answers at once).
func (p *pool) drain() {
	for {
		select {
		case job := <-p.jobs:
			p.queued.Add(-1)
			job()
		default:
			return
		}
	}
}

// replier answers one request once: by its work or by the deadline timer,
// whichever comes first.
type replier struct {
	d        *Daemon
	endpoint string
	subject  string // the request's reply subject
	start    time.Time
	once     sync.Once
}

// send answers with body (code "") or a micro error; it reports whether
// this answer was the one sent.
func (r *replier) send(code, desc string, body []byte) bool {
	sent := false
	r.once.Do(func() {
		sent = true
		msg := &nats.Msg{Subject: r.subject, Data: body}
		if code != "" {
			msg.Header = nats.Header{micro.ErrorHeader: []string{desc}, micro.ErrorCodeHeader: []string{code}}
		} else {
			code = "200"
		}
		// Counted before the answer leaves: a caller that reads the
		// stats after its answer finds it there.
		took := time.Since(r.start)
		r.d.metrics.request(r.endpoint, code, took)
		r.d.metrics.endpoint(r.endpoint).done(code, desc, took)
		if r.subject != "" {
			if err := r.d.nc.PublishMsg(msg); err != nil {
				r.d.log.Warn("reply failed", keyEndpoint, r.endpoint, keyErr, err)
			}
		}
	})
	return sent
}

// saturated is the 503 a full pool answers.
func (d *Daemon) saturated(subject string) string {
	return fmt.Sprintf("agentd is saturated: %s refused because all %d workers are busy and %d requests are queued (Config.Workers, agentd --workers; Config.QueueSize): retry with backoff, or run more agentd in the queue group",
		subject, d.pool.workers, cap(d.pool.jobs))
}
