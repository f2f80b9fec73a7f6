package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// agreementFloor is the share of the shared corpus's samples on which
// Heed must reach sisimai's verdict (issue 15: at least 95%).
const agreementFloor = 0.95

// expectedFile is expected.json in the shared corpus: for each sample,
// one entry per recipient with sisimai's verdict.
type expectedFile struct {
	Files map[string]struct {
		Expected []expectedEntry `json:"expected"`
	} `json:"files"`
}

type expectedEntry struct {
	Category  string  `json:"category"` // hard, complaint or soft
	Recipient *string `json:"recipient"`
	Reason    string  `json:"reason"`
	Status    string  `json:"status"`
}

// sampleVerdict compares what Heed would suppress after one report with
// what expected.json says. The question asked of each sample is the
// issue's: "would Heed suppress this address after this one report, and
// which address". A sample agrees when
//
//   - every recipient expected "hard" or "complaint" is among the addresses
//     Heed suppresses (compared case-insensitively), and
//   - Heed suppresses no other address, except that an expected entry
//     with no recipient (the sample names none that sisimai could read)
//     is matched by a suppression of any one address not expected
//     otherwise, or by a complaint that names nobody: Heed acts on the
//     recipient its VERP return path names, so a complaint counts.
//
// Recipients expected "soft" agree when Heed does not suppress them,
// whatever else it says about them. A false suppression is an address
// Heed suppresses that the sample expects "soft", or that it does not
// name at all when no nameless entry is left to account for it.
func sampleVerdict(exp []expectedEntry, r *Report) (agree bool, falseSupp []string, got []string) {
	want := map[string]bool{}
	soft := map[string]bool{}
	nameless := 0
	for _, e := range exp {
		switch {
		case e.Category == "soft":
			if e.Recipient != nil {
				soft[strings.ToLower(*e.Recipient)] = true
			}
		case e.Recipient == nil:
			nameless++
		default:
			want[strings.ToLower(*e.Recipient)] = true
		}
	}
	gotSet := map[string]bool{}
	if r != nil {
		for _, a := range r.Suppressed() {
			gotSet[strings.ToLower(a)] = true
		}
	}
	agree = true
	for a := range want {
		if !gotSet[a] {
			agree = false
		}
	}
	extra := 0
	for a := range gotSet {
		got = append(got, a)
		if want[a] {
			continue
		}
		extra++
		if soft[a] || extra > nameless {
			falseSupp = append(falseSupp, a)
			agree = false
		}
	}
	if nameless > extra && (r == nil || r.Kind != Complaint) {
		agree = false
	}
	sort.Strings(got)
	sort.Strings(falseSupp)
	return agree, falseSupp, got
}

// TestSharedCorpusAgreement measures Heed against sisimai's verdicts over
// the whole shared corpus and fails below agreementFloor or on any false
// suppression. The corpus lives beside the checkout; the test skips when
// it is absent, except in CI, where it must be there.
func TestSharedCorpusAgreement(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(sharedCorpus, "expected.json"))
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("shared corpus missing in CI: %v", err)
		}
		t.Skipf("shared corpus %s not present: %v", sharedCorpus, err)
	}
	var exp expectedFile
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(exp.Files))
	for n := range exp.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	var agreed int
	var disagreements, falseSupp []string
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(sharedCorpus, name))
		if err != nil {
			t.Fatal(err)
		}
		r, err := Parse(b)
		if err != nil && !errors.Is(err, ErrUnparsable) {
			t.Errorf("%s: error does not wrap ErrUnparsable: %v", name, err)
		}
		entries := exp.Files[name].Expected
		ok, fs, got := sampleVerdict(entries, r)
		if ok {
			agreed++
			continue
		}
		disagreements = append(disagreements, fmt.Sprintf("%s: suppress %v, want %s; heed: %s",
			name, got, describeExpected(entries), describeReport(r, err)))
		for _, a := range fs {
			falseSupp = append(falseSupp, name+": "+a)
		}
	}
	share := float64(agreed) / float64(len(names))
	t.Logf("agreement with sisimai: %d of %d samples (%.1f%%), %d false suppressions", agreed, len(names), 100*share, len(falseSupp))
	for _, d := range disagreements {
		t.Logf("disagrees: %s", d)
	}
	for _, f := range falseSupp {
		t.Errorf("false suppression: %s", f)
	}
	if share < agreementFloor {
		t.Errorf("agreement %.3f is below the floor %.2f", share, agreementFloor)
	}
}

func describeExpected(entries []expectedEntry) string {
	var parts []string
	for _, e := range entries {
		rcpt := "(none)"
		if e.Recipient != nil {
			rcpt = *e.Recipient
		}
		parts = append(parts, fmt.Sprintf("%s %s %s %s", rcpt, e.Category, e.Reason, e.Status))
	}
	return strings.Join(parts, "; ")
}

func describeReport(r *Report, err error) string {
	if err != nil {
		return err.Error()
	}
	parts := []string{r.Kind.String()}
	for _, s := range r.Recipients {
		parts = append(parts, fmt.Sprintf("%s %s %s %s", s.Recipient, s.Verdict, s.Reason, s.Status))
	}
	return strings.Join(parts, "; ")
}
