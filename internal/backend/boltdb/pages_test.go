package boltdb_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/heedmail/heed/internal/backend/boltdb"
	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/store"
)

// BenchmarkQueuePages prices the queue's rows on disk: b.N messages of
// 4 KiB with one recipient each, accepted and delivered by 20 goroutines
// at once (the end-to-end benchmark's 20 clients, so that a group commit
// carries several acceptances and deliveries, as under load), with the
// pages and bytes bbolt wrote per message and per commit. Pages, not
// time, are what the layout is judged by here: a group commit's fsync
// costs by the scattered pages it writes (docs/benchmarks.md, issue 20).
func BenchmarkQueuePages(b *testing.B) {
	db, err := store.Open(filepath.Join(b.TempDir(), "pages.db"), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	q := boltdb.Queue(db)
	body := benchBody()
	ctx := context.Background()
	before, tx0 := db.Bolt().Stats().TxStats, lastTx(db)
	const workers = 20
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	b.ResetTimer()
	for range workers {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if err := acceptAndDeliver(ctx, q, int(i), body); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	after, commits := db.Bolt().Stats().TxStats, float64(lastTx(db)-tx0)
	n, pages := float64(b.N), float64(after.GetPageCount()-before.GetPageCount())
	b.ReportMetric(pages/n, "pages/msg")
	b.ReportMetric(float64(after.GetPageAlloc()-before.GetPageAlloc())/n, "bytes/msg")
	b.ReportMetric(float64(after.GetWrite()-before.GetWrite())/n, "writes/msg")
	b.ReportMetric(pages/commits, "pages/commit")
	b.ReportMetric(n/commits, "msgs/commit")
}

// lastTx is the id of db's last committed write transaction: ids count
// commits.
func lastTx(db *store.DB) int {
	id := 0
	db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return id
}

// acceptAndDeliver adds message i and records its delivery, as a
// submission session and a delivery worker do.
func acceptAndDeliver(ctx context.Context, q *queue.Records, i int, body []byte) error {
	now := time.Now()
	m := &queue.Message{
		ID: ids.New(now), Tenant: "bench", List: "default", From: "app@bench.test",
		HeaderFrom: "app@bench.test", Size: int64(len(body)), ReceivedAt: now,
		Client:     queue.Client{Helo: "client.test", Addr: "127.0.0.1:40000", Auth: true},
		Body:       body,
		Recipients: []queue.Recipient{{Index: 0, Address: fmt.Sprintf("rcpt-%d@example.net", i)}},
	}
	if err := q.Add(ctx, m); err != nil {
		return err
	}
	job := queue.Job{MessageID: m.ID, Index: 0, Domain: "example.net", Due: now}
	_, err := q.Record(ctx, job, queue.Outcome{State: queue.Delivered, Reply: "250 2.0.0 Ok: queued as 4F2B", At: time.Now()})
	return err
}

// benchBody is 4 KiB of mail, as bench/'s end-to-end runs send.
func benchBody() []byte {
	var sb strings.Builder
	sb.WriteString("From: Bench <app@bench.test>\r\nTo: rcpt@example.net\r\nSubject: Benchmark message\r\n\r\n")
	const line = "The quick brown fox jumps over the lazy dog, then sends a receipt email.\r\n"
	for sb.Len()+len(line) <= 4096 {
		sb.WriteString(line)
	}
	sb.WriteString(strings.Repeat("x", 4096-sb.Len()))
	return []byte(sb.String())
}
