package tenant

import (
	"net/netip"
	"slices"
)

// netIndex finds the ip credential whose network holds a client's
// address with one map lookup per prefix length in use, longest first,
// rather than by comparing the address with every network registered:
// CredentialForAddr runs at every EHLO and MAIL of a session without AUTH.
// It is built from the database and kept in the read cache, which every
// write of the registry makes stale.
type netIndex struct {
	// refs maps each canonical network to its credential.
	refs map[netip.Prefix]NetworkRef
	// bits4 and bits6 are the prefix lengths in refs, longest first.
	bits4, bits6 []int
}

// buildNetIndex indexes nets (Rows.Networks). Of two entries for one
// network (a record stored mapped, before ParseNetwork unmapped, and one
// stored since) the first in nets is kept; networks broader than any
// limit allows match nobody and are left out.
func buildNetIndex(nets []NetworkRef) *netIndex {
	x := &netIndex{refs: map[netip.Prefix]NetworkRef{}}
	for _, n := range nets {
		p := canonical(n.Network)
		if broadest(p) {
			continue
		}
		if _, ok := x.refs[p]; ok {
			continue
		}
		x.refs[p] = n
		bits := &x.bits4
		if p.Addr().Is6() {
			bits = &x.bits6
		}
		if !slices.Contains(*bits, p.Bits()) {
			*bits = append(*bits, p.Bits())
		}
	}
	for _, bits := range [][]int{x.bits4, x.bits6} {
		slices.Sort(bits)
		slices.Reverse(bits)
	}
	return x
}

// lookup returns the credential with the most specific network holding
// addr (unmapped), false when none does. An address with a zone matches
// no network, as netip.Prefix.Contains has it.
func (x *netIndex) lookup(addr netip.Addr) (NetworkRef, bool) {
	if addr.Zone() != "" {
		return NetworkRef{}, false
	}
	bits := x.bits4
	if addr.Is6() {
		bits = x.bits6
	}
	for _, b := range bits {
		p, err := addr.Prefix(b)
		if err != nil {
			return NetworkRef{}, false
		}
		if ref, ok := x.refs[p]; ok {
			return ref, true
		}
	}
	return NetworkRef{}, false
}
