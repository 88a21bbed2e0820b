// Package errhttp carries Hearth's error classes (internal/errdefs) over
// its own HTTP APIs (admin, node, join, data path) and back: a status code
// plus a kind where one code serves two classes. The Docker and
// Kubernetes frontends translate to their clients' conventions instead.
package errhttp

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Body is the JSON of an error answer.
type Body struct {
	Message string `json:"message"`
	Kind    string `json:"kind,omitempty"`
}

var classes = []struct {
	class error
	code  int
	kind  string
}{
	{errdefs.ErrNotFound, http.StatusNotFound, ""},
	{errdefs.ErrAlreadyExists, http.StatusConflict, "already-exists"},
	{errdefs.ErrConflict, http.StatusConflict, ""},
	{errdefs.ErrInvalidArgument, http.StatusBadRequest, ""},
	{errdefs.ErrFailedPrecondition, http.StatusPreconditionFailed, ""},
	{errdefs.ErrUnavailable, http.StatusServiceUnavailable, ""},
	{errdefs.ErrUnauthenticated, http.StatusUnauthorized, ""},
	{errdefs.ErrPermissionDenied, http.StatusForbidden, ""},
}

// Status is the code and kind for err.
func Status(err error) (int, string) {
	for _, c := range classes {
		if errors.Is(err, c.class) {
			return c.code, c.kind
		}
	}
	return http.StatusInternalServerError, ""
}

// Write answers with err.
func Write(w http.ResponseWriter, err error) {
	code, kind := Status(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(Body{Message: err.Error(), Kind: kind})
}

// Read turns an error answer back into an error of its class.
func Read(resp *http.Response) error {
	var b Body
	json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&b)
	if b.Message == "" {
		b.Message = resp.Status
	}
	return FromStatus(resp.StatusCode, b)
}

// FromStatus makes the error a status and body stand for.
func FromStatus(code int, b Body) error {
	for _, c := range classes {
		if c.code == code && (c.kind == "" || c.kind == b.Kind) {
			if c.kind == "" && b.Kind != "" {
				continue
			}
			return errdefs.New(c.class, b.Message)
		}
	}
	return errors.New(b.Message)
}
