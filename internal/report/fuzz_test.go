package report

import (
	"errors"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, and that every error
// it returns wraps ErrUnparsable.
func FuzzParse(f *testing.F) {
	f.Add(dsn("failed", "5.1.1", "550 5.1.1 unknown"))
	f.Add(crlf(arfReport))
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := Parse(msg)
		if err != nil {
			if !errors.Is(err, ErrUnparsable) {
				t.Fatalf("error does not wrap ErrUnparsable: %v", err)
			}
			return
		}
		for _, s := range r.Recipients {
			if s.Permanent && (s.Status == "" || s.Status[0] != '5') {
				t.Fatalf("permanent without a class 5 status: %+v", s)
			}
		}
	})
}
