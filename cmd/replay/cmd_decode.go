package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/agentreg/agentreg/events"
)

// maxBody bounds what decode reads from stdin: more than any NATS server
// delivers (max_payload is at most 64 MiB), so a body is never cut short,
// while an endless input still ends.
const maxBody = 64 << 20

func runDecode(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var c common
	fs := newFlagSet("decode", "", "Read one message body (an event's stored bytes) on stdin and print it as JSON: the wire format's\n"+
		"keys and values (docs/replay.md). A body that is not an event is a one-line error and exit status 1.\n"+
		"Made for the NATS CLI: nats stream view AGENTREG --translate 'replay decode'", &c, stderr)
	compact := fs.Bool("compact", false, "print the event on one line instead of indented")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("decode", "unexpected argument %q (the body is read on stdin)", fs.Arg(0))
	}
	body, err := io.ReadAll(io.LimitReader(stdin, maxBody+1))
	if err != nil {
		return fmt.Errorf("decode: read stdin: %w", err)
	}
	if len(body) > maxBody {
		return fmt.Errorf("decode: the body on stdin is over %d bytes: not an agentreg event", maxBody)
	}
	e, err := events.Decode(body)
	if err != nil {
		// One line, whatever the decoder said.
		msg := strings.Join(strings.Fields(err.Error()), " ")
		return fmt.Errorf("decode: the %d-byte body on stdin is not an agentreg event: %s", len(body), msg)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if !*compact {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(eventOf(e)); err != nil {
		return fmt.Errorf("decode: event %s: %w", e.ID, err)
	}
	_, err = stdout.Write(out.Bytes())
	return err
}
