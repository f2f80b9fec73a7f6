package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/heedmail/heed/internal/ids"
	"github.com/heedmail/heed/internal/queue"
	"github.com/heedmail/heed/internal/tenant"
	"github.com/heedmail/heed/internal/txn"
	"github.com/heedmail/heed/suppression"
	"github.com/labstack/echo/v4"
)

// Problem types beyond about:blank (RFC 9457 section 4.2).
const (
	TypeInvalidRequest = "urn:heed:problem:invalid-request"
	TypeConflict       = "urn:heed:problem:conflict"
	// TypeUnprocessable is a well-formed request that asks for what is not
	// allowed (an ip credential's network too broad).
	TypeUnprocessable = "urn:heed:problem:unprocessable"
)

// ProblemContentType is the media type of every error body.
const ProblemContentType = "application/problem+json"

// maxBody bounds request bodies.
const maxBody = 1 << 20

// Problem is an RFC 9457 problem details document.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// apiError is an error a handler has already classified: what the client
// is told. The domain packages return plain errors; handlers wrap them here.
type apiError struct {
	status int
	detail string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d: %s", e.status, e.detail) }

func invalid(format string, a ...any) error {
	return &apiError{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

func notFound(format string, a ...any) error {
	return &apiError{http.StatusNotFound, fmt.Sprintf(format, a...)}
}

func unprocessable(format string, a ...any) error {
	return &apiError{http.StatusUnprocessableEntity, fmt.Sprintf(format, a...)}
}

func conflict(format string, a ...any) error {
	return &apiError{http.StatusConflict, fmt.Sprintf(format, a...)}
}

// problemFor classifies err; the zero Problem status means an internal
// error.
func problemFor(err error) Problem {
	var ae *apiError
	var he *echo.HTTPError
	switch {
	case errors.As(err, &ae):
		return newProblem(ae.status, ae.detail)
	case errors.As(err, &he):
		detail := ""
		if m, ok := he.Message.(string); ok && m != http.StatusText(he.Code) {
			detail = m
		}
		return newProblem(he.Code, detail)
	case errors.Is(err, txn.ErrUnavailable):
		// Nothing was committed; the client may retry (RFC 9110, 15.6.4).
		return newProblem(http.StatusServiceUnavailable, "the database is unavailable; nothing was changed, try again later")
	case errors.Is(err, tenant.ErrNotFound), errors.Is(err, queue.ErrNotFound), errors.Is(err, fs.ErrNotExist):
		return newProblem(http.StatusNotFound, "the resource does not exist")
	case errors.Is(err, tenant.ErrNetworkRefused):
		return newProblem(http.StatusUnprocessableEntity, err.Error())
	case errors.Is(err, tenant.ErrExists):
		return newProblem(http.StatusConflict, err.Error())
	case errors.Is(err, suppression.ErrInvalid):
		return newProblem(http.StatusBadRequest, err.Error())
	}
	return Problem{}
}

func newProblem(status int, detail string) Problem {
	p := Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
	switch status {
	case http.StatusBadRequest:
		p.Type, p.Title = TypeInvalidRequest, "Invalid request"
	case http.StatusConflict:
		p.Type, p.Title = TypeConflict, "Conflict"
	case http.StatusUnprocessableEntity:
		p.Type, p.Title = TypeUnprocessable, "Unprocessable request"
	}
	return p
}

// handleError is echo's HTTPErrorHandler: every error becomes problem+json.
// Unclassified errors are logged with a correlation id that the client also
// gets, and their text is not shown.
func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		s.Logger.Error("admin: error after response started", "path", c.Path(), "err", err)
		return
	}
	p := problemFor(err)
	if p.Status == 0 {
		id := ids.New(s.now())
		s.Logger.Error("admin: internal error", "method", c.Request().Method,
			"path", c.Path(), "correlation_id", id, "err", err)
		p = newProblem(http.StatusInternalServerError, "internal error; correlation id "+id)
	}
	if p.Status == http.StatusUnauthorized && c.Response().Header().Get("WWW-Authenticate") == "" {
		c.Response().Header().Set("WWW-Authenticate", "Bearer")
	}
	if err := writeProblem(c, p); err != nil {
		s.Logger.Debug("admin: writing problem", "err", err)
	}
}

func writeProblem(c echo.Context, p Problem) error {
	if c.Request().Method == http.MethodHead {
		return c.NoContent(p.Status)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return c.Blob(p.Status, ProblemContentType, b)
}

// recoverPanic turns a handler's panic into a logged 500.
func (s *server) recoverPanic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		return next(c)
	}
}

// queryLimit reads ?limit=: def without it, otherwise an integer from 1 to
// max.
func queryLimit(c echo.Context, def, max int) (int, error) {
	v := c.QueryParam("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, invalid("limit must be an integer from 1 to %d, not %q", max, v)
	}
	return n, nil
}

// queryAfter reads ?after=, the seq of the last record (of what) seen; 0
// without it.
func queryAfter(c echo.Context, what string) (uint64, error) {
	v := c.QueryParam("after")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, invalid("after must be %s seq (a non-negative integer), not %q", what, v)
	}
	return n, nil
}

// errEmptyBody is what decodeJSON returns for a body with nothing in it.
var errEmptyBody = &apiError{http.StatusBadRequest, "the request body is empty; send a JSON object"}

// decodeJSON reads the request body, at most 1 MiB of one JSON object with
// only known fields, into v.
func decodeJSON(c echo.Context, v any) error {
	req := c.Request()
	if ct := req.Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return &apiError{http.StatusUnsupportedMediaType,
				fmt.Sprintf("Content-Type is %q; send application/json", ct)}
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), req.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("the body must hold a single JSON object, with nothing after it")
	}
	return nil
}

func bodyError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var big *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return errEmptyBody
	case errors.Is(err, io.ErrUnexpectedEOF):
		return invalid("the JSON body ends early")
	case errors.As(err, &syn):
		return invalid("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ) && typ.Field != "":
		return invalid("field %q must be of type %s, not a JSON %s", typ.Field, typ.Type, typ.Value)
	case errors.As(err, &typ):
		return invalid("the body must be a JSON object")
	case errors.As(err, &big):
		return &apiError{http.StatusRequestEntityTooLarge, "the request body exceeds 1 MiB"}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return invalid("unknown field %s; remove it (field names are case-sensitive)", f)
	}
	return invalid("cannot read the body: %v", err)
}
