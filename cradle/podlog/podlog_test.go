package podlog

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var base = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

func writeAll(t *testing.T, path string, entries []Entry) {
	t.Helper()
	w, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := w.Write(e.Stream, []byte(e.Log), e.Time); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, path string) []Entry {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
}

func TestWriteRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entries []Entry
	}{
		{"none", nil},
		{"one", []Entry{{Log: "hello\n", Stream: "stdout", Time: base}}},
		{"streams in order", []Entry{
			{Log: "out 1\n", Stream: "stdout", Time: base},
			{Log: "err 1\n", Stream: "stderr", Time: base.Add(time.Millisecond)},
			{Log: "out 2", Stream: "stdout", Time: base.Add(time.Second)},
			{Log: " continued\n", Stream: "stdout", Time: base.Add(time.Second + 1)},
		}},
		{"awkward content", []Entry{
			{Log: "", Stream: "stdout", Time: base},
			{Log: "line 1\nline 2\n\n", Stream: "stderr", Time: base},
			{Log: "\"quoted\" \\ \t \x00 \x1b[31mred\x1b[0m", Stream: "stdout", Time: base},
			{Log: "日本語 🔥\r\n", Stream: "stdout", Time: base},
		}},
		{"big chunk", []Entry{{Log: strings.Repeat("0123456789abcdef", 16<<10), Stream: "stdout", Time: base}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "c.log")
			writeAll(t, p, tt.entries)
			got := readAll(t, p)
			if len(got) != len(tt.entries) {
				t.Fatalf("read %d entries, wrote %d", len(got), len(tt.entries))
			}
			for i, e := range got {
				w := tt.entries[i]
				if e.Log != w.Log || e.Stream != w.Stream || !e.Time.Equal(w.Time) {
					t.Fatalf("entry %d = %q %s %v, want %q %s %v", i, e.Log, e.Stream, e.Time, w.Log, w.Stream, w.Time)
				}
			}
		})
	}
}

