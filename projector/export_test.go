package projector

// WithoutIndex returns a shallow copy of r without its child index, whose
// chunking depends on the order agents were added: for comparing registries
// folded and decoded.
func WithoutIndex(r *Registry) *Registry {
	c := *r
	c.tree = tree{}
	return &c
}

// WithoutIDs returns a shallow copy of r that remembers no event id.
func WithoutIDs(r *Registry) *Registry {
	c := *r
	c.ids = nil
	return &c
}
