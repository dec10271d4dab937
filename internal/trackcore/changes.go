package trackcore

// changeBlock is how many state changes one block of a group's callback
// queue holds (48 bytes each). The queue grows by blocks, not by copying
// into an array twice its size, so a backlog costs its changes and no
// more. Close queues a CLOSED change for every pending tracker at once:
// as one slice, the arrays it outgrew made 5.7 times the changes' size in
// all (13.8 MB for 50,000, garbage only at the next collection), and the
// group kept the longest backlog's array for its life (TestCloseBacklogMemory).
// The first block grows from small, as a slice does, so a group that never
// queues much (a standalone tracker's) stays small.
const changeBlock = 128

// changes is a group's queue of state changes waiting for their callbacks,
// oldest first: blocks of at most changeBlock changes, every one full but
// the last. It is empty exactly when it holds no block.
type changes[R any] [][]change[R]

// push appends c. When the last block is full it starts a new one: free,
// else a block of changeBlock (the first block of an empty queue may start
// small and grow). The caller holds the group's lock.
func (q *changes[R]) push(c change[R], free *[]change[R]) {
	n := len(*q)
	if n == 0 || len((*q)[n-1]) >= changeBlock {
		b := (*free)[:0]
		if n > 0 && cap(b) < changeBlock {
			b = make([]change[R], 0, changeBlock)
		}
		*q = append(*q, b)
		*free = nil
		n++
	}
	(*q)[n-1] = append((*q)[n-1], c)
}

// run calls each change's callbacks in order and clears it, and returns how
// many it ran. The caller does not hold the group's lock.
func (q changes[R]) run(call func(*change[R])) int {
	n := 0
	for _, b := range q {
		for i := range b {
			call(&b[i])
			b[i] = change[R]{}
		}
		n += len(b)
	}
	return n
}

// recycle keeps one block of a batch that ran as free, if free holds none
// or a smaller one, and returns the batch's list emptied for reuse: after
// a backlog the group keeps one block, not the backlog's storage.
func (q changes[R]) recycle(free *[]change[R]) changes[R] {
	if b := q[0]; cap(b) > cap(*free) {
		*free = b[:0]
	}
	clear(q)
	if cap(q) > changeBlock { // the list of a long backlog's blocks
		return nil
	}
	return q[:0]
}