func TestWriteFormat(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "c.log")
	// A non-UTC time is written in UTC.
	est := time.FixedZone("EST", -5*3600)
	writeAll(t, p, []Entry{{Log: "hi\n", Stream: "stdout", Time: time.Date(2026, 1, 2, 3, 4, 5, 6, est)}})
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"log":"hi\n","stream":"stdout","time":"2026-01-02T08:04:05.000000006Z"}` + "\n"
	if string(b) != want {
		t.Fatalf("log file\n%s\nwant\n%s", b, want)
	}
	// 0640 less the umask: never more, and the owner can read and write.
	if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&^0o640 != 0 || fi.Mode().Perm()&0o600 != 0o600 {
		t.Fatalf("log file mode %v, %v; want 0640 (less the umask)", fi.Mode(), err)
	}
}

func TestCreateAppends(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "c.log")
	writeAll(t, p, []Entry{{Log: "first\n", Stream: "stdout", Time: base}})
	writeAll(t, p, []Entry{{Log: "second\n", Stream: "stderr", Time: base.Add(time.Second)}})
	got := readAll(t, p)
	if len(got) != 2 || got[0].Log != "first\n" || got[1].Log != "second\n" || got[1].Stream != "stderr" {
		t.Fatalf("entries %+v", got)
	}
}

func TestWriterFlushesEachEntry(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "c.log")
	w, err := Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for i, s := range []string{"a", "b", "c"} {
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("before entry %d: Next = %v, want io.EOF", i, err)
		}
		if err := w.Write("stdout", []byte(s), base); err != nil {
			t.Fatal(err)
		}
		// Without closing the writer, a reader sees the entry at once.
		e, err := r.Next()
		if err != nil || e.Log != s {
			t.Fatalf("after entry %d: Next = %+v, %v", i, e, err)
		}
	}
}

func TestReaderPartialLine(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "c.log")
	full := `{"log":"whole\n","stream":"stdout","time":"2026-01-01T00:00:00Z"}` + "\n"
	part := `{"log":"partial\n","stream":"stderr","time":"2026-01-01T00:00:01Z"}` + "\n"
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(full + part[:20]); err != nil {
		t.Fatal(err)
	}
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if e, err := r.Next(); err != nil || e.Log != "whole\n" {
		t.Fatalf("first Next = %+v, %v", e, err)
	}
	// The second line is not finished: EOF, however often asked.
	for range 3 {
		if e, err := r.Next(); err != io.EOF {
			t.Fatalf("Next on a partial line = %+v, %v; want io.EOF", e, err)
		}
	}
	// More of it, still not whole.
	if _, err := f.WriteString(part[20:40]); err != nil {
		t.Fatal(err)
	}
	if e, err := r.Next(); err != io.EOF {
		t.Fatalf("Next on a longer partial line = %+v, %v; want io.EOF", e, err)
	}
	// Completed: the whole entry, from where it began.
	if _, err := f.WriteString(part[40:]); err != nil {
		t.Fatal(err)
	}
	e, err := r.Next()
	if err != nil {
		t.Fatalf("Next on the completed line: %v", err)
	}
	if e.Log != "partial\n" || e.Stream != "stderr" || !e.Time.Equal(time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)) {
		t.Fatalf("completed entry %+v", e)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next at the end = %v, want io.EOF", err)
	}
}

func TestReaderLongPartialLine(t *testing.T) {
	t.Parallel()
	// A line longer than the reader's buffer, written in two parts.
	p := filepath.Join(t.TempDir(), "c.log")
	big := strings.Repeat("x", 200<<10)
	b := []byte(`{"log":"` + big + `","stream":"stdout","time":"2026-01-01T00:00:00Z"}` + "\n")
	if err := os.WriteFile(p, b[:150<<10], 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next on a long partial line = %v, want io.EOF", err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b[150<<10:]); err != nil {
		t.Fatal(err)
	}
	e, err := r.Next()
	if err != nil || e.Log != big {
		t.Fatalf("Next = %d bytes, %v; want %d bytes", len(e.Log), err, len(big))
	}
}

func TestReaderCorrupt(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "c.log")
	content := `{"log":"a","stream":"stdout","time":"2026-01-01T00:00:00Z"}` + "\n" +
		"this is not json\n" +
		`{"log":"b","stream":"stderr","time":"2026-01-01T00:00:00Z"}` + "\n" +
		`{"log":"c","stream":"stdout","time":"yesterday"}` + "\n"
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := []string{"a", "corrupt", "b", "corrupt"}
	for i, w := range want {
		e, err := r.Next()
		if w == "corrupt" {
			if err == nil || !strings.HasPrefix(err.Error(), "corrupt log entry: ") {
				t.Fatalf("line %d: Next = %+v, %v; want a corrupt entry error", i, e, err)
			}
			continue
		}
		if err != nil || e.Log != w {
			t.Fatalf("line %d: Next = %+v, %v; want %q", i, e, err, w)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("Next at the end = %v", err)
	}

	// Copy stops at the corrupt line.
	var out, errw bytes.Buffer
	err = Copy(p, &out, &errw)
	if err == nil || !strings.Contains(err.Error(), "corrupt log entry") {
		t.Fatalf("Copy = %v, want a corrupt entry error", err)
	}
	if out.String() != "a" || errw.Len() != 0 {
		t.Fatalf("Copy wrote %q and %q before the corrupt line", out.String(), errw.String())
	}
}

func TestOpenMissing(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "nope.log")
	if _, err := Open(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a missing file = %v", err)
	}
	if err := Copy(p, io.Discard, io.Discard); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Copy of a missing file = %v", err)
	}
	if _, err := Create(filepath.Join(p, "sub", "c.log")); err == nil {
		t.Fatal("Create in a missing directory succeeded")
	}
}

func TestCopy(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "c.log")
	writeAll(t, p, []Entry{
		{Log: "o1\n", Stream: "stdout", Time: base},
		{Log: "e1\n", Stream: "stderr", Time: base},
		{Log: "o2", Stream: "stdout", Time: base},
		{Log: "o3\n", Stream: "stdout", Time: base},
		{Log: "e2\n", Stream: "stderr", Time: base},
		// An unknown stream goes to stdout.
		{Log: "x\n", Stream: "other", Time: base},
	})
	// A partial last line is left out.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"log":"cut`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var out, errw bytes.Buffer
	if err := Copy(p, &out, &errw); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	if got, want := out.String(), "o1\no2o3\nx\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if got, want := errw.String(), "e1\ne2\n"; got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestCopyWriteError(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "c.log")
	writeAll(t, p, []Entry{{Log: "o\n", Stream: "stdout", Time: base}, {Log: "e\n", Stream: "stderr", Time: base}})
	if err := Copy(p, io.Discard, failWriter{}); err == nil || err.Error() != "broken pipe" {
		t.Fatalf("Copy = %v, want the writer's error", err)
	}
	if err := Copy(p, failWriter{}, io.Discard); err == nil || err.Error() != "broken pipe" {
		t.Fatalf("Copy = %v, want the writer's error", err)
	}
}
