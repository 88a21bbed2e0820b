package docker

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// filters are the `filters` query parameter of list calls: a key, and the
// values any of which may match.
type filters map[string][]string

// parseFilters reads the filters parameter in both of Docker's forms
// ({"key":{"value":true}} and the older {"key":["value"]}), refusing keys
// not in allowed.
func parseFilters(r *http.Request, allowed ...string) (filters, error) {
	f := filters{}
	raw := r.URL.Query().Get("filters")
	if raw == "" {
		return f, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(raw), &m); err != nil {
		return nil, errdefs.InvalidArgument("invalid filter: %v", err)
	}
	for k, v := range m {
		ok := false
		for _, a := range allowed {
			ok = ok || a == k
		}
		if !ok {
			return nil, errdefs.InvalidArgument("invalid filter '%s'", k)
		}
		var set map[string]bool
		if err := json.Unmarshal(v, &set); err == nil {
			for val, on := range set {
				if on {
					f[k] = append(f[k], val)
				}
			}
			continue
		}
		var list []string
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, errdefs.InvalidArgument("invalid filter '%s': %s", k, string(v))
		}
		f[k] = append(f[k], list...)
	}
	return f, nil
}

// match reports whether a filter key is absent or one of its values
// passes fn.
func (f filters) match(key string, fn func(string) bool) bool {
	return len(f[key]) == 0 || anyOf(f[key], fn)
}

// matchLabels applies the label (key or key=value; all must hold) and
// label! filters. As Docker's MatchKVList, several label! filters leave a
// container out only when all of them hold.
func (f filters) matchLabels(labels map[string]string) bool {
	has := func(expr string) bool {
		k, v, withValue := strings.Cut(expr, "=")
		got, ok := labels[k]
		return ok && (!withValue || got == v)
	}
	for _, l := range f["label"] {
		if !has(l) {
			return false
		}
	}
	if len(f["label!"]) == 0 {
		return true
	}
	for _, l := range f["label!"] {
		if !has(l) {
			return true
		}
	}
	return false
}

// until reads the until filter (a timestamp or a duration before now);
// zero when absent.
func (f filters) until(now time.Time) (time.Time, error) {
	var t time.Time
	for _, v := range f["until"] {
		u, err := parseTime(v, now)
		if err != nil {
			return t, err
		}
		t = u
	}
	return t, nil
}

// parseTime reads Docker's time values: Unix seconds (with fractions),
// RFC 3339 timestamps, and durations before now ("10m").
func parseTime(v string, now time.Time) (time.Time, error) {
	// "0" is a duration to Go but the epoch to Docker.
	if d, err := time.ParseDuration(v); err == nil && strings.ContainsFunc(v, unicode.IsLetter) {
		return now.Add(-d), nil
	}
	if sec, frac, ok := strings.Cut(v, "."); ok || sec != "" {
		if s, err := strconv.ParseInt(sec, 10, 64); err == nil {
			ns := int64(0)
			if ok {
				frac = (frac + "000000000")[:9]
				if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
					return time.Time{}, errdefs.InvalidArgument("invalid time %q", v)
				}
			}
			return time.Unix(s, ns), nil
		}
	}
	for _, layout := range []string{time.RFC3339Nano, time.RFC3339, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, errdefs.InvalidArgument("invalid time %q: use a Unix timestamp, an RFC 3339 date or a duration", v)
}
