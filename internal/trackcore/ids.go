package trackcore

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"unsafe"
)

// Own ids: a registry names the messages it is asked to name (Track with an
// empty id) after their registration number, so that a tracker need not
// hold its id (ID formats it) and evidence finds its tracker by that number
// (Registry.byNum) instead of through a map of every pending id.
//
// The number is not written as it is. An own id is one AES-128 block,
// eight zero bytes then the number, encrypted with a key drawn at random for
// each registry, in base64url: 22 characters. Other parties therefore cannot
// predict our ids (XEP-0359 asks that they be unpredictable), cannot tell
// how many messages we sent between two of theirs, and cannot make up an id
// that parses: a string that was not made with the key decrypts to eight
// zero bytes with probability 2^-64. Nothing rests on that, though: an id
// that parses still names a tracker only while it is pending, and evidence
// still counts only from the tracker's conversation. Ids of two registries
// (two processes, or a restart) differ, with different keys, as random
// 128-bit strings do.

// ownIDLen is the length of an own id: 16 bytes in unpadded base64url.
const ownIDLen = 22

// ownIDs makes and reads a registry's own ids. parse uses scratch, so it
// runs under the registry's lock; format runs anywhere.
type ownIDs struct {
	b       cipher.Block
	scratch *[aes.BlockSize]byte // a block passed through the interface escapes: allocated once
}

// idAlphabet is base64url's (RFC 4648 §5), without padding.
const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// idEncoding reads own ids: base64url without padding, strict, so that
// the 4 bits of the last character that no byte uses must be zero and only
// the one string format writes for a block decodes. It is never modified.
var idEncoding = base64.RawURLEncoding.Strict()

func newOwnIDs() ownIDs {
	var key [16]byte
	rand.Read(key[:])
	b, err := aes.NewCipher(key[:])
	if err != nil {
		panic("trackcore: " + err.Error()) // unreachable: a 16-byte key is valid
	}
	return ownIDs{b: b, scratch: new([aes.BlockSize]byte)}
}

// format returns the own id of registration number n, with one allocation
// of 24 bytes: the block is encrypted in the string's own memory, then
// written out over it from the front (each 3 bytes are read before their 4
// characters are written, and the characters never reach bytes not yet
// read). The encoding is written here rather than with idEncoding.Encode:
// Encode does not promise to work in place, and a block of its own would
// be a second allocation (passed to Encrypt through the cipher.Block
// interface, a block on the stack escapes), or, cut from the same buffer,
// would double the memory every id string keeps (40 bytes, a 48-byte
// size class).
func (k ownIDs) format(n uint64) string {
	buf := make([]byte, 24)
	blk := buf[24-aes.BlockSize:]
	binary.BigEndian.PutUint64(blk[8:], n)
	k.b.Encrypt(blk, blk)
	j := 0
	for i := 0; i < 15; i += 3 {
		v := uint(blk[i])<<16 | uint(blk[i+1])<<8 | uint(blk[i+2])
		buf[j], buf[j+1], buf[j+2], buf[j+3] = idAlphabet[v>>18], idAlphabet[v>>12&63], idAlphabet[v>>6&63], idAlphabet[v&63]
		j += 4
	}
	v := uint(blk[15])
	buf[20], buf[21] = idAlphabet[v>>2], idAlphabet[v<<4&63]
	return unsafe.String(&buf[0], ownIDLen)
}

// parse returns the registration number of an own id, and false for any
// other string. Only the one string format writes for a block is read as
// it (idEncoding is strict), so evidence must echo an id exactly. The
// decoder skips '\r' and '\n', so a 22-byte string holding one decodes to
// fewer than 16 bytes and is refused. It allocates nothing: Decode neither
// keeps nor changes its input, so the compiler passes the string's own
// bytes, and the block is decoded into scratch. The caller holds the registry's lock.
func (k ownIDs) parse(id string) (uint64, bool) {
	if len(id) != ownIDLen {
		return 0, false
	}
	blk := k.scratch
	if n, err := idEncoding.Decode(blk[:], []byte(id)); err != nil || n != aes.BlockSize {
		return 0, false
	}
	k.b.Decrypt(blk[:], blk[:])
	if binary.BigEndian.Uint64(blk[:8]) != 0 {
		return 0, false
	}
	return binary.BigEndian.Uint64(blk[8:]), true
}
