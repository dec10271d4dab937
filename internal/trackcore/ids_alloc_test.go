package trackcore

import "testing"

// TestOwnIDParseAllocs: reading an own id allocates nothing, on the
// receiving path of every receipt and marker. That rests on the compiler
// seeing that idEncoding.Decode keeps no reference to the []byte made from
// the id (see ownIDs.parse); only this test, not a benchmark nobody runs,
// would see that change.
func TestOwnIDParseAllocs(t *testing.T) {
	k := newOwnIDs()
	id := k.format(1 << 40)
	foreign := "AAAAAAAAAAAAAAAAAAAAAA" // an own id's length, another key's block
	if n := testing.AllocsPerRun(100, func() {
		if _, ok := k.parse(id); !ok {
			t.Fatal("own id not parsed")
		}
		k.parse(foreign)
	}); n != 0 {
		t.Errorf("parse: %v allocations, want 0", n)
	}
}
