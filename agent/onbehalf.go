package agent

import "context"

type oboKey struct{}

// WithOnBehalfOf returns a context whose writes record principal as the
// event's OnBehalfOf (wire key `obo`): whom the writer's own caller says
// the write is for. It is a claim, recorded as such and never
// authenticated; the event's actor (WithActor) stays who really wrote it.
// agentd uses it for a request's `actor` field.
func WithOnBehalfOf(ctx context.Context, principal string) context.Context {
	return context.WithValue(ctx, oboKey{}, principal)
}

// OnBehalfOfFrom returns the claim set by WithOnBehalfOf, or "".
func OnBehalfOfFrom(ctx context.Context) string {
	s, _ := ctx.Value(oboKey{}).(string)
	return s
}
