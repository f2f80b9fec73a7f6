package report

import (
	"errors"
	"strings"
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
			// A suppression needs a hard reason in a final failure, or
			// the recipient's own complaint; nothing else may suppress.
			switch s.Verdict {
			case Hard:
				if r.Kind != Bounce || !s.Reason.Hard() || s.Action == "delayed" || strings.HasPrefix(s.Status, "4.") {
					t.Fatalf("hard verdict without a final hard failure: %+v", s)
				}
			case Complained:
				if r.Kind != Complaint {
					t.Fatalf("complaint verdict in a %v: %+v", r.Kind, s)
				}
			}
		}
		if r.Kind != Complaint && r.Kind != Bounce && len(r.Suppressed()) > 0 {
			t.Fatalf("a %v suppresses %v", r.Kind, r.Suppressed())
		}
	})
}
