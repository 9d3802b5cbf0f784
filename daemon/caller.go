package daemon

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/micro"
)

// requestInfoHeader is the header nats-server sets on a request that
// crosses accounts through a service import (server.ClientInfoHdr). The
// server replaces any copy the requester sent (client.go,
// processServiceImport: setHeader removes every existing value first); a
// request that stays in one account carries whatever its publisher wrote.
const requestInfoHeader = "Nats-Request-Info"

// serviceReplyPrefix starts every reply subject nats-server substitutes
// for a requester's own on a service import (accounts.go, replyPrefix).
// The server refuses a publish with such a reply from any client
// connection (client.go, processInboundClientMsg: isReservedReply), so a
// request that has one crossed an import on a server of the cluster (or
// came over a leafnode connection, which the check does not cover).
const serviceReplyPrefix = "_R_."

type callerKey struct{}

// callerOf returns the caller the NATS server named for a request:
// "nats:<account>/<user>" (or "nats:<account>" when the import does not
// share its user), or "" when the request gives no identity agentd
// trusts. Only requests from Config.CallerAccounts count, and only with
// the reply subject the import substituted and exactly one
// Nats-Request-Info value, spelt as the server spells it (the server
// replaces that spelling only: a second one is the caller's).
func (d *Daemon) callerOf(r micro.Request) string {
	if len(d.cfg.CallerAccounts) == 0 {
		return ""
	}
	var vals []string
	for k, v := range r.Headers() {
		if strings.EqualFold(k, requestInfoHeader) {
			if k != requestInfoHeader {
				return "" // a second spelling: the server set at most one of them
			}
			vals = append(vals, v...)
		}
	}
	if len(vals) == 0 {
		return ""
	}
	if len(vals) != 1 || !strings.HasPrefix(r.Reply(), serviceReplyPrefix) {
		d.log.Debug("request's Nats-Request-Info not trusted: not as a service import delivers it", "reply", r.Reply(), "values", len(vals))
		return ""
	}
	var ci struct {
		Account string `json:"acc"`
		User    string `json:"user"`
	}
	if err := json.Unmarshal([]byte(vals[0]), &ci); err != nil || ci.Account == "" {
		return ""
	}
	if !slices.Contains(d.cfg.CallerAccounts, ci.Account) && !slices.Contains(d.cfg.CallerAccounts, "*") {
		d.log.Debug("request's Nats-Request-Info names an account not in CallerAccounts", "account", ci.Account)
		return ""
	}
	if ci.User == "" {
		return "nats:" + ci.Account
	}
	return "nats:" + ci.Account + "/" + ci.User
}

// withCaller records the caller callerOf found in a request's context.
func withCaller(ctx context.Context, caller string) context.Context {
	if caller == "" {
		return ctx
	}
	return context.WithValue(ctx, callerKey{}, caller)
}

func callerFrom(ctx context.Context) string {
	s, _ := ctx.Value(callerKey{}).(string)
	return s
}
