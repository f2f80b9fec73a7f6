package tenant

import (
	"bytes"
	"net/netip"
	"slices"

	"github.com/heedmail/heed/internal/store"
	bolt "go.etcd.io/bbolt"
)

// netIndex finds the ip credential whose network holds a client's
// address with one map lookup per prefix length in use, longest first,
// rather than by comparing the address with every network registered:
// CredentialForAddr runs at every EHLO and MAIL of a session without AUTH.
// It is built from the database and kept in the read cache, which every
// write of the registry makes stale.
type netIndex struct {
	// refs maps each canonical network to its credential's key.
	refs map[netip.Prefix][]byte
	// bits4 and bits6 are the prefix lengths in refs, longest first.
	bits4, bits6 []int
}

// buildNetIndex reads every ip credential's network. Of two entries for
// one network (a record stored mapped, before ParseNetwork unmapped, and
// one stored since) the first in key order is kept; networks broader
// than any limit allows match nobody and are left out.
func buildNetIndex(tx *bolt.Tx) (*netIndex, error) {
	x := &netIndex{refs: map[netip.Prefix][]byte{}}
	cur := tx.Bucket(store.BucketUsernames).Cursor()
	for k, v := cur.Seek([]byte("n:")); k != nil && bytes.HasPrefix(k, []byte("n:")); k, v = cur.Next() {
		p, err := netip.ParsePrefix(string(k[2:]))
		if err != nil {
			return nil, err
		}
		if p = canonical(p); broadest(p) {
			continue
		}
		if _, ok := x.refs[p]; ok {
			continue
		}
		x.refs[p] = bytes.Clone(v)
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
	return x, nil
}

// lookup returns the key of the credential with the most specific network
// holding addr (unmapped), or nil. An address with a zone matches no
// network, as netip.Prefix.Contains has it.
func (x *netIndex) lookup(addr netip.Addr) []byte {
	if addr.Zone() != "" {
		return nil
	}
	bits := x.bits4
	if addr.Is6() {
		bits = x.bits6
	}
	for _, b := range bits {
		p, err := addr.Prefix(b)
		if err != nil {
			return nil
		}
		if ref, ok := x.refs[p]; ok {
			return ref
		}
	}
	return nil
}
