package dkim

import (
	"bytes"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// maxVerifications bounds the work a message can ask of Verify: each
// signature costs a DNS query and a public-key operation.
const maxVerifications = 8

// Result is the outcome of one DKIM-Signature field, in header order, top
// first.
type Result struct {
	Domain    string    // d=
	Selector  string    // s=
	Algorithm Algorithm // a=, as written (may be one Heed does not sign with)
	// Err is nil if the signature verifies. dkim.IsPermFail and
	// dkim.IsTempFail of go-msgauth tell a broken signature from a DNS
	// failure worth retrying.
	Err error
}

// Verify checks every DKIM signature of msg, looking keys up with
// lookupTXT (given "<selector>._domainkey.<domain>", it returns one string
// per TXT record, its character-strings joined, as net.LookupTXT does; nil
// means net.LookupTXT). Verification is go-msgauth's; Verify adds the
// selector and algorithm of each signature, which go-msgauth does not
// report, so that the admin domain check can say which key failed.
//
// The error is for a message that cannot be read at all, or one with more
// than 8 signatures (the first 8 are then reported).
func Verify(msg []byte, lookupTXT func(domain string) ([]string, error)) ([]Result, error) {
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT:        lookupTXT,
		MaxVerifications: maxVerifications,
	})
	if vs == nil {
		return nil, err
	}
	// go-msgauth reports the signatures in header order; walking the
	// header in the same order pairs each with its s= and a=.
	var tags []map[string]string
	_ = walkHeader(msg, func(name, field []byte) {
		if equalFoldASCII(name, "DKIM-Signature") {
			_, value, _ := bytes.Cut(field, []byte{':'})
			tags = append(tags, parseTags(string(value)))
		}
	})
	rs := make([]Result, len(vs))
	for i, v := range vs {
		rs[i] = Result{Domain: v.Domain, Err: v.Err}
		if i < len(tags) {
			rs[i].Selector = tags[i]["s"]
			rs[i].Algorithm = Algorithm(strings.ToLower(tags[i]["a"]))
		}
	}
	return rs, err
}
