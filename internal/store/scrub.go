package store

import (
	bolt "go.etcd.io/bbolt"
)

// scrubBucket is the scratch bucket Scrub fills and drops.
var scrubBucket = []byte("scrub")

// Scrub overwrites the database file's free pages, so that data deleted or
// rewritten (an erased address) does not linger in the file where bbolt
// left it. bbolt reuses a free page as it is, and writes whole pages, so a
// transaction that takes every free page for zero-filled values, followed
// by one that frees them again, leaves zeros where the old bytes were.
// The values are sized so that a leaf (which holds at least two) fits one
// page: any single free page, wherever it is, takes one.
//
// Pages still held for an open read transaction (a backup, an export
// streaming) are not free yet: Scrub runs a few rounds and returns how
// many such pages it could not reach, for the caller to say so.
func (db *DB) Scrub() (held int, err error) {
	pageSize := db.bolt.Info().PageSize
	// page header 16, and per element a 16-byte header and an 8-byte key.
	val := make([]byte, (pageSize-16)/2-16-8-8)
	for round := 0; round < 4; round++ {
		st := db.bolt.Stats()
		n := 2*(st.FreePageN+st.PendingPageN) + 16
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(scrubBucket)
			if err != nil {
				return err
			}
			b.FillPercent = 0.1 // two values a leaf, bbolt's least
			var k [8]byte
			for i := 0; i < n; i++ {
				k[0], k[1], k[2], k[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
				if err := b.Put(k[:], val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, err
		}
		if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(scrubBucket) }); err != nil {
			return 0, err
		}
		// Pending pages are released at the start of a write transaction
		// unless a read transaction older than their freeing is open.
		if st.OpenTxN == 0 {
			return 0, nil
		}
		held = st.PendingPageN
	}
	return held, nil
}
