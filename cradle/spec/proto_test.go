package spec

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestFrameRoundTrip(t *testing.T) {
	t.Parallel()
	kinds := []FrameKind{FrameRequest, FrameResponse, FrameStdin, FrameStdout, FrameStderr, FrameExit, FrameResize, FrameSignal}
	payloads := map[string][]byte{
		"empty":  {},
		"small":  []byte("hello"),
		"binary": {0, 1, 2, 0xff, '\n', 0},
	}
	for _, k := range kinds {
		for name, p := range payloads {
			var buf bytes.Buffer
			if err := WriteFrame(&buf, k, p); err != nil {
				t.Fatalf("kind %d %s: WriteFrame: %v", k, name, err)
			}
			if got, want := buf.Len(), 5+len(p); got != want {
				t.Fatalf("kind %d %s: frame is %d bytes, want %d", k, name, got, want)
			}
			gk, gp, err := ReadFrame(&buf)
			if err != nil {
				t.Fatalf("kind %d %s: ReadFrame: %v", k, name, err)
			}
			if gk != k || !bytes.Equal(gp, p) {
				t.Fatalf("kind %d %s: read back kind %d payload %q", k, name, gk, gp)
			}
			if buf.Len() != 0 {
				t.Fatalf("kind %d %s: %d bytes left after the frame", k, name, buf.Len())
			}
		}
	}
}

func TestFrameSequence(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	frames := []struct {
		k FrameKind
		p string
	}{{FrameStdout, "out"}, {FrameStderr, "err"}, {FrameStdin, ""}, {FrameExit, `{"code":0}`}}
	for _, f := range frames {
		if err := WriteFrame(&buf, f.k, []byte(f.p)); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range frames {
		k, p, err := ReadFrame(&buf)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if k != f.k || string(p) != f.p {
			t.Fatalf("frame %d: got %d %q, want %d %q", i, k, p, f.k, f.p)
		}
	}
	if _, _, err := ReadFrame(&buf); err != io.EOF {
		t.Fatalf("ReadFrame at end = %v, want io.EOF", err)
	}
}

func TestFrameMaxSize(t *testing.T) {
	t.Parallel()
	p := bytes.Repeat([]byte{'x'}, MaxFrame)
	var buf bytes.Buffer
	if err := WriteFrame(&buf, FrameStdout, p); err != nil {
		t.Fatalf("WriteFrame of MaxFrame bytes: %v", err)
	}
	k, got, err := ReadFrame(&buf)
	if err != nil || k != FrameStdout || len(got) != MaxFrame {
		t.Fatalf("ReadFrame = %d, %d bytes, %v", k, len(got), err)
	}

	buf.Reset()
	if err := WriteFrame(&buf, FrameStdout, append(p, 'y')); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("WriteFrame of MaxFrame+1 bytes = %v, want ErrFrameTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("a refused frame wrote %d bytes", buf.Len())
	}
}

// countingWriter records the size of every Write.
type countingWriter struct{ writes []int }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return len(p), nil
}

func TestWriteFrameSingleWrite(t *testing.T) {
	t.Parallel()
	var w countingWriter
	if err := WriteFrame(&w, FrameStdout, []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if len(w.writes) != 1 || w.writes[0] != 15 {
		t.Fatalf("writes = %v, want one write of 15 bytes", w.writes)
	}
}

func header(k FrameKind, n uint32) []byte {
	h := make([]byte, 5)
	h[0] = byte(k)
	binary.BigEndian.PutUint32(h[1:], n)
	return h
}

// Not parallel: it measures the bytes allocated while it runs.
func TestReadFrameTooLargeDoesNotAllocate(t *testing.T) {
	for _, n := range []uint32{MaxFrame + 1, 1<<32 - 1} {
		// Only the header: a reader that tried to read the payload would
		// get EOF instead of ErrFrameTooLarge.
		r := bytes.NewReader(header(FrameStdout, n))
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, p, err := ReadFrame(r)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrFrameTooLarge) {
			t.Fatalf("length %d: ReadFrame error = %v, want ErrFrameTooLarge", n, err)
		}
		if p != nil {
			t.Fatalf("length %d: got a payload of %d bytes", n, len(p))
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
			t.Fatalf("length %d: ReadFrame allocated %d bytes", n, d)
		}
	}
}

