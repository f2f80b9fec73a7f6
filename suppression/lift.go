package suppression

import "context"

// Lifted is what Lift did.
type Lifted struct {
	// Removed: at least one entry went.
	Removed bool
	// Kept: an entry matched the scope but was kept, because it is not a
	// bounce and no reason was named.
	Kept bool
}

// Lift removes tenant's entries of addr, the rule of the admin API's
// DELETE of an address and of the console's remove button: of one scope
// when scope is not "", of one reason when only is not "". Without a
// reason it removes bounces only (the usual request: the mailbox works
// again) and keeps what a person or the operator decided (opt-outs,
// imports, complaints, manual blocks), which go only when named, since
// clearing a bounce must not resume mail to someone who opted out or
// reported spam.
func Lift(ctx context.Context, st Store, tenant, addr, scope string, only Reason) (Lifted, error) {
	var l Lifted
	entries, err := st.Lookup(ctx, tenant, addr)
	if err != nil {
		return l, err
	}
	for _, e := range entries {
		if scope != "" && e.List != scope || only != "" && e.Reason != only {
			continue
		}
		if only == "" && e.Reason != Bounce {
			l.Kept = true
			continue
		}
		ok, err := st.Remove(ctx, tenant, addr, e.List, e.Reason)
		if err != nil {
			return l, err
		}
		l.Removed = l.Removed || ok
	}
	return l, nil
}
