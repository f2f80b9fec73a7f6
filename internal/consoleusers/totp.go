package consoleusers

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// The TOTP parameters: those of RFC 6238's reference and of every
// authenticator app (SHA-1, six digits, 30-second steps).
const (
	totpPeriod = 30
	// totpSkew accepts the codes of one step before and after the
	// current one, for clocks that differ (RFC 6238 section 5.2).
	totpSkew = 1
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// newTOTP generates a secret of 160 bits (RFC 4226 section 4 asks for
// 128 at least, recommends 160).
func newTOTP(username string) (*otp.Key, error) {
	return totp.Generate(totp.GenerateOpts{
		Issuer: "Heed", AccountName: username, Period: totpPeriod, SecretSize: 20,
		Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
}

// checkCode returns the time step of code if it is the code of a step
// within the skew of now and later than last (a code is accepted once);
// ok false otherwise. Every candidate is compared, in constant time.
func checkCode(secret, code string, now time.Time, last int64) (step int64, ok bool) {
	if len(code) != 6 {
		return 0, false
	}
	for d := -totpSkew; d <= totpSkew; d++ {
		t := now.Add(time.Duration(d*totpPeriod) * time.Second)
		want, err := totp.GenerateCodeCustom(secret, t, totpOpts)
		if err != nil {
			return 0, false
		}
		s := t.Unix() / totpPeriod
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 && s > last && !ok {
			step, ok = s, true
		}
	}
	return step, ok
}

// sealSecret encrypts a TOTP secret with AES-256-GCM, the username as
// associated data, so that a copied database row is no second factor and
// a row moved to another account does not open.
func (s *Service) sealSecret(username, secret string) ([]byte, error) {
	g, err := s.gcm()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, []byte(secret), []byte(username)), nil
}

func (s *Service) openSecret(username string, sealed []byte) (string, error) {
	g, err := s.gcm()
	if err != nil {
		return "", err
	}
	if len(sealed) < g.NonceSize() {
		return "", errors.New("consoleusers: sealed TOTP secret too short")
	}
	b, err := g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], []byte(username))
	if err != nil {
		return "", errors.New("consoleusers: the TOTP secret does not open with this server key")
	}
	return string(b), nil
}

func (s *Service) gcm() (cipher.AEAD, error) {
	b, err := aes.NewCipher(s.seal)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}
