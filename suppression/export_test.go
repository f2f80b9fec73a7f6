package suppression

import (
	"context"
	"errors"
)

// What the external tests (package suppression_test, which can import the
// backends) need of this package's insides.

// HashOf is the keyed hash of norm.
func (s *Service) HashOf(norm string) Hash { return s.hash(norm) }

// ReasonCode is r's code in keys and values.
var ReasonCode = reasonCode

// ReasonCodes are the codes of the reasons.
var ReasonCodes = reasonCodes

// SetSortSizes makes the sorted import's runs, fan-in and batches small,
// and returns what puts them back.
func SetSortSizes(runBytes, fanIn, batch int) (restore func()) {
	r, f, b := sortRunBytes, sortFanIn, sortedBatch
	sortRunBytes, sortFanIn, sortedBatch = runBytes, fanIn, batch
	return func() { sortRunBytes, sortFanIn, sortedBatch = r, f, b }
}

// SortedSpy is a Service that counts the sorted import's calls, and can
// fail a batch or look around during one.
type SortedSpy struct {
	*Service
	Prepared int
	Batches  []int
	Fail     int    // fail the batch of this number (from 1)
	During   func() // called in each batch
}

func (s *SortedSpy) prepareKV(e Entry) ([]byte, []byte, error) {
	s.Prepared++
	return s.Service.prepareKV(e)
}

func (s *SortedSpy) importSorted(ctx context.Context, recs []kv) (int, error) {
	s.Batches = append(s.Batches, len(recs))
	if s.During != nil {
		s.During()
	}
	if len(s.Batches) == s.Fail {
		return 0, errors.New("disk full")
	}
	return s.Service.importSorted(ctx, recs)
}

// Constants and helpers the tests check against.
var (
	Neutralise   = neutralise
	Unneutralise = unneutralise
	FormulaStart = formulaStart
)

const (
	MaxReportedAddress = maxReportedAddress
	MaxLimit           = maxLimit
	ImportBatch        = importBatch
)

// PolicyCase is a policyCase for the external tests.
type PolicyCase struct {
	Reason Reason
	Kind   string
	Stops  bool
	c      policyCase
}

// EntryScope is the case's scope as an Entry.List for mail to list.
func (c PolicyCase) EntryScope(list string) string { return c.c.entryScope(list) }

func (c PolicyCase) String() string { return c.c.String() }

// PolicyCases is the policy table.
var PolicyCases = func() []PolicyCase {
	var out []PolicyCase
	for _, c := range policyCases {
		out = append(out, PolicyCase{Reason: c.reason, Kind: c.kind, Stops: c.stops, c: c})
	}
	return out
}()