func TestReadFrameTruncated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nothing", nil, io.EOF},
		{"cut header", []byte{byte(FrameStdout), 0, 0}, io.ErrUnexpectedEOF},
		{"header only", header(FrameStdout, 10), io.ErrUnexpectedEOF},
		{"cut payload", append(header(FrameStdout, 10), "abc"...), io.ErrUnexpectedEOF},
		{"one byte short", append(header(FrameStdout, 4), "abc"...), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := ReadFrame(bytes.NewReader(tt.in))
			if err != tt.want {
				t.Fatalf("ReadFrame = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestJSONFrames(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	in := ExitStatus{Code: 137, Signal: 9, OOMKilled: true, FinishedAt: time.Date(2026, 2, 3, 4, 5, 6, 7, time.UTC)}
	if err := WriteJSON(&buf, FrameExit, in); err != nil {
		t.Fatal(err)
	}
	var out ExitStatus
	if err := ReadJSON(&buf, FrameExit, &out); err != nil {
		t.Fatal(err)
	}
	if out.Code != in.Code || out.Signal != in.Signal || !out.OOMKilled || !out.FinishedAt.Equal(in.FinishedAt) {
		t.Fatalf("read back %+v, want %+v", out, in)
	}

	// Wrong kind.
	buf.Reset()
	if err := WriteJSON(&buf, FrameResize, WindowSize{Rows: 24, Cols: 80}); err != nil {
		t.Fatal(err)
	}
	var ws WindowSize
	err := ReadJSON(&buf, FrameSignal, &ws)
	if err == nil || !strings.Contains(err.Error(), "got frame 7, want 8") {
		t.Fatalf("ReadJSON of the wrong kind = %v, want a frame kind error", err)
	}

	// Bad JSON.
	buf.Reset()
	if err := WriteFrame(&buf, FrameResponse, []byte("{nope")); err != nil {
		t.Fatal(err)
	}
	var resp Response
	err = ReadJSON(&buf, FrameResponse, &resp)
	if err == nil || !strings.Contains(err.Error(), "control protocol: frame 2") {
		t.Fatalf("ReadJSON of bad JSON = %v", err)
	}

	// Unencodable value.
	buf.Reset()
	if err := WriteJSON(&buf, FrameRequest, make(chan int)); err == nil {
		t.Fatal("WriteJSON of a channel succeeded")
	}
	if buf.Len() != 0 {
		t.Fatalf("a failed WriteJSON wrote %d bytes", buf.Len())
	}

	// A read error passes through.
	if err := ReadJSON(bytes.NewReader(nil), FrameResponse, &resp); err != io.EOF {
		t.Fatalf("ReadJSON of nothing = %v, want io.EOF", err)
	}
}

// serveOne reads one request from conn, checks its op, and answers with
// resp in a frame of the given kind; a nil resp hangs up instead.
func serveOne(conn net.Conn, wantOp Op, kind FrameKind, resp any) <-chan error {
	done := make(chan error, 1)
	go func() {
		defer conn.Close()
		var req Request
		if err := ReadJSON(conn, FrameRequest, &req); err != nil {
			done <- err
			return
		}
		if req.Op != wantOp {
			done <- errors.New("unexpected op " + string(req.Op))
			return
		}
		if resp == nil {
			done <- nil
			return
		}
		done <- WriteJSON(conn, kind, resp)
	}()
	return done
}

func TestCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		kind     FrameKind
		resp     any // nil: hang up without answering
		wantKind ErrorKind
		wantErr  string // "" for success
	}{
		{"success", FrameResponse, Response{State: &PodState{ID: "x", Status: StatusRunning}}, "", ""},
		{"not found", FrameResponse, Response{Error: "no such container: c", Kind: ErrNotFound}, ErrNotFound, "no such container: c"},
		{"conflict", FrameResponse, Response{Error: "busy", Kind: ErrConflict}, ErrConflict, "busy"},
		{"error without kind", FrameResponse, Response{Error: "boom"}, "", "boom"},
		{"wrong frame", FrameExit, ExitStatus{Code: 1}, "", "state: receive: control protocol: got frame 6, want 2"},
		{"hang up", FrameResponse, nil, "", "state: receive: EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, server := net.Pipe()
			defer client.Close()
			done := serveOne(server, OpState, tt.kind, tt.resp)
			resp, err := Call(client, &Request{Op: OpState, Container: "c"})
			if serr := <-done; serr != nil {
				t.Fatalf("responder: %v", serr)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Call: %v", err)
				}
				if resp.State == nil || resp.State.ID != "x" || resp.State.Status != StatusRunning {
					t.Fatalf("Call response %+v", resp)
				}
				return
			}
			if err == nil {
				t.Fatalf("Call succeeded; want error %q", tt.wantErr)
			}
			if err.Error() != tt.wantErr {
				t.Fatalf("Call error %q; want %q", err, tt.wantErr)
			}
			var ce *CallError
			isCall := errors.As(err, &ce)
			wantCall := tt.kind == FrameResponse && tt.resp != nil
			if isCall != wantCall {
				t.Fatalf("error %T is a *CallError: %v, want %v", err, isCall, wantCall)
			}
			if isCall {
				if ce.Kind != tt.wantKind || ce.Message != tt.wantErr {
					t.Fatalf("CallError = %+v, want kind %q", ce, tt.wantKind)
				}
				if resp == nil || resp.Error != tt.wantErr {
					t.Fatalf("a failed call's response = %+v, want it returned too", resp)
				}
			}
		})
	}
}

