package agent_test

import (
	"encoding/json"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/agentreg/agentreg/agent"
)

// FuzzParseTaskRef: any text is refused or parsed into a ref whose text
// form parses back to the same ref, through text, JSON and msgpack.
func FuzzParseTaskRef(f *testing.F) {
	for _, s := range []string{
		"3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10/math_solver/equation_parser#parse",
		"3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10/#create_specialist",
		"", "/", "#", "x/y#z", "3d1b/../etc#passwd", "3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10/a.b#t",
		// Pinned to a contract digest, and near misses.
		"3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10/math_solver#solve@e449fe38c87a88380107fcff8a0a566af1558c511015477d8d3460e23c6c21f4",
		"3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10/#t@",
		"3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10/#t@@",
		"3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10/a#b@E449FE38C87A88380107FCFF8A0A566AF1558C511015477D8D3460E23C6C21F4",
		"3d1b90772ab530238bd14209bc6d0be06f6530568facf801904df1c9ab65ab10/a@b#c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := agent.ParseTaskRef(s)
		if err != nil {
			return
		}
		again, err := agent.ParseTaskRef(r.String())
		if err != nil || again != r {
			t.Fatalf("%q parsed to %+v, whose text %q parses to %+v, %v", s, r, r.String(), again, err)
		}
		j, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON agent.TaskRef
		if err := json.Unmarshal(j, &fromJSON); err != nil || fromJSON != r {
			t.Fatalf("JSON round trip of %+v: %+v, %v", r, fromJSON, err)
		}
		m, err := msgpack.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var fromMsgpack agent.TaskRef
		if err := msgpack.Unmarshal(m, &fromMsgpack); err != nil || fromMsgpack != r {
			t.Fatalf("msgpack round trip of %+v: %+v, %v", r, fromMsgpack, err)
		}
	})
}
