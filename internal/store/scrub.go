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
// Pages still held for an open read transaction are not free yet; Scrub
// runs rounds until none is left pending, at most a few.
func (db *DB) Scrub() error {
	for round := 0; round < 4; round++ {
		st := db.bolt.Stats()
		// Two values per page would share it; one per leaf takes a page
		// each, with room for branch pages.
		free := st.FreePageN + st.PendingPageN + 8
		pageSize := db.bolt.Info().PageSize
		val := make([]byte, pageSize/2+64)
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(scrubBucket)
			if err != nil {
				return err
			}
			b.FillPercent = 0.1 // a leaf of its own for every value
			var k [8]byte
			for i := 0; i < free; i++ {
				k[0], k[1], k[2], k[3] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
				if err := b.Put(k[:], val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(scrubBucket) }); err != nil {
			return err
		}
		if db.bolt.Stats().PendingPageN == 0 && st.PendingPageN == 0 {
			return nil
		}
	}
	return nil
}
