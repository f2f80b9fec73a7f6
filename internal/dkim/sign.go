package dkim

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// signedFields is the header policy of compliance.md, in the order the
// names appear in h=. Every one is over-signed (RFC 6376 section 5.4.2):
// listed once more than it occurs, so that a copy added after signing — a
// second From or Subject to mislead the reader, a Reply-To sending the
// replies elsewhere, a Sender or Resent-From making a client show the
// mail as sent "on behalf of" someone else, a List-Unsubscribe pointing
// somewhere else on mail that had none — breaks the signature instead of
// riding on it.
//
// The list is explicit because go-msgauth signs every field when given
// none, which would sign Received and other fields relays legitimately
// add or rewrite. It holds every field RFC 6376 section 5.4.1 recommends
// that Heed's mail carries (the fields that carry the message's meaning
// to the reader) but In-Reply-To and References, which only thread; the
// originator fields section 5.4.1 leaves out but a reader is shown
// (Sender, Resent-Sender, and Resent-Message-ID to complete the resent
// block, RFC 5322 section 3.6.6); the fields that say how to read the
// body; and the list headers, which Heed owns and RFC 8058 section 4
// requires to be signed.
//
// Over-signing the Resent-* fields means a copy someone later resends
// with a new resent block (a mail client's "redirect", a list that
// resends rather than re-signs) no longer verifies under Heed's
// signature. That is the right trade for a relay that only sends fresh
// mail: the resender is the one vouching for a resent copy, and a tenant
// must not be able to add a resent block naming another tenant to a copy
// of its own signed mail and replay it (see the package doc).
var signedFields = [...]string{
	"From", "Sender", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To",
	"Resent-Date", "Resent-From", "Resent-Sender", "Resent-To", "Resent-Cc", "Resent-Message-ID",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "Feedback-ID",
}

// fromIndex is From's place in signedFields, for the one-From check.
const fromIndex = 0

