package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/agentreg/agentreg/events"
	"github.com/agentreg/agentreg/natsstore"
)

// observedLog is the daemon's log as the runtime sees it: every method of
// natsstore.Log, with appends refused for a moved-on subject counted
// (agentreg_append_conflicts_total).
type observedLog struct {
	*natsstore.Log
	conflict func()
}

func (l observedLog) AppendEvent(ctx context.Context, m events.Message) (natsstore.Appended, error) {
	a, err := l.Log.AppendEvent(ctx, m)
	if errors.Is(err, events.ErrConflict) {
		l.conflict()
	}
	return a, err
}

// snapshotted counts a background snapshot (the runtime logs a failure).
func (d *Daemon) snapshotted(root string, seq uint64, err error) {
	if err != nil {
		d.metrics.snapshots.WithLabelValues("failed").Inc()
		return
	}
	d.metrics.snapshots.WithLabelValues("taken").Inc()
}

// watchFollower compares, every Config.FollowerCheck, the follower's
// position with the stream's last sequence. A lag of
// Config.FollowerLagThreshold messages or more that lasts
// Config.FollowerLagFor is logged at WARN (again each FollowerLagFor while
// it lasts), as "stopped" when the follower received nothing meanwhile:
// every loaded registry is then behind the stream, and reads with a
// min_seq past the follower wait and answer 504. Its end is logged at
// INFO. A stream that cannot be asked is left to /healthz.
func (d *Daemon) watchFollower() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.FollowerCheck)
	defer t.Stop()
	var since, warned time.Time // lagging since; last WARN
	var posSince uint64
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(d.ctx, d.cfg.FollowerCheck)
		last, err := d.store.LastStreamSeq(ctx)
		cancel()
		if err != nil {
			continue
		}
		pos := d.rt.FollowPosition()
		lag := last - min(last, pos)
		now := time.Now()
		if lag < d.cfg.FollowerLagThreshold || lag == 0 {
			if !warned.IsZero() {
				d.log.Info("follower caught up with the stream", "followed_seq", pos, "stream_last_seq", last)
			}
			since, warned = time.Time{}, time.Time{}
			d.metrics.followerStalled.Set(0)
			continue
		}
		if since.IsZero() {
			since, posSince = now, pos
			continue
		}
		if now.Sub(since) < d.cfg.FollowerLagFor || now.Sub(warned) < d.cfg.FollowerLagFor {
			continue
		}
		warned = now
		d.metrics.followerStalled.Set(1)
		stats := d.rt.Stats()
		behind := []string{}
		for _, s := range stats {
			if s.Seq < last && len(behind) < 5 {
				name := ""
				if def, ok := d.rt.RootDef(s.Root); ok {
					name = def.Name
				}
				behind = append(behind, name+"@"+string(s.Root)[:min(12, len(s.Root))])
			}
		}
		msg := "follower lagging: loaded registries are behind the stream"
		if pos == posSince {
			msg = "follower stopped: it received nothing while the stream grew; loaded registries are behind the stream"
		}
		d.log.Warn(msg, "stream", d.store.Config().Stream, "followed_seq", pos, "stream_last_seq", last, "lag", lag,
			"for", now.Sub(since).Round(time.Second), "loaded_roots", len(stats), "roots_behind", behind)
	}
}
