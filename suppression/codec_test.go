package suppression

import (
	"testing"
	"time"
)

var testNow = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

func TestValueEncoding(t *testing.T) {
	for _, e := range []Entry{
		{Reason: Complaint, Address: "bob@example.com", Channel: "arf", MessageID: "01jq3z6k9x8v7w6t5s4r3q2p1n", Time: testNow},
		{Reason: Import, Time: time.Date(1969, 7, 20, 20, 17, 0, 1, time.UTC)}, // erased address, old date
		{Reason: Unsubscribe, Address: "pat@example.net", Channel: "page", Link: "news", Time: testNow},
	} {
		got, err := DecodeEntry(EncodeEntry(e))
		if err != nil || got != e {
			t.Errorf("round trip of %+v = %+v, %v", e, got, err)
		}
		v := EncodeEntry(e)
		noLink := e
		noLink.Link = ""
		short := len(EncodeEntry(noLink)) // a value without a link ends there
		for i := range v {
			got, err := DecodeEntry(v[:i])
			switch {
			case i == short && e.Link != "":
				if err != nil || got != noLink {
					t.Errorf("value cut before its link = %+v, %v; want %+v", got, err, noLink)
				}
			case err == nil:
				t.Errorf("value cut to %d bytes decodes", i)
			}
		}
	}
}
