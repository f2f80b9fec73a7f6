package admin

import (
	"errors"
	"net/http"
	"strings"
	"unicode"

	"github.com/heedmail/heed/internal/reputation"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/labstack/echo/v4"
)

// reputationView is GET …/reputation: the rates with their counts and
// windows, the guard's state and the levels it judges by.
type reputationView struct {
	reputation.Report
	Paused bool                `json:"paused"`
	State  reputation.State    `json:"state"`
	Scope  string              `json:"pause_scope"`
	Levels reputationLevelView `json:"levels"`
}

type reputationLevelView struct {
	WarnBounceRate     float64 `json:"warn_bounce_rate"`
	PauseBounceRate    float64 `json:"pause_bounce_rate"`
	WarnComplaintRate  float64 `json:"warn_complaint_rate"`
	PauseComplaintRate float64 `json:"pause_complaint_rate"`
	MinFinalAttempts   int64   `json:"min_final_attempts"`
	MinDelivered       int64   `json:"min_delivered"`
}

// getReputation answers an operator and the tenant's own API keys.
func (s *server) getReputation(c echo.Context, t tenant.Tenant) error {
	if s.Rates == nil || s.Guard == nil {
		return notFound("reputation is not available")
	}
	ctx := c.Request().Context()
	rep, err := s.Rates.Report(ctx, t.ID)
	if err != nil {
		return err
	}
	st, err := s.Guard.State(ctx, t.ID)
	if err != nil {
		return err
	}
	lv := s.Guard.Levels()
	// paused is what submission enforces now (the guard's set, changed
	// once a pause or resume has committed), so that a client that reads
	// "paused" is refused at its next submission; State is the record.
	_, paused := s.Guard.Paused(t.ID)
	return c.JSON(http.StatusOK, reputationView{Report: rep, Paused: paused, State: st, Scope: s.Guard.Scope(),
		Levels: reputationLevelView{lv.WarnBounce, lv.PauseBounce, lv.WarnComplaint, lv.PauseComplaint, lv.MinFinal, lv.MinDelivered}})
}

// pauseTenant pauses a tenant by hand (operator only, audited): its mail
// is refused at submission and its queued mail held.
func (s *server) pauseTenant(c echo.Context, t tenant.Tenant) error {
	if s.Guard == nil {
		return notFound("reputation is not available")
	}
	var body struct {
		Reason string `json:"reason"`
	}
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	body.Reason = strings.TrimSpace(body.Reason)
	if body.Reason == "" || len(body.Reason) > 200 {
		return invalid("reason: say why, in at most 200 characters; the tenant sees it in the SMTP refusal")
	}
	if tenant.ValidText(body.Reason) != nil || strings.ContainsFunc(body.Reason, unicode.IsControl) {
		// It goes into an SMTP reply line (a CR LF would end it and start
		// another) and into PostgreSQL's jsonb (which refuses a NUL).
		return invalid("reason: one line of text, without control characters; the tenant sees it in the SMTP refusal")
	}
	st, err := s.Guard.Pause(c.Request().Context(), t.ID, whoIs(c).actor, body.Reason)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}

// resumeTenant resumes a paused tenant (operator only, audited) and lets
// its held mail go.
func (s *server) resumeTenant(c echo.Context, t tenant.Tenant) error {
	if s.Guard == nil {
		return notFound("reputation is not available")
	}
	st, err := s.Guard.Resume(c.Request().Context(), t.ID, whoIs(c).actor)
	if errors.Is(err, reputation.ErrNotPaused) {
		return &apiError{http.StatusConflict, "tenant " + t.ID + " is not paused"}
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, st)
}