func TestCallSendError(t *testing.T) {
	t.Parallel()
	client, server := net.Pipe()
	server.Close()
	_, err := Call(client, &Request{Op: OpHello})
	if err == nil || !strings.HasPrefix(err.Error(), "hello: send: ") {
		t.Fatalf("Call on a closed pipe = %v, want a send error", err)
	}
}

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	good := []struct {
		d    Duration
		json string
	}{
		{0, `"0s"`},
		{Duration(1500 * time.Millisecond), `"1.5s"`},
		{Duration(10 * time.Second), `"10s"`},
		{Duration(90 * time.Minute), `"1h30m0s"`},
		{Duration(-time.Second), `"-1s"`},
	}
	for _, tt := range good {
		b, err := json.Marshal(tt.d)
		if err != nil {
			t.Fatalf("Marshal(%v): %v", time.Duration(tt.d), err)
		}
		if string(b) != tt.json {
			t.Errorf("Marshal(%v) = %s, want %s", time.Duration(tt.d), b, tt.json)
		}
		var d Duration
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if d != tt.d {
			t.Errorf("Unmarshal(%s) = %v, want %v", b, time.Duration(d), time.Duration(tt.d))
		}
	}
	// Other spellings Go accepts.
	var d Duration
	if err := json.Unmarshal([]byte(`"250ms"`), &d); err != nil || d != Duration(250*time.Millisecond) {
		t.Errorf(`Unmarshal("250ms") = %v, %v`, time.Duration(d), err)
	}

	for _, in := range []string{`"abc"`, `""`, `"10"`, `10`, `true`, `{}`, `"1x"`} {
		d := Duration(42)
		err := json.Unmarshal([]byte(in), &d)
		if err == nil {
			t.Errorf("Unmarshal(%s) accepted: %v", in, time.Duration(d))
			continue
		}
		if !strings.Contains(err.Error(), "duration: ") {
			t.Errorf("Unmarshal(%s) error %q does not say duration", in, err)
		}
		if d != 42 {
			t.Errorf("Unmarshal(%s) changed the value to %v", in, time.Duration(d))
		}
	}
}

func TestRequestJSONRoundTrip(t *testing.T) {
	t.Parallel()
	in := Request{
		Op:        OpStop,
		Container: "app",
		Timeout:   Duration(3 * time.Second),
		Time:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Size:      &WindowSize{Rows: 40, Cols: 120},
		Process:   &Process{Args: []string{"ls"}},
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"timeout":"3s"`) {
		t.Fatalf("timeout not written as a duration string: %s", b)
	}
	var out Request
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if out.Op != in.Op || out.Container != in.Container || out.Timeout != in.Timeout ||
		!out.Time.Equal(in.Time) || *out.Size != *in.Size || out.Process.Args[0] != "ls" {
		t.Fatalf("round trip: %+v", out)
	}
	// No timeout: the field is left out.
	b, err = json.Marshal(Request{Op: OpHello})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "timeout") {
		t.Fatalf("zero timeout written: %s", b)
	}
}
