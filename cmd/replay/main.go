// Command replay reads agentreg's event log for debugging and audit: the
// decoded events, a root's registry at any point in history, an agent's
// lineage, what changed between two points, what a task ref resolves to,
// and a verification of the whole history.
//
// It connects to a NATS server (--nats-url, env NATS_URL) or opens a data
// directory of a stopped agentd or demo run offline and read-only (--data).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK       = 0
	exitProblems = 1 // audit found problems, or a command failed
	exitUsage    = 2
)

// errUsage marks errors in how the command was called.
var errUsage = errors.New("usage")

// errProblems is returned by audit when the history is not clean.
var errProblems = errors.New("problems found")

// gcPercent is replay's GOGC: a replay is a batch job that builds large
// registries, so it trades memory (about 4x the live heap) for less time in
// the garbage collector. GOGC in the environment overrides it.
const gcPercent = 400

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := RunIO(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "replay:", err)
		return exitUsage
	default:
		fmt.Fprintln(stderr, "replay:", err)
		return exitProblems
	}
}

const usage = `replay reads agentreg's event log.

Usage: replay COMMAND [flags] [ARGS]

Commands:
  events      the decoded event log, refused events and deleted sequences marked (filters: root, agent subtree,
              type, actor, sequence or time range)
  registry    every root's registry (or --root's) at a point: agents, effective capabilities, tasks, retired ones
  lineage     an agent's ancestors and descendants, each step with actor, stored time and sequence
  diff        what changed in a root's registry between two points
  resolve     what a task ref resolves to at a point, or why it fails
  audit       verify hash chains, invariants and snapshots; exit 1 with a summary when not clean
  snapshots   list and verify stored snapshots
  decode      print one message body read on stdin as JSON (for nats stream view --translate 'replay decode')

Every command but decode takes --nats-url URL (env NATS_URL) or --data DIR,
a point (--seq N or --time RFC3339; default now) and --json. Flags may come
before or after the arguments. Run 'replay COMMAND --help' for its flags.
`

// Run runs one replay command with nothing on stdin; main maps its error to
// an exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return RunIO(ctx, args, strings.NewReader(""), stdout, stderr)
}

// RunIO is Run with a stdin, which decode reads.
func RunIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		if len(args) == 0 {
			return fmt.Errorf("no command given: %w", errUsage)
		}
		return nil
	}
	cmds := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"events":    runEvents,
		"registry":  runRegistry,
		"lineage":   runLineage,
		"diff":      runDiff,
		"resolve":   runResolve,
		"audit":     runAudit,
		"snapshots": runSnapshots,
		"decode": func(_ context.Context, args []string, stdout, stderr io.Writer) error {
			return runDecode(args, stdin, stdout, stderr)
		},
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		return fmt.Errorf("unknown command %q\nhint: run 'replay --help' for the list: %w", args[0], errUsage)
	}
	if err := cmd(ctx, args[1:], stdout, stderr); !errors.Is(err, errHelp) {
		return err
	}
	return nil
}
