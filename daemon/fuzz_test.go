package daemon

import "testing"

// FuzzDecodeRequest: any request body is refused with a 400 or decoded;
// never a panic.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"root":"3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10","name":"math_solver","caps":[{"kind":"module","name":"math","include":["sqrt"]}],"tasks":[{"name":"solve","input":{"type":"object","fields":[{"name":"equation","schema":{"type":"string"},"required":true}]},"output":{"type":"string"}}]}`,
		`{"ref":"x/y#z"}`, `{"def":{"name":"architect"}}`, `{"bogus":1}`, `not json`, ``, `{}{}`, `[1,2]`, `{"root":1}`,
		`{"def":{"name":"x","capabilities":[]}}`, `{"cap":{"kind":"module","visibility":"low"}}`, `{"from":"a","to":"b","extra":[{"x":1}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, v := range []any{&CreateRequest{}, &RegisterRootRequest{}, &GrantRequest{}, &RevokeRequest{}, &DefineTaskRequest{},
			&RetireRequest{}, &ReadRequest{}, &ResolveRequest{}, &InvokeRequest{}, &MigrateRequest{}, &ToolsRequest{}} {
			if err := decode(b, v); err != nil && codeOf(err) != "400" {
				t.Fatalf("decode error %v answers %s, want 400", err, codeOf(err))
			}
		}
	})
}
