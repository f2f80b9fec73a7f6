package suppression

import (
	"fmt"
	"testing"

	"github.com/heedmail/heed/internal/tenant"
)

// policyCase is one cell of the policy: an entry of reason, scoped to the
// list being sent to ("same"), to another list ("other"), or to All ("*"),
// and whether it stops mail of a list of kind.
type policyCase struct {
	reason Reason
	scope  string // "same", "other" or All
	kind   string
	stops  bool
}

// policyCases is the whole rulebook (compliance.md, "Kinds of mail"),
// spelt out cell by cell on purpose rather than computed.
var policyCases = []policyCase{
	// The recipient's own opt-out: the list named, or "all marketing".
	{Unsubscribe, "same", tenant.Marketing, true},
	{Unsubscribe, "same", tenant.Transactional, true},
	{Unsubscribe, "other", tenant.Marketing, false},
	{Unsubscribe, "other", tenant.Transactional, false},
	{Unsubscribe, All, tenant.Marketing, true},
	{Unsubscribe, All, tenant.Transactional, false},
	// Imported opt-outs behave as opt-outs.
	{Import, "same", tenant.Marketing, true},
	{Import, "same", tenant.Transactional, true},
	{Import, "other", tenant.Marketing, false},
	{Import, "other", tenant.Transactional, false},
	{Import, All, tenant.Marketing, true},
	{Import, All, tenant.Transactional, false},
	// An operator's block: the list named, or everything.
	{Manual, "same", tenant.Marketing, true},
	{Manual, "same", tenant.Transactional, true},
	{Manual, "other", tenant.Marketing, false},
	{Manual, "other", tenant.Transactional, false},
	{Manual, All, tenant.Marketing, true},
	{Manual, All, tenant.Transactional, true},
	// Bounces and complaints stop everything, whatever scope they carry.
	{Bounce, "same", tenant.Marketing, true},
	{Bounce, "same", tenant.Transactional, true},
	{Bounce, "other", tenant.Marketing, true},
	{Bounce, "other", tenant.Transactional, true},
	{Bounce, All, tenant.Marketing, true},
	{Bounce, All, tenant.Transactional, true},
	{Complaint, "same", tenant.Marketing, true},
	{Complaint, "same", tenant.Transactional, true},
	{Complaint, "other", tenant.Marketing, true},
	{Complaint, "other", tenant.Transactional, true},
	{Complaint, All, tenant.Marketing, true},
	{Complaint, All, tenant.Transactional, true},
}

// entryScope turns a case's scope into an Entry.List when mail goes to
// list.
func (c policyCase) entryScope(list string) string {
	switch c.scope {
	case "same":
		return list
	case "other":
		return "other-list"
	}
	return All
}

func (c policyCase) String() string {
	return fmt.Sprintf("%s scoped %s, sending %s", c.reason, c.scope, c.kind)
}

func TestApplies(t *testing.T) {
	if len(policyCases) != len(reasons)*3*2 {
		t.Fatalf("the table has %d cases, want every reason × 3 scopes × 2 kinds", len(policyCases))
	}
	for _, c := range policyCases {
		e := Entry{Tenant: "acme", Address: "bob@example.com", Reason: c.reason, List: c.entryScope("news")}
		if got := Applies(e, "news", c.kind); got != c.stops {
			t.Errorf("%v: Applies = %v, want %v", c, got, c.stops)
		}
	}
}

// TestAppliesFailsClosed: data this code does not understand suppresses
// rather than sends.
func TestAppliesFailsClosed(t *testing.T) {
	if !Applies(Entry{Reason: "from-the-future", List: "other"}, "news", tenant.Transactional) {
		t.Error("an unknown reason does not apply")
	}
	if !Applies(Entry{Reason: Unsubscribe, List: All}, "news", "") {
		t.Error("an all-marketing opt-out does not apply to a list of unknown kind")
	}
}

func TestParseReason(t *testing.T) {
	for _, r := range reasons {
		if got, err := ParseReason(string(r)); got != r || err != nil {
			t.Errorf("ParseReason(%q) = %q, %v", r, got, err)
		}
	}
	for _, s := range []string{"", "Bounce", "spam"} {
		if _, err := ParseReason(s); err == nil {
			t.Errorf("ParseReason(%q) succeeded", s)
		}
	}
}
