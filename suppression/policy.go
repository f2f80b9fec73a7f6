package suppression

import "github.com/heedmail/heed/internal/tenant"

// coverage is what one reason stops. The columns are the three cases a
// delivery can be in relative to an entry:
//
//   - anyScope: the entry stops every list whatever scope it was stored
//     with. Bounces and complaints are about the mailbox and the person, not
//     about a list: a mailbox that does not exist does not exist for
//     receipts either, and a person who reported spam must not hear from
//     the tenant again (compliance.md, "Hard bounces and complaints stop
//     both kinds"). Add stores them with scope All anyway; this column keeps
//     the rule true for entries written by older code or another backend.
//   - allMarketing, allTransactional: what scope All stops, by the kind of
//     the list being sent to.
//
// An entry scoped to one list id always stops exactly that list, whatever
// the reason (the recipient or the tenant named it), so that case needs no
// column.
type coverage struct {
	anyScope         bool
	allMarketing     bool
	allTransactional bool
}

// policy is the rule table. Change it only with compliance.md.
var policy = map[Reason]coverage{
	//                 anyScope allMarketing allTransactional
	Bounce:    {true, true, true},
	Complaint: {true, true, true},
	// An operator's or tenant's block: "*" means every list.
	Manual: {false, true, true},
	// "*" is the landing page's "all marketing of this business": an
	// opt-out from commercial mail never stops transactional or
	// relationship mail (16 CFR 316.3), which the recipient still needs
	// (receipts, password resets).
	Unsubscribe: {false, true, false},
	// Imported opt-outs mean what they meant in the system they came from.
	Import: {false, true, false},
}

// Applies says whether entry e stops mail of list, a list of the given kind
// (tenant.Marketing or tenant.Transactional).
//
// It fails closed: an entry with a reason this code does not know covers
// everything, and a kind that is not tenant.Transactional is treated as
// marketing, so a bug upstream can only suppress too much, never send mail
// that someone opted out of.
func Applies(e Entry, list, kind string) bool {
	c, ok := policy[e.Reason]
	if !ok || c.anyScope {
		return true
	}
	if e.List != All {
		return e.List == list
	}
	if kind == tenant.Transactional {
		return c.allTransactional
	}
	return c.allMarketing
}

// strength orders reasons by how much they say about the mailbox, for
// Check to report the strongest entry that applies. It decides only what
// is reported: the store keeps every reason, none replaces another.
func strength(r Reason) int {
	switch r {
	case Bounce, Complaint:
		return 3
	case Manual:
		return 2
	case Unsubscribe, Import:
		return 1
	}
	return 4 // unknown: treated as covering everything, see Applies
}
