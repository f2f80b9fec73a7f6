package queue

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"strconv"
	"strings"
)

// VERP envelope senders name one message and recipient, so that a bounce
// sent to it is matched without parsing the bounce (variable envelope
// return path). The local part is
//
//	b-<message id>-<recipient index>-<mac>
//
// where mac is 40 bits of HMAC-SHA256 under a server key over id and index:
// a forged address is refused before anything is changed. The local part
// stays under 50 octets, well within RFC 5321's 64.
type VERP struct {
	Domain string
	Key    []byte
}

var macEnc = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

func (v VERP) mac(id string, idx int) string {
	m := hmac.New(sha256.New, v.Key)
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(strconv.Itoa(idx)))
	return macEnc.EncodeToString(m.Sum(nil)[:5])
}

// Address returns the return path for recipient idx of message id.
func (v VERP) Address(id string, idx int) string {
	return "b-" + id + "-" + strconv.Itoa(idx) + "-" + v.mac(id, idx) + "@" + v.Domain
}

// ErrBadVERP is returned for an address that is not a valid return path.
var ErrBadVERP = errors.New("not a valid return path")

// Parse returns the message id and recipient index of a return path.
func (v VERP) Parse(addr string) (id string, idx int, err error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !strings.EqualFold(addr[at+1:], v.Domain) {
		return "", 0, ErrBadVERP
	}
	parts := strings.Split(strings.ToLower(addr[:at]), "-")
	if len(parts) != 4 || parts[0] != "b" {
		return "", 0, ErrBadVERP
	}
	idx, err = strconv.Atoi(parts[2])
	if err != nil || idx < 0 || strconv.Itoa(idx) != parts[2] {
		return "", 0, ErrBadVERP
	}
	if !hmac.Equal([]byte(v.mac(parts[1], idx)), []byte(parts[3])) {
		return "", 0, ErrBadVERP
	}
	return parts[1], idx, nil
}
