package xmpptrack

// Bounds of what is remembered for displayed markers.
const (
	maxMarkable = 10_000 // conversations whose newest markable message we remember
	// maxRoomMarkable bounds the occupants of one room whose private
	// message is remembered: an occupant that changes nick for every
	// message fills its own room's share, never the others' conversations.
	maxRoomMarkable = 256
	maxRooms        = 1024 // bare JIDs remembered as rooms
)

// markables is the newest markable message of each conversation, for
// MarkDisplayed: accounts under their bare JID, room occupants writing in
// private under their room and their full JID. It remembers which bare JIDs
// are rooms, so that nothing of a room is ever kept under its bare JID:
// a marker to a room's bare JID is not one that anybody reads. The
// recipient's lock guards it.
type markables struct {
	accounts  map[string]answer            // bare JID -> newest markable message
	occupants map[string]map[string]answer // room -> occupant (full JID) -> newest markable message
	nOcc      int                          // entries in occupants
	rooms     map[string]struct{}          // bare JIDs known to be rooms
}

func newMarkables() markables {
	return markables{
		accounts:  make(map[string]answer),
		occupants: make(map[string]map[string]answer),
		rooms:     make(map[string]struct{}),
	}
}

// count is the number of conversations remembered.
func (m *markables) count() int { return len(m.accounts) + m.nOcc }

// isRoom reports whether bare is known to be a room.
func (m *markables) isRoom(bare string) bool {
	_, ok := m.rooms[bare]
	return ok
}

// learnRoom remembers that bare is a room, and forgets what was kept under
// it as an account's: an occupant's message that came without the muc#user
// <x/> before the room was known, or the room's own.
func (m *markables) learnRoom(bare string) {
	if _, ok := m.rooms[bare]; ok {
		return // nothing can have been kept under it since
	}
	if len(m.rooms) >= maxRooms {
		for k := range m.rooms { // an arbitrary one: bounded memory first
			delete(m.rooms, k)
			break
		}
	}
	m.rooms[bare] = struct{}{}
	delete(m.accounts, bare)
}

// putAccount keeps a as the newest markable message of the account bare.
func (m *markables) putAccount(bare string, a answer) {
	if _, ok := m.accounts[bare]; !ok {
		m.makeRoom()
	}
	m.accounts[bare] = a
}

// putOccupant keeps a as the newest markable private message of the
// occupant full of room.
func (m *markables) putOccupant(room, full string, a answer) {
	occ := m.occupants[room]
	if _, ok := occ[full]; !ok {
		if len(occ) >= maxRoomMarkable {
			m.dropOne(room) // the room's share is full: one of its own goes
		} else {
			m.makeRoom()
			occ = m.occupants[room] // makeRoom may have emptied it
		}
		if occ == nil {
			occ = make(map[string]answer)
			m.occupants[room] = occ
		}
		m.nOcc++
	}
	occ[full] = a
}

// makeRoom forgets one conversation when maxMarkable are remembered
// (conversations the application never marks, or a flood of senders): an
// occupant's first, since a room's occupants are many for few rooms, then
// an arbitrary account's, rather than stop remembering new ones for good.
func (m *markables) makeRoom() {
	if m.count() < maxMarkable {
		return
	}
	for room := range m.occupants {
		m.dropOne(room)
		return
	}
	for k := range m.accounts {
		delete(m.accounts, k)
		return
	}
}

// dropOne forgets one of room's occupants' messages.
func (m *markables) dropOne(room string) {
	for k := range m.occupants[room] {
		m.dropOccupant(room, k)
		return
	}
}

func (m *markables) dropOccupant(room, full string) {
	occ := m.occupants[room]
	if _, ok := occ[full]; !ok {
		return
	}
	delete(occ, full)
	m.nOcc--
	if len(occ) == 0 {
		delete(m.occupants, room)
	}
}

// forgetOccupants forgets room's occupants' messages, or every room's when
// room is "".
func (m *markables) forgetOccupants(room string) {
	if room == "" {
		clear(m.occupants)
		m.nOcc = 0
		return
	}
	m.nOcc -= len(m.occupants[room])
	delete(m.occupants, room)
}
