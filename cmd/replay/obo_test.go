package main

import "testing"

// An event's claimed on-behalf-of is printed after its actor, marked as a
// claim.
func TestByString(t *testing.T) {
	if got := byString("agentd", ""); got != "agentd" {
		t.Fatalf("no claim: got %q", got)
	}
	if got, want := byString("nats:CLIENTS/alice", "user:bob"), "nats:CLIENTS/alice [on behalf of user:bob (claimed)]"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
