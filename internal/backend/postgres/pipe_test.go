package postgres

import (
	"context"
	"testing"

	"github.com/heedmail/heed/internal/backend"
)

// TestPipeCommitOfAbortedTransaction: a transaction in which a statement
// failed is aborted, and PostgreSQL answers its COMMIT with the tag
// ROLLBACK and no error. The pipe must not report that as committed: a
// face that took such an error for an answer (not found, say) would
// otherwise have the caller confirm a write (an SMTP 250) that was rolled
// back.
func TestPipeCommitOfAbortedTransaction(t *testing.T) {
	ctx := context.Background()
	db, _ := migrated(t)
	skewTable(t, db)
	b := db.Backend()
	for _, run := range []struct {
		name   string
		update func(context.Context, func(backend.Tx) error) error
	}{{"serializable", b.Update}, {"locking", locking{b}.Update}} {
		err := run.update(ctx, func(btx backend.Tx) error {
			p := btx.(*Tx).tx
			p.later("UPDATE skew SET v = 7 WHERE id = 1")
			// A failed statement whose error the code does not return.
			if _, err := p.Exec(ctx, "SELECT 1/0"); err == nil {
				t.Fatal("1/0 did not fail")
			}
			return nil
		})
		if err == nil {
			t.Errorf("%s: Update returned nil for a transaction that was rolled back", run.name)
		}
		if v1, _ := skewValues(t, db); v1 != 0 {
			t.Fatalf("%s: row 1 is %d; the aborted transaction committed", run.name, v1)
		}
	}
}