// HeaderKeys returns the h= list Heed signs msg with, computed from msg's
// own header (only the header is read).
//
// RFC 6376 section 5.4 lets h= name a field several times (each naming
// signs one more instance, counted from the bottom of the header, section
// 5.4.2) and name fields that are absent (which then sign as "no such
// field"). go-msgauth implements exactly that: it walks h= in order,
// picking instances bottom-up, and silently skips a name listed more times
// than it occurs. So for each field of the policy:
//
//   - present n times: listed n + 1 times, so every instance is signed and
//     an instance added anywhere later is picked by the verifier where the
//     signer saw none, and the signature fails;
//   - absent: listed once, which forbids adding it at all.
//
// Every field of the policy is over-signed, not only From and Subject: a
// Reply-To added to a replayed copy sends the replies elsewhere, and a
// second Content-Type or Content-Transfer-Encoding on top changes what
// many clients display, so none of them may be added under the signature.
//
// The message must be header fields as RFC 5322 section 2.2 defines them
// (see fieldName), and have exactly one From field: RFC 5322 section 3.6
// requires it, and DMARC aligns on it, so a message with none or several
// is refused before signing (compliance.md).
func HeaderKeys(msg []byte) ([]string, error) {
	var (
		counts [len(signedFields)]int
		bad    []byte // the first malformed field, if any
	)
	err := walkHeader(msg, func(_, field []byte) {
		name, ok := fieldName(field)
		if !ok {
			if bad == nil {
				bad = field
			}
			return
		}
		for i := range signedFields {
			if equalFoldASCII(name, signedFields[i]) {
				counts[i]++
				return
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if bad != nil {
		return nil, fmt.Errorf("%w: malformed header field %.40q (RFC 5322 section 2.2)", ErrBadMessage, bad)
	}
	if n := counts[fromIndex]; n != 1 {
		return nil, fmt.Errorf("%w: %d From fields, want exactly 1 (RFC 5322 section 3.6)", ErrBadMessage, n)
	}
	total := 0
	for i := range signedFields {
		counts[i]++ // over-signed: once more than present
		total += counts[i]
	}
	keys := make([]string, 0, total)
	for i, name := range signedFields {
		for range counts[i] {
			keys = append(keys, name)
		}
	}
	return keys, nil
}

// fieldName returns the name of a raw header field, and whether the field
// is well-formed: RFC 5322 section 2.2 requires a name of printable ASCII
// other than colon, directly followed by a colon.
//
// HeaderKeys refuses anything else because verifiers disagree on it, and
// over-signing only works if every verifier counts the fields as Sign
// did: dkimpy rejects a space before the colon where go-msgauth trims it;
// a first line starting with white space is a field of its own to
// go-msgauth until a DKIM-Signature is prepended, after which it becomes
// part of that signature's b= tag (found by FuzzSign).
func fieldName(field []byte) ([]byte, bool) {
	i := bytes.IndexByte(field, ':')
	if i <= 0 {
		return nil, false
	}
	for _, c := range field[:i] {
		if c < 33 || c > 126 {
			return nil, false
		}
	}
	return field[:i], true
}

// Sign signs msg once with each key and returns the DKIM-Signature fields,
// each ending in CRLF, to be prepended to msg as they are: the RSA
// signatures come first (on top), so that a verifier that looks at the
// topmost signature only finds the one every verifier knows; one that does
// not know Ed25519 cannot verify that signature and judges the message by
// the RSA one (RFC 6376 section 4: one good signature is enough).
//
// msg is the message as it will be sent, CRLF line endings, with no
// DKIM-Signature of the app's (compliance.md: Heed removes those). It must
// have well-formed header fields and exactly one From field; if not, the
// error wraps ErrBadMessage. Other errors name the key that failed.
//
// Every signature is relaxed/relaxed (RFC 6376 section 3.4: survives the
// re-folding and trailing-space changes relays make; go-msgauth's default
// is simple/simple), SHA-256 (RFC 8301), over HeaderKeys(msg), with no l=
// (it would let anyone append content under the signature) and no x=
// (mail is read, and re-verified by forwarders, long after it is sent).
func Sign(msg []byte, keys []Key) (string, error) {
	if len(keys) == 0 {
		return "", errors.New("dkim: no keys to sign with")
	}
	// Ed25519 alone would leave the mail unsigned for the many verifiers
	// that do not know it (RFC 8463 section 5): RSA is required.
	hasRSA := false
	for i := range keys {
		hasRSA = hasRSA || keys[i].Algorithm == RSA
	}
	if !hasRSA {
		return "", fmt.Errorf("dkim: no RSA key among the %d keys of d=%s: every message is signed with RSA", len(keys), keys[0].Domain)
	}
	hk, err := HeaderKeys(msg)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	// Two passes rather than a sort: no copy of keys, and the caller's
	// order is kept within each algorithm.
	for _, rsaPass := range [2]bool{true, false} {
		for i := range keys {
			k := &keys[i]
			if (k.Algorithm == RSA) != rsaPass {
				continue
			}
			sig, err := signOne(msg, k, hk)
			if err != nil {
				return "", fmt.Errorf("dkim: signing as d=%s s=%s (%s): %w",
					k.Domain, k.Selector, k.Algorithm, err)
			}
			out.WriteString(sig)
		}
	}
	return out.String(), nil
}

// signOne makes one DKIM-Signature field with k over msg.
//
// go-msgauth's Signer runs a goroutine that reads the message from an
// io.Pipe; the whole message is handed over in one Write so the pipe
// costs one hand-off, not one per chunk, and Close is always called so the
// goroutine never outlives the call.
func signOne(msg []byte, k *Key, headerKeys []string) (string, error) {
	if err := checkKey(k); err != nil {
		return "", err
	}
	s, err := dkim.NewSigner(&dkim.SignOptions{
		Domain:                 k.Domain,
		Selector:               k.Selector,
		Signer:                 k.Signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             headerKeys,
	})
	if err != nil {
		return "", err
	}
	if _, err := s.Write(msg); err != nil {
		// The reader side failed (a header it cannot parse); Close
		// reports its error and lets the goroutine end.
		if cerr := s.Close(); cerr != nil {
			return "", cerr
		}
		return "", err
	}
	if err := s.Close(); err != nil {
		return "", err
	}
	return s.Signature(), nil
}

// checkKey refuses a key Sign must not use: names that would not make a
// well-formed d= or s= tag (or could inject tags: they are written into
// the signature as they are), a Signer of another algorithm than the one
// the Key claims, an RSA key outside RFC 8301's sizes.
func checkKey(k *Key) error {
	if !isDomainName(k.Domain) {
		return fmt.Errorf("domain %q is not an ASCII domain name", k.Domain)
	}
	if !isDomainName(k.Selector) {
		return fmt.Errorf("selector %q is not a sequence of DNS labels", k.Selector)
	}
	if k.Signer == nil {
		return errors.New("no private key")
	}
	alg, err := AlgorithmOf(k.Signer.Public())
	if err != nil {
		return err
	}
	if alg != k.Algorithm {
		return fmt.Errorf("key is %s, not %q", alg, k.Algorithm)
	}
	return nil
}

// isDomainName reports whether s is dot-separated LDH labels (RFC 6376
// section 3.1: selector and d= are both sub-domain *("." sub-domain), in
// A-label form for internationalised names).
func isDomainName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
