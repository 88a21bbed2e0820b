package tenancy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Audit appends one JSON line per API call to a file: when, which API,
// the tenant it acted for, the verb (the route), the object (the path)
// and the result (the HTTP status).
type Audit struct {
	// MaxBytes is the size at which the log moves to <path>.1 (replacing
	// the one there) and starts anew; 0 is DefaultAuditBytes.
	MaxBytes int64

	mu   sync.Mutex
	path string
	f    *os.File
	size int64
}

// DefaultAuditBytes bounds the audit log: it and the one before it are
// kept.
const DefaultAuditBytes = 64 << 20

// Entry is one call.
type Entry struct {
	Time   time.Time `json:"time"`
	API    string    `json:"api"`
	Tenant string    `json:"tenant"`
	Verb   string    `json:"verb"`
	Object string    `json:"object"`
	Status int       `json:"status"`
	// Peer is the client's address, for calls that came over a network.
	Peer string `json:"peer,omitempty"`
}

// OpenAudit opens (or makes) the log at path for appending.
func OpenAudit(path string) (*Audit, error) {
	a := &Audit{path: path}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *Audit) open() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open the audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open the audit log: %w", err)
	}
	a.f, a.size = f, st.Size()
	return nil
}

// Record writes e. A nil Audit records nothing.
func (a *Audit) Record(e Entry) {
	if a == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	max := a.MaxBytes
	if max <= 0 {
		max = DefaultAuditBytes
	}
	if a.f != nil && a.size > 0 && a.size+int64(len(b)) > max {
		a.f.Close()
		a.f = nil
		os.Rename(a.path, a.path+".1")
		a.open()
	}
	if a.f == nil {
		return
	}
	n, _ := a.f.Write(b)
	a.size += int64(n)
}

// Close closes the file.
func (a *Audit) Close() error {
	if a == nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	return a.f.Close()
}

// Call records the call r makes as tenant once h has answered it. The
// route (r.Pattern) is known only after the mux has matched, which is
// why the entry is written afterwards.
func (a *Audit) Call(api, tenant string, w http.ResponseWriter, r *http.Request, h func(w http.ResponseWriter)) {
	if a == nil {
		h(w)
		return
	}
	rec := &Recorder{ResponseWriter: w}
	h(rec)
	verb := r.Pattern
	if verb == "" {
		verb = r.Method
	}
	peer := ""
	if r.TLS != nil {
		peer = r.RemoteAddr
	}
	a.Record(Entry{API: api, Tenant: tenant, Verb: verb, Object: r.URL.Path, Status: rec.Status(), Peer: peer})
}

// Recorder is a ResponseWriter that remembers the status it sent, and
// passes on flushes and hijacks (the Docker API's streams need both).
type Recorder struct {
	http.ResponseWriter
	status int
}

// WriteHeader implements http.ResponseWriter.
func (r *Recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (r *Recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Status is the status sent; 101 for a hijacked connection.
func (r *Recorder) Status() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// Flush implements http.Flusher.
func (r *Recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack implements http.Hijacker.
func (r *Recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("the connection cannot be hijacked")
	}
	if r.status == 0 {
		r.status = http.StatusSwitchingProtocols
	}
	return hj.Hijack()
}

// Unwrap lets http.ResponseController reach the writer beneath.
func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
