package suppression

import (
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/heedmail/heed/internal/fsutil"
)

// KeySize is the size of a token key file.
const KeySize = 32

// Keyring holds the keys of unsubscribe tokens and mailto addresses, each
// under a one-byte id (1 to 255), one of them current. New tokens use the
// current key; tokens and mailto addresses made under any key of the ring
// still verify, so mail sent years ago keeps unsubscribing after a
// rotation (compliance.md, Tokens). A Keyring is immutable and safe for
// concurrent use.
type Keyring struct {
	current byte
	keys    [256]*subkeys
	ids     []byte // every id present, ascending
}

// subkeys are derived from one key file with HKDF (RFC 5869), one per use,
// so no key ever serves two algorithms.
type subkeys struct {
	aead   cipher.AEAD // XChaCha20-Poly1305: the token's encryption
	nonce  []byte      // HMAC-SHA256 key of the token's synthetic nonce
	mailto []byte      // HMAC-SHA256 key of mailto local parts
}

// HKDF info strings. Changing one invalidates every token in circulation.
const (
	infoAEAD   = "heed unsubscribe token aead v1"
	infoNonce  = "heed unsubscribe token nonce v1"
	infoMailto = "heed unsubscribe mailto mac v1"
)

func derive(key []byte) (*subkeys, error) {
	sub := func(info string) ([]byte, error) { return hkdf.Key(sha256.New, key, nil, info, 32) }
	ak, err := sub(infoAEAD)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(ak)
	if err != nil {
		return nil, err
	}
	nk, err := sub(infoNonce)
	if err != nil {
		return nil, err
	}
	mk, err := sub(infoMailto)
	if err != nil {
		return nil, err
	}
	return &subkeys{aead: aead, nonce: nk, mailto: mk}, nil
}

// NewKeyring builds a keyring from raw keys of KeySize bytes by id (ids 1 to
// 255); current must be one of them. It is for tests and fixed keys, and
// panics on a key that breaks those rules, as regexp.MustCompile does; the
// server uses LoadKeyring, which reports them as errors.
func NewKeyring(current byte, keys map[byte][]byte) *Keyring {
	k, err := newKeyring(current, keys)
	if err != nil {
		panic(err)
	}
	return k
}

// KeyringOf builds a keyring from keys kept elsewhere than files (the
// server_secrets table on PostgreSQL), with LoadKeyring's rule: the
// highest id is the current key. A key that breaks NewKeyring's rules
// is an error.
func KeyringOf(keys map[byte][]byte) (*Keyring, error) {
	var current byte
	for id := range keys {
		current = max(current, id)
	}
	return newKeyring(current, keys)
}

func newKeyring(current byte, keys map[byte][]byte) (*Keyring, error) {
	k := &Keyring{current: current}
	for id, raw := range keys {
		if id == 0 {
			return nil, errors.New("suppression: key id 0 is reserved")
		}
		if len(raw) != KeySize {
			return nil, fmt.Errorf("suppression: key %d is %d bytes, want %d", id, len(raw), KeySize)
		}
		sk, err := derive(raw)
		if err != nil {
			return nil, fmt.Errorf("suppression: key %d: %w", id, err)
		}
		k.keys[id] = sk
		k.ids = append(k.ids, id)
	}
	if current == 0 || k.keys[current] == nil {
		return nil, fmt.Errorf("suppression: current key %d is not in the keyring", current)
	}
	slices.Sort(k.ids)
	return k, nil
}

// LoadKeyring reads the token keys from dir: files named <id>.key, id 1 to
// 255 in decimal, each holding KeySize random bytes. The highest id is the
// current key. Rotation is: drop a new, higher-numbered file in and
// restart; keep the old files for as long as mail signed with them may be
// read (forever, by default). When dir holds no key, LoadKeyring creates
// it (0700) and a fresh 1.key (0600), written to a temporary file, synced
// and renamed so that a crash never leaves a short key behind.
//
// Files that end in .key but are not a valid key are an error rather than
// skipped: an operator who misnamed the new key must find out at start, not
// when the old one is removed.
func LoadKeyring(dir string) (*Keyring, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	keys, err := readKeys(dir)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		raw, err := createKey(dir, 1)
		if err != nil {
			return nil, fmt.Errorf("suppression: creating the first token key: %w", err)
		}
		keys[1] = raw
	}
	var current byte
	for id := range keys {
		current = max(current, id)
	}
	return newKeyring(current, keys)
}

func readKeys(dir string) (map[byte][]byte, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	keys := map[byte][]byte{}
	for _, de := range des {
		name := de.Name()
		stem, ok := strings.CutSuffix(name, ".key")
		if !ok || strings.HasPrefix(name, ".") || de.IsDir() {
			continue // temporary files and anything else an operator keeps there
		}
		id, err := strconv.Atoi(stem)
		if err != nil || id < 1 || id > 255 || strconv.Itoa(id) != stem {
			return nil, fmt.Errorf("suppression: key file %s: the name must be <id>.key, id 1 to 255 without leading zeros", filepath.Join(dir, name))
		}
		raw, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if len(raw) != KeySize {
			return nil, fmt.Errorf("suppression: key file %s holds %d bytes, want %d random bytes", filepath.Join(dir, name), len(raw), KeySize)
		}
		keys[byte(id)] = raw
	}
	return keys, nil
}

func createKey(dir string, id byte) (raw []byte, err error) {
	raw = make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	return raw, fsutil.WriteFileSync(filepath.Join(dir, strconv.Itoa(int(id))+".key"), raw)
}
