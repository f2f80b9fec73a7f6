package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/heedmail/heed/internal/report"
)

// classified is what `heed report classify` prints for one file: the
// parsed report, or why it could not be read, and what Heed would do
// with it on the inbound listener.
type classified struct {
	File   string         `json:"file"`
	Report *report.Report `json:"report,omitempty"`
	Error  string         `json:"error,omitempty"`
	// Suppress lists the addresses this report alone suppresses.
	Suppress []string `json:"suppress"`
	// Action says it in words, for an operator asking why a report did
	// or did not act.
	Action string `json:"action"`
}

// reportCmd runs `heed report classify FILE...`: each file is read as one
// inbound message and printed as a JSON object, one per line. It needs no
// relay, running or stopped.
func reportCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "classify" {
		fmt.Fprint(stderr, "Usage: heed report classify FILE...\n")
		return errors.New("report: want the classify subcommand")
	}
	files := args[1:]
	if len(files) == 0 {
		fmt.Fprint(stderr, "Usage: heed report classify FILE...\n")
		return errors.New("report classify: no files")
	}
	enc := json.NewEncoder(stdout)
	var failed error
	for _, f := range files {
		c, err := classify(f)
		if err != nil {
			// A file that cannot be read is the command's failure; a
			// message that is not a report is a result.
			failed = fmt.Errorf("report classify: %w", err)
		}
		if err := enc.Encode(c); err != nil {
			return err
		}
	}
	return failed
}

func classify(file string) (classified, error) {
	c := classified{File: file, Suppress: []string{}}
	b, err := readLimited(file, report.MaxSize+1)
	if err != nil {
		c.Error = err.Error()
		return c, err
	}
	r, err := report.Parse(b)
	if err != nil {
		c.Error = err.Error()
		c.Action = "not a report Heed can read: keep it in reports/unread for the operator, suppress nobody"
		return c, nil
	}
	c.Report = r
	if s := r.Suppressed(); s != nil {
		c.Suppress = s
	}
	c.Action = action(r)
	return c, nil
}

// action words what the inbound listener does with r.
func action(r *report.Report) string {
	switch r.Kind {
	case report.Complaint:
		return "complaint: suppress the complainant on every list"
	case report.Feedback:
		return "feedback report (" + r.FeedbackType + "), not a complaint: record it, suppress nobody"
	case report.AutoReply:
		return "auto-reply: ignore it"
	}
	if len(r.Suppressed()) > 0 {
		return "hard bounce: suppress the address on every list"
	}
	for _, s := range r.Recipients {
		if s.Verdict == report.Soft {
			return "soft bounce (" + string(s.Reason) + "): record it, suppress nobody"
		}
	}
	return "nothing failed: record it"
}

// readLimited reads at most n bytes of file.
func readLimited(file string, n int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}
