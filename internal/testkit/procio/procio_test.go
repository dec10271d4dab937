package procio

import "testing"

func TestParse(t *testing.T) {
	r, w := Parse("rchar: 1915\nwchar: 12\nsyscr: 7\nsyscw: 3\nread_bytes: 0\nwrite_bytes: 0\ncancelled_write_bytes: 0\n")
	if r != 7 || w != 3 {
		t.Errorf("syscr %d, syscw %d, want 7 and 3", r, w)
	}
	if r, w := Parse("garbage\nsyscr: x\n"); r != 0 || w != 0 {
		t.Errorf("unparsable text: %d, %d, want zeros", r, w)
	}
}
