package daemon

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"
)

// How a request waits for its min_seq.
//
// A read may ask for a registry that includes stream sequence min_seq
// (a write's reply seq). When the follower has not reached it, the request
// waits here, not on a worker: a client asking for sequences far ahead
// would otherwise hold every worker until its deadline, and every other
// client would be answered 503. The runtime's follow hook tells the
// waiters each sequence it receives (Daemon.followed); a request whose
// min_seq is reached joins the pool's queue, and its worker reads with
// the same min_seq (the runtime waits the moment the follower takes to
// hand the record out). A request still waiting at its deadline is
// answered 504 naming the sequence and the follower's position. At most
// Config.MinSeqWaiters requests wait; when they are as many, the one with
// the highest min_seq is answered 503 (the new one, or one waiting, which
// gives it its place): a client flooding the list with sequences far ahead
// does not keep out one waiting for a write a moment old.
//
// Position and waiters change under one lock, so a request either sees
// the follower past its min_seq or is woken when it gets there.

// waiters are the requests waiting for the follower to reach their
// min_seq, lowest first.
type waiters struct {
	mu  sync.Mutex
	at  uint64 // the newest sequence the follower received
	max int
	h   waitHeap
}

// waiter is one request in waiters.
type waiter struct {
	j     *job
	index int // in the heap; -1 once it left
	timer *time.Timer
}

// park adds j unless the follower has reached its min_seq. It returns
// waiting (j waits: it is answered or queued later) and refused: j, or a
// waiting job with a higher min_seq that gave j its place, when as many
// requests wait as may.
func (w *waiters) park(j *job, expire func(at uint64)) (waiting bool, refused *job) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if j.minSeq <= w.at {
		return false, nil
	}
	if len(w.h) >= w.max {
		hi := -1
		for i, wt := range w.h {
			if hi < 0 || wt.j.minSeq > w.h[hi].j.minSeq {
				hi = i
			}
		}
		if hi < 0 || w.h[hi].j.minSeq <= j.minSeq {
			return false, j
		}
		out := heap.Remove(&w.h, hi).(*waiter)
		out.timer.Stop()
		refused = out.j
	}
	wt := &waiter{j: j}
	heap.Push(&w.h, wt)
	wt.timer = time.AfterFunc(time.Until(j.deadline), func() {
		if at, ok := w.remove(wt); ok {
			expire(at)
		}
	})
	return true, refused
}

// remove takes wt out; false if it left before. It returns the
// follower's position.
func (w *waiters) remove(wt *waiter) (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wt.index < 0 {
		return w.at, false
	}
	heap.Remove(&w.h, wt.index)
	return w.at, true
}

// reached records that the follower received seq and returns the jobs
// whose min_seq it reached.
func (w *waiters) reached(seq uint64) []*job {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.at = max(w.at, seq)
	var out []*job
	for len(w.h) > 0 && w.h[0].j.minSeq <= w.at {
		wt := heap.Pop(&w.h).(*waiter)
		wt.timer.Stop()
		out = append(out, wt.j)
	}
	return out
}

// all removes and returns every waiting job (shutdown).
func (w *waiters) all() []*job {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]*job, 0, len(w.h))
	for len(w.h) > 0 {
		wt := heap.Pop(&w.h).(*waiter)
		wt.timer.Stop()
		out = append(out, wt.j)
	}
	return out
}

func (w *waiters) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.h)
}

// waitHeap orders waiters by min_seq (container/heap).
type waitHeap []*waiter

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(a, b int) bool { return h[a].j.minSeq < h[b].j.minSeq }
func (h waitHeap) Swap(a, b int) {
	h[a], h[b] = h[b], h[a]
	h[a].index, h[b].index = a, b
}
func (h *waitHeap) Push(x any) {
	wt := x.(*waiter)
	wt.index = len(*h)
	*h = append(*h, wt)
}
func (h *waitHeap) Pop() any {
	old := *h
	wt := old[len(old)-1]
	old[len(old)-1] = nil
	wt.index = -1
	*h = old[:len(old)-1]
	return wt
}

// admit queues j, or parks it until the follower reaches its min_seq.
func (d *Daemon) admit(j *job) {
	if j.minSeq == 0 {
		d.enqueue(j)
		return
	}
	name := j.rp.endpoint
	waiting, refused := d.waiting.park(j, func(at uint64) {
		j.answer("504", fmt.Sprintf("%s: wait for stream seq %d (min_seq) within the request deadline of %s: this daemon has read the log up to seq %d "+
			"(a sequence the stream does not hold yet: a min_seq is the seq a write answered; or the server is unreachable): %v",
			name, j.minSeq, d.cfg.RequestTimeout, at, context.DeadlineExceeded))
	})
	if refused != nil {
		if refused.answer("503", fmt.Sprintf("agentd is saturated: %s refused because %d requests wait for a min_seq the stream has not reached (Config.MinSeqWaiters), none higher than its %d: retry with backoff, or ask for a min_seq a write answered",
			refused.subject, d.waiting.max, refused.minSeq)) {
			d.metrics.saturatedReq(refused.rp.endpoint)
		}
	}
	if !waiting && refused != j {
		d.enqueue(j)
	}
}

// releaseWaiters hands the requests whose min_seq the follower reached to the
// pool. The follow hook calls it, which must return at once: the pool
// takes them on another goroutine.
func (d *Daemon) releaseWaiters(seq uint64) {
	if jobs := d.waiting.reached(seq); len(jobs) > 0 {
		go func() {
			for _, j := range jobs {
				d.enqueue(j)
			}
		}()
	}
}
