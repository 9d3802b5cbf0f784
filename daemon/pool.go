package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

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
// queue time included. A request still queued at its deadline is answered
// 504 then, by its job's timer, and a worker that takes it later skips it
// (job.take). A request whose work has not returned shortly after its
// deadline is answered 504 by a timer; its worker stays busy until the
// work returns (the pool stays bounded), and the late result is logged and
// dropped.
//
// A read asking for a min_seq the follower has not reached waits outside
// the pool (minseq.go), so that requests for sequences far ahead hold no
// worker: it joins the queue when the follower gets there.
//
// Every request is answered exactly once (replier.once): by its work, by
// a timer, or by the refusal that admitted it no further. An error
// description is cut to maxErrorDesc bytes; an answer the server would
// refuse (over max_payload) becomes a short 500 saying so, so that the
// caller never waits for its timeout without a word.
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
	jobs    chan *job
	workers int
	running atomic.Int64 // requests a worker is running
	queued  atomic.Int64 // requests waiting for a worker
}

func newPool(workers, queue int) *pool {
	return &pool{jobs: make(chan *job, queue), workers: workers}
}

// start runs the workers until ctx ends; wg counts them.
func (p *pool) start(ctx context.Context, wg *sync.WaitGroup) {
	for range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case j := <-p.jobs:
					p.queued.Add(-1)
					if !j.take() {
						continue // answered at its deadline while queued
					}
					p.running.Add(1)
					j.run()
					p.running.Add(-1)
				case <-ctx.Done():
					return
				}
			}
		}()
	}
}

// submit queues j, false when the queue is full.
func (p *pool) submit(j *job) bool {
	p.queued.Add(1)
	select {
	case p.jobs <- j:
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
		case j := <-p.jobs:
			p.queued.Add(-1)
			if j.take() {
				j.run()
			}
		default:
			return
		}
	}
}

// A job's states: it waits (for a min_seq, or in the queue) until a
// worker takes it or it is answered without running (its deadline, a
// full queue, shutdown), whichever comes first.
const (
	jobWaiting int32 = iota
	jobTaken
	jobAnswered
)

// job is one admitted request.
type job struct {
	state    atomic.Int32
	rp       *replier
	subject  string    // the request's subject, for messages
	deadline time.Time // from its arrival (Config.RequestTimeout)
	minSeq   uint64    // the request's min_seq, 0 if none
	work     func()    // serves the request (serve)
	release  func()    // cancels its context, ends its inflight count
	timer    *time.Timer
}

// take claims j for a worker; false if it was answered already.
func (j *job) take() bool {
	if !j.state.CompareAndSwap(jobWaiting, jobTaken) {
		return false
	}
	if j.timer != nil {
		j.timer.Stop()
	}
	return true
}

// run serves a taken job.
func (j *job) run() {
	defer j.release()
	j.work()
}

// answer answers a job that did not run with a micro error; false if a
// worker took it, or it was answered, before.
func (j *job) answer(code, desc string) bool {
	if !j.state.CompareAndSwap(jobWaiting, jobAnswered) {
		return false
	}
	defer j.release()
	j.rp.send(code, desc, nil)
	return true
}

// enqueue hands j to the pool, with a timer that answers it 504 if it is
// still queued at its deadline; a full queue answers 503 at once.
func (d *Daemon) enqueue(j *job) {
	name := j.rp.endpoint
	// Set before the job is queued: a worker reads it after it takes the job.
	j.timer = time.AfterFunc(time.Until(j.deadline), func() {
		j.answer("504", fmt.Sprintf("%s: waited for a worker past the request deadline of %s (all %d workers busy): %v",
			name, d.cfg.RequestTimeout, d.pool.workers, context.DeadlineExceeded))
	})
	if !d.pool.submit(j) {
		j.timer.Stop()
		if j.answer("503", d.saturated(j.subject)) {
			d.metrics.saturatedReq(name)
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
		desc = clipDesc(desc)
		msg := r.msg(code, desc, body)
		if limit := r.d.nc.MaxPayload(); int64(msg.Size()) > limit {
			// The client library would refuse it, and the caller would
			// wait for its timeout without a word.
			r.d.log.Warn("reply over max_payload; answering 500", keyEndpoint, r.endpoint, keyCode, code, "bytes", msg.Size(), "max_payload", limit)
			desc = fmt.Sprintf("agentd could not send its answer: %d bytes (status %s), more than the NATS server's max_payload of %d: raise max_payload, or ask for less", msg.Size(), orOK(code), limit)
			code = "500"
			msg = r.msg(code, desc, nil)
		}
		if code == "" {
			code = "200"
		}
		// Counted before the answer leaves: a caller that reads the
		// stats after its answer finds it there.
		took := time.Since(r.start)
		r.d.metrics.request(r.endpoint, code, took)
		r.d.metrics.endpoint(r.endpoint).done(code, desc, took)
		if r.subject == "" {
			return
		}
		if err := r.d.nc.PublishMsg(msg); err != nil {
			r.d.log.Warn("reply failed; answering 500", keyEndpoint, r.endpoint, keyCode, code, keyErr, err)
			fallback := r.msg("500", fmt.Sprintf("agentd could not send its answer (status %s, %d bytes): %v", code, msg.Size(), err), nil)
			if err := r.d.nc.PublishMsg(fallback); err != nil {
				r.d.log.Warn("reply failed", keyEndpoint, r.endpoint, keyErr, err)
			}
		}
	})
	return sent
}

// msg is the reply message: body, with micro's error headers when code
// is set.
func (r *replier) msg(code, desc string, body []byte) *nats.Msg {
	msg := &nats.Msg{Subject: r.subject, Data: body}
	if code != "" {
		msg.Header = nats.Header{micro.ErrorHeader: []string{desc}, micro.ErrorCodeHeader: []string{code}}
	}
	return msg
}

func orOK(code string) string {
	if code == "" {
		return "200"
	}
	return code
}

// maxErrorDesc bounds the error description a reply carries (in a NATS
// header, which counts against the server's max_payload): a validation
// error can run to megabytes.
const maxErrorDesc = 4 << 10

// clipDesc cuts an error description to maxErrorDesc bytes (on a rune
// boundary, saying how much was cut) and puts its line breaks on one
// line: a header value holds one line.
func clipDesc(desc string) string {
	if len(desc) > maxErrorDesc {
		cut := maxErrorDesc
		for cut > 0 && !utf8.RuneStart(desc[cut]) {
			cut--
		}
		desc = fmt.Sprintf("%s … [%d more bytes cut: agentd sends at most %d bytes of an error; its DEBUG log has the whole text]", desc[:cut], len(desc)-cut, maxErrorDesc)
	}
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(desc)
}

// saturated is the 503 a full pool answers.
func (d *Daemon) saturated(subject string) string {
	return fmt.Sprintf("agentd is saturated: %s refused because all %d workers are busy and %d requests are queued (Config.Workers, agentd --workers; Config.QueueSize): retry with backoff, or run more agentd in the queue group",
		subject, d.pool.workers, cap(d.pool.jobs))
}
