package main

// --- agentd under load: 200 concurrent NATS clients ---

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/agentreg/agentreg/agent"
	"github.com/agentreg/agentreg/daemon"
	"github.com/agentreg/agentreg/events"
)

// agentdLoadFigures starts agentd in-process (daemon.Start with its own
// embedded server on a free port), then drives it with -load-clients
// concurrent NATS clients, each on its own connection: first
// -load-requests task.resolve requests each (warm refs), then as many
// agent.create requests each (spread over -load-roots roots: the runtime
// serialises the writes of one root). It prints p50 and p99 per endpoint
// beside the single-call p50 through agentd (one client, one request at a
// time) and the in-process cost of the same call (agent.Runtime.Resolve
// and Create on the daemon's own runtime, measured in the same run).
// Target: p99 at -load-clients concurrent <= 10x the single-call p50.
func (b *bench) agentdLoadFigures(ctx context.Context) error {
	clients, perClient, nRoots := b.p.loadClients, b.p.loadRequests, b.p.loadRoots
	dir, err := os.MkdirTemp("", "agentbench-agentd-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d, err := daemon.Start(ctx, daemon.Config{DataDir: dir, Host: "127.0.0.1", Port: -1, SnapshotEvery: 0,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return fmt.Errorf("start agentd: %w", err)
	}
	defer d.Close()
	conns := make([]*nats.Conn, clients)
	for i := range conns {
		if conns[i], err = nats.Connect(d.URL()); err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		defer conns[i].Close()
	}
	call := func(nc *nats.Conn, subject string, req, out any) (time.Duration, error) {
		body, err := json.Marshal(req)
		if err != nil {
			return 0, err
		}
		start := time.Now()
		msg, err := nc.RequestWithContext(ctx, "agentd."+subject, body)
		took := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", subject, err)
		}
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
			return 0, fmt.Errorf("%s: %s %s", subject, code, msg.Header.Get(micro.ErrorHeader))
		}
		if out != nil {
			return took, json.Unmarshal(msg.Data, out)
		}
		return took, nil
	}

	// Roots, each with parents holding a task: what the load resolves and
	// creates under.
	const parents = 8
	task := events.TaskDef{Name: "solve", Doc: "solves", Input: events.Schema{Type: "object", Fields: []events.Field{
		{Name: "q", Schema: events.Schema{Type: "string"}, Required: true}}}, Output: events.Schema{Type: "string"}}
	var roots []string
	var refs []agent.TaskRef
	for r := range nRoots {
		def := events.RootDef{Name: fmt.Sprintf("load%d", r), Primer: "You create specialists.",
			Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math"}, {Kind: events.KindModule, Name: "io"}}}
		var w daemon.WriteReply
		if _, err := call(conns[0], "root.register", daemon.RegisterRootRequest{Def: def}, &w); err != nil {
			return err
		}
		roots = append(roots, w.Root)
		for p := range parents {
			name := fmt.Sprintf("p%d", p)
			if _, err := call(conns[0], "agent.create", daemon.CreateRequest{Root: w.Root, Name: name,
				Capabilities: []events.Capability{{Kind: events.KindModule, Name: "math", Include: []string{"sqrt", "abs"}}},
				Tasks:        []events.TaskDef{task}}, nil); err != nil {
				return err
			}
			refs = append(refs, agent.TaskRef{Root: agent.RootID(w.Root), Path: name, Task: "solve"})
		}
	}
	rt := d.Runtime()
	for _, ref := range refs { // warm: every root loaded, every ref resolved once
		if _, err := rt.Resolve(ctx, ref); err != nil {
			return err
		}
	}

	// In-process cost and single calls through agentd, one at a time.
	const single = 200
	var inResolve, inCreate, oneResolve, oneCreate []time.Duration
	for i := range single {
		ref := refs[i%len(refs)]
		start := time.Now()
		if _, err := rt.Resolve(ctx, ref); err != nil {
			return err
		}
		inResolve = append(inResolve, time.Since(start))
		start = time.Now()
		if _, _, err := rt.Create(ctx, agent.AgentRef{Root: ref.Root, Path: ref.Path}, agent.Spec{Name: fmt.Sprintf("in%d", i)}); err != nil {
			return err
		}
		inCreate = append(inCreate, time.Since(start))
		took, err := call(conns[0], "task.resolve", daemon.ResolveRequest{Ref: ref.String()}, nil)
		if err != nil {
			return err
		}
		oneResolve = append(oneResolve, took)
		if took, err = call(conns[0], "agent.create", daemon.CreateRequest{Root: string(ref.Root), Parent: ref.Path, Name: fmt.Sprintf("one%d", i)}, nil); err != nil {
			return err
		}
		oneCreate = append(oneCreate, took)
	}

	// The load: every client at once, a closed loop of requests each.
	load := func(subject string, req func(client, i int) any) ([]time.Duration, time.Duration, error) {
		lat := make([][]time.Duration, clients)
		errs := make(chan error, clients)
		var wg sync.WaitGroup
		gate := make(chan struct{})
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				for i := range perClient {
					took, err := call(conns[c], subject, req(c, i), nil)
					if err != nil {
						errs <- fmt.Errorf("client %d request %d: %w", c, i, err)
						return
					}
					lat[c] = append(lat[c], took)
				}
			}()
		}
		start := time.Now()
		close(gate)
		wg.Wait()
		wall := time.Since(start)
		close(errs)
		if err := <-errs; err != nil {
			return nil, 0, err
		}
		var all []time.Duration
		for _, l := range lat {
			all = append(all, l...)
		}
		return all, wall, nil
	}
	resolves, rWall, err := load("task.resolve", func(c, i int) any {
		return daemon.ResolveRequest{Ref: refs[(c*perClient+i)%len(refs)].String()}
	})
	if err != nil {
		return err
	}
	creates, cWall, err := load("agent.create", func(c, i int) any {
		ref := refs[(c+i)%len(refs)]
		return daemon.CreateRequest{Root: string(ref.Root), Parent: ref.Path, Name: fmt.Sprintf("c%d_%d", c, i)}
	})
	if err != nil {
		return err
	}

	for _, f := range []struct {
		what          string
		lat, one, in  []time.Duration
		wall          time.Duration
		inName, roots string
	}{
		{"resolve", resolves, oneResolve, inResolve, rWall, "Runtime.Resolve p50, warm", ""},
		{"create", creates, oneCreate, inCreate, cWall, "Runtime.Create p50", fmt.Sprintf(", over %d roots", nRoots)},
	} {
		p99, one := ms(pct(f.lat, 99)), ms(pct(f.one, 50))
		name := fmt.Sprintf("agentd_%s_p99_%dc", f.what, clients)
		b.add(Figure{Name: name, Value: p99, Unit: fmt.Sprintf("ms p99, %d clients x %d requests%s", clients, perClient, f.roots),
			Baseline: ms(pct(f.in, 50)), BaseName: f.inName,
			Target: fmt.Sprintf("p99 at %d concurrent <= 10x the single-call p50 (%.3f ms)", clients, one), Met: met(p99 <= 10*one)})
		b.add(Figure{Name: name + ".p50_ms", Value: ms(pct(f.lat, 50)), Unit: "ms p50 under the same load"})
		b.add(Figure{Name: name + ".single_call_p50_ms", Value: one, Unit: "ms p50, one client, one request at a time"})
		b.add(Figure{Name: name + ".per_second", Value: rate(len(f.lat), f.wall), Unit: "requests/s under the load"})
	}
	return nil
}
