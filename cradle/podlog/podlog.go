// Package podlog is the on-disk format of a container's output: one JSON
// object per chunk, as Docker's json-file driver writes, so that logs keep
// their stream and timestamps. The supervisor writes it; the CLI and the
// API frontends read it, also after the pod has gone.
package podlog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"io"
	"os"
	"strings"
	"time"
)

// Entry is one chunk of output.
type Entry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"` // "stdout" or "stderr"
	Time   time.Time `json:"time"`
}

// Writer appends entries to a log file.
type Writer struct {
	f *os.File
	w *bufio.Writer
}

// Create opens path for appending, creating it when missing.
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return &Writer{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// Write appends one entry and flushes it to the file, so readers see it.
func (w *Writer) Write(stream string, data []byte, t time.Time) error {
	b, err := json.Marshal(Entry{Log: string(data), Stream: stream, Time: t.UTC()})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := w.w.Write(b); err != nil {
		return err
	}
	return w.w.Flush()
}

// Close syncs and closes the file.
func (w *Writer) Close() error {
	err := w.w.Flush()
	if serr := w.f.Sync(); err == nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Reader reads entries from a log file.
type Reader struct {
	f   *os.File
	r   *bufio.Reader
	buf []byte
}

// Open opens a log file for reading.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &Reader{f: f, r: bufio.NewReaderSize(f, 64<<10)}, nil
}

// Next returns the next whole entry, or io.EOF when none is complete yet;
// a later call continues where this one stopped.
func (r *Reader) Next() (Entry, error) {
	for {
		chunk, err := r.r.ReadSlice('\n')
		r.buf = append(r.buf, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			// A partial line stays in buf until the writer finishes it.
			return Entry{}, err
		}
		line := r.buf
		r.buf = r.buf[:0]
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return Entry{}, fmt.Errorf("corrupt log entry: %w", err)
		}
		return e, nil
	}
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// Send writes every whole entry not read yet to w as stdout and stderr
// frames of the control protocol, and returns at the end of the file.
func (r *Reader) Send(w io.Writer) error { return r.SendWith(w, nil) }

// TimeFormat is how a line's timestamp is written: Docker's RFC 3339 with
// nanoseconds always nine digits, so timestamps line up.
const TimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// SendWith is Send of the entries o selects, in o's form. With a tail, it
// reads to the end of the file first and sends the last lines only.
func (r *Reader) SendWith(w io.Writer, o *spec.LogOptions) error {
	var tail []Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if o != nil && ((!o.Since.IsZero() && e.Time.Before(o.Since)) || (!o.Until.IsZero() && e.Time.After(o.Until))) {
			continue
		}
		if o != nil && o.Tail >= 0 {
			tail = append(tail, lines(e)...)
			if len(tail) > 2*o.Tail+1024 {
				tail = append(tail[:0:0], tail[len(tail)-o.Tail:]...)
			}
			continue
		}
		if err := send(w, e, o); err != nil {
			return err
		}
	}
	if o != nil && o.Tail >= 0 {
		if len(tail) > o.Tail {
			tail = tail[len(tail)-o.Tail:]
		}
		for _, e := range tail {
			if err := send(w, e, o); err != nil {
				return err
			}
		}
	}
	return nil
}

// lines splits an entry at its newlines, keeping them.
func lines(e Entry) []Entry {
	var out []Entry
	s := e.Log
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			out = append(out, Entry{Log: s, Stream: e.Stream, Time: e.Time})
			break
		}
		out = append(out, Entry{Log: s[:i+1], Stream: e.Stream, Time: e.Time})
		s = s[i+1:]
	}
	return out
}

func send(w io.Writer, e Entry, o *spec.LogOptions) error {
	kind := spec.FrameStdout
	if e.Stream == "stderr" {
		kind = spec.FrameStderr
	}
	if o == nil || !o.Timestamps {
		return spec.WriteFrame(w, kind, []byte(e.Log))
	}
	var b strings.Builder
	ts := e.Time.UTC().Format(TimeFormat)
	for _, l := range lines(e) {
		b.WriteString(ts)
		b.WriteByte(' ')
		b.WriteString(l.Log)
	}
	return spec.WriteFrame(w, kind, []byte(b.String()))
}

// Copy writes every entry of the file at path to stdout or stderr by
// stream.
func Copy(path string, stdout, stderr io.Writer) error {
	r, err := Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		e, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		w := stdout
		if e.Stream == "stderr" {
			w = stderr
		}
		if _, err := io.WriteString(w, e.Log); err != nil {
			return err
		}
	}
}
