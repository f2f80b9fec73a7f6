package report

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/corpus/*.golden.json")

// sharedCorpus is the sisimai set-of-emails collection beside the checkout.
const sharedCorpus = "../../../shared/corpora/bounces"

// coverageFloor is the share of the shared corpus that must keep parsing
// to a bounce with a recipient and a status, or a complaint with a feedback
// type. Measured when the heuristic was written: 254 of 333, 76.3%.
const coverageFloor = 0.75

// covered says whether r counts as understood for the coverage figure.
func covered(r *Report) bool {
	switch r.Kind {
	case Complaint:
		return r.FeedbackType != ""
	case Bounce:
		for _, s := range r.Recipients {
			if s.Recipient != "" && s.Status != "" {
				return true
			}
		}
	}
	return false
}

func TestSharedCorpus(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(sharedCorpus, "*.eml"))
	if len(files) == 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("shared corpus %s missing in CI", sharedCorpus)
		}
		t.Skipf("shared corpus %s not present (only in the project workspace); skipping", sharedCorpus)
	}
	var ok, standard, auto int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		r, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrUnparsable) {
				t.Errorf("%s: error does not wrap ErrUnparsable: %v", name, err)
			}
			t.Logf("%s: %v", name, err)
			continue
		}
		if strings.HasPrefix(name, "rfc3834-") && r.Kind == Bounce {
			for _, s := range r.Recipients {
				if s.Permanent {
					t.Errorf("%s: auto-reply taken for a permanent bounce", name)
				}
			}
		}
		if strings.HasPrefix(name, "arf-") && r.Kind == Bounce {
			t.Errorf("%s: complaint taken for a bounce", name)
		}
		if r.Kind == AutoReply {
			auto++
		}
		if covered(r) {
			ok++
			if r.Standard {
				standard++
			}
		} else {
			t.Logf("%s: not covered: kind=%v recipients=%d", name, r.Kind, len(r.Recipients))
		}
	}
	share := float64(ok) / float64(len(files))
	t.Logf("coverage: %d/%d (%.1f%%) understood, %d from RFC 3464/5965 parts, %d auto-replies",
		ok, len(files), 100*share, standard, auto)
	if share < coverageFloor {
		t.Errorf("coverage %.3f fell below the floor %.3f", share, coverageFloor)
	}
}

func TestGoldenCorpus(t *testing.T) {
	files, err := filepath.Glob("testdata/corpus/*.eml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden corpus: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			got := result(b)
			golden := strings.TrimSuffix(f, ".eml") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if string(got) != string(want) {
				t.Errorf("result differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

// result renders Parse's outcome, error included, as stable JSON.
func result(b []byte) []byte {
	r, err := Parse(b)
	v := struct {
		Report *Report `json:"report,omitempty"`
		Error  string  `json:"error,omitempty"`
	}{r, ""}
	if err != nil {
		v.Error = err.Error()
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	return append(out, '\n')
}
