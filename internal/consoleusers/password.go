package consoleusers

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"

	"github.com/heedmail/heed/internal/ids"
)

// Params are argon2id's cost parameters (RFC 9106 section 3.1).
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// DefaultParams are OWASP's recommendation for argon2id (password
// storage cheat sheet: 46 MiB, one pass, one lane): a person's password,
// unlike an SMTP secret, is guessable, so each guess must cost.
var DefaultParams = Params{Memory: 46 * 1024, Time: 1, Threads: 1}

const (
	saltLen = 16 // RFC 9106 section 3.1 recommends 128 bits
	keyLen  = 32
)

var b64 = base64.RawStdEncoding

// hash hashes password with a fresh salt into the PHC string format,
// which keeps the parameters beside the hash so that they can be raised
// later without invalidating older passwords.
func (p Params) hash(password string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// checkPassword reports whether password matches encoded, comparing the
// derived keys in constant time.
func checkPassword(encoded, password string) (bool, error) {
	f := strings.Split(encoded, "$")
	if len(f) != 6 || f[1] != "argon2id" || f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, fmt.Errorf("consoleusers: not an argon2id hash of version %d", argon2.Version)
	}
	var p Params
	if _, err := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil || p.Time == 0 || p.Threads == 0 {
		return false, fmt.Errorf("consoleusers: argon2id parameters %q: %v", f[3], err)
	}
	salt, err1 := b64.DecodeString(f[4])
	want, err2 := b64.DecodeString(f[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false, fmt.Errorf("consoleusers: malformed argon2id hash")
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// newPassword is a generated password of 128 random bits, to be kept in
// a password manager.
func newPassword() string { return ids.Secret(16) }
