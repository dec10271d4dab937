package trackcore

// changeBlock is how many state changes one block of a group's callback
// queue holds (32 bytes each). The queue grows by blocks, not by copying
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

// blocks is a group's store of empty blocks for its two lists of blocks
// (the queue and the batch the dispatcher runs): two, so that changes
// queued while a batch runs take a block without allocating, and no more
// than two, so that a backlog's storage is not kept.
type blocks[R any] [2][]change[R]

// take returns the larger kept block, emptied, and forgets it; nil if none
// is kept.
func (f *blocks[R]) take() []change[R] {
	i := 0
	if cap(f[1]) > cap(f[0]) {
		i = 1
	}
	b := f[i][:0]
	f[i] = nil
	return b
}

// keep stores b emptied in a free place, or in place of a smaller block.
func (f *blocks[R]) keep(b []change[R]) {
	i := 0
	if cap(f[1]) < cap(f[0]) {
		i = 1
	}
	if cap(b) > cap(f[i]) {
		f[i] = b[:0]
	}
}

// push appends c. When the last block is full it starts a new one: a kept
// block, else a block of changeBlock (the first block of an empty queue
// may start small and grow). The caller holds the group's lock.
func (q *changes[R]) push(c change[R], free *blocks[R]) {
	n := len(*q)
	if n == 0 || len((*q)[n-1]) >= changeBlock {
		b := free.take()
		if n > 0 && cap(b) < changeBlock {
			free.keep(b)
			b = make([]change[R], 0, changeBlock)
		}
		*q = append(*q, b)
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

// recycle keeps the first block of a batch that ran (see blocks.keep) and
// returns the batch's list emptied for reuse: after a backlog the group
// keeps two blocks, not the backlog's storage.
func (q changes[R]) recycle(free *blocks[R]) changes[R] {
	free.keep(q[0])
	clear(q)
	if cap(q) > changeBlock { // the list of a long backlog's blocks
		return nil
	}
	return q[:0]
}
