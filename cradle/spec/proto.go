package spec

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// ProtocolVersion is the version of the control protocol (docs/cradle-protocol.md).
// The host sends it in OpHello; a guest that speaks another version refuses.
const ProtocolVersion = 2

// The control protocol carries one call per stream. The guest side is a
// yamux session over a virtio-serial port (vsock where the host has it); the
// supervisor side is one unix-socket connection per call. Either way a
// stream is a sequence of frames:
//
//	kind    uint8
//	length  uint32, big-endian
//	payload [length]byte
//
// The caller sends FrameRequest, the callee answers FrameResponse, and
// streaming calls (start, attach, exec, logs) go on with data frames until
// FrameExit.

// FrameKind tags a frame.
type FrameKind uint8

const (
	FrameRequest  FrameKind = 1 // JSON Request
	FrameResponse FrameKind = 2 // JSON Response
	FrameStdin    FrameKind = 3 // caller → callee; an empty payload closes stdin
	FrameStdout   FrameKind = 4
	FrameStderr   FrameKind = 5
	FrameExit     FrameKind = 6 // JSON ExitStatus; the last frame of a process stream
	FrameResize   FrameKind = 7 // JSON WindowSize
	FrameSignal   FrameKind = 8 // JSON Signal
)

// MaxFrame bounds a frame's payload, so a broken peer cannot make the other
// side allocate without limit.
const MaxFrame = 16 << 20

// Op names a call.
type Op string

// Calls the guest init serves (the supervisor is its only client).
const (
	OpHello    Op = "hello"    // version check; answers GuestInfo
	OpSetup    Op = "setup"    // Launch: network, disks, volumes, clock
	OpStart    Op = "start"    // start Container; streams its stdio until FrameExit
	OpExec     Op = "exec"     // run Process in Container; streams until FrameExit
	OpSignal   Op = "signal"   // send Signal to Container's PID 1
	OpShutdown Op = "shutdown" // stop every container within Timeout, sync, power off
	// OpArchiveGet streams a tar of Path in Container (FrameStdout), then
	// FrameExit; the response carries Stat of Path.
	OpArchiveGet Op = "archive-get"
	// OpArchivePut extracts the tar the caller streams (FrameStdin, an
	// empty frame ends it) into directory Path of Container; FrameExit
	// reports the outcome.
	OpArchivePut Op = "archive-put"
	OpPathStat   Op = "path-stat" // answers Stat of Path in Container
	OpStats      Op = "stats"     // answers Stats of the pod's containers
	OpTop        Op = "top"       // answers the ProcessList of Container
)

// Calls the per-pod supervisor (shim) serves to the CLI and the node agent.
const (
	OpState  Op = "state"  // answers PodState
	OpAttach Op = "attach" // live stdio of Container, stdin if Stdin; FrameExit at the end
	OpLogs   Op = "logs"   // recorded output of Container; Follow keeps it open
	OpWait   Op = "wait"   // answers PodState once the pod has exited
	OpStop   Op = "stop"   // graceful stop: StopSignal, SIGKILL after Timeout
	// OpPause freezes the pod's VM (its QEMU process stops); OpResume
	// thaws it. Calls that need the guest are refused while it is paused.
	OpPause  Op = "pause"
	OpResume Op = "resume"
	// OpStartPod starts every container of a pod created with autostart off.
	OpStartPod Op = "start-pod"
	// OpPlug puts a spare NIC on Interface's bridge and configures it in
	// the guest with Interface's name and address (and DNS, when given,
	// for the containers' resolv.conf); it answers the PodState. OpUnplug
	// takes the NIC named Interface.Name off again. Either, given DNS,
	// points the containers' resolv.conf at it.
	OpPlug   Op = "plug"
	OpUnplug Op = "unplug"
	// OpExec and OpSignal are forwarded to the guest.
)

// Request opens a call.
type Request struct {
	Op        Op       `json:"op"`
	Version   int      `json:"version,omitempty"`
	Container string   `json:"container,omitempty"`
	Process   *Process `json:"process,omitempty"`
	Launch    *Launch  `json:"launch,omitempty"`
	// Time is the host's clock, to set the guest's (setup).
	Time time.Time `json:"time,omitempty"`
	// Signal to deliver (signal).
	Signal int `json:"signal,omitempty"`
	// Timeout before SIGKILL (stop, shutdown).
	Timeout Duration `json:"timeout,omitempty"`
	// Stdin asks an attach to forward FrameStdin to the process.
	Stdin bool `json:"stdin,omitempty"`
	// Owner marks the attach of a foreground `cradle run`: when it goes away
	// before the pod has exited, the pod is stopped and removed.
	Owner bool `json:"owner,omitempty"`
	// Start asks an attach to start the pod once the client is attached
	// (a foreground run: one call instead of two).
	Start bool `json:"start,omitempty"`
	// Follow keeps a logs call open for new output.
	Follow bool `json:"follow,omitempty"`
	// Size is the initial terminal size of an exec.
	Size *WindowSize `json:"size,omitempty"`
	// Path in the container (archive and stat calls).
	Path string `json:"path,omitempty"`
	// Log selects and shapes the output a logs call sends; nil sends it
	// all, as it was written.
	Log *LogOptions `json:"log,omitempty"`
	// Interface to plug or unplug, and DNS for a plug; MAC is the NIC
	// to plug as it is now (it takes Interface.MAC).
	Interface *Interface `json:"interface,omitempty"`
	MAC       string     `json:"mac,omitempty"`
	DNS       []string   `json:"dns,omitempty"`
}

// LogOptions are docker logs' choices.
type LogOptions struct {
	// Since and Until bound the entries' times; zero is no bound.
	Since time.Time `json:"since,omitempty"`
	Until time.Time `json:"until,omitempty"`
	// Tail sends only the last Tail lines of the output recorded so far;
	// negative sends all of it.
	Tail int `json:"tail"`
	// Timestamps starts each line with the time it was written
	// (RFC 3339, nanoseconds, UTC) and a space.
	Timestamps bool `json:"timestamps,omitempty"`
}

// Response answers a Request. Error is empty on success.
type Response struct {
	Error string `json:"error,omitempty"`
	// Kind classifies Error so clients can map it without matching text.
	Kind  ErrorKind    `json:"kind,omitempty"`
	Info  *GuestInfo   `json:"info,omitempty"`
	State *PodState    `json:"state,omitempty"`
	Stat  *PathStat    `json:"stat,omitempty"`
	Stats *Stats       `json:"stats,omitempty"`
	Top   *ProcessList `json:"top,omitempty"`
	// Exit answers a start whose command could not run (126, 127): the
	// container has exited, and no stream follows.
	Exit *ExitStatus `json:"exit,omitempty"`
}

// PathStat describes a path in a container, as Docker's archive API does.
type PathStat struct {
	Name       string    `json:"name"`
	Size       int64     `json:"size"`
	Mode       uint32    `json:"mode"` // Go's os.FileMode bits
	Mtime      time.Time `json:"mtime"`
	LinkTarget string    `json:"linkTarget"`
}

// ProcessList is a container's processes as `ps -ef` shows them, the
// shape docker top answers.
type ProcessList struct {
	Titles    []string   `json:"titles"`
	Processes [][]string `json:"processes"`
}

// Stats is the pod's resource use at Read.
type Stats struct {
	Read       time.Time        `json:"read"`
	CPUs       int              `json:"cpus"`
	Memory     int64            `json:"memoryBytes"` // the VM's RAM
	Containers []ContainerStats `json:"containers"`
	Network    NetworkStats     `json:"network"`
}

// ContainerStats is one container's share.
type ContainerStats struct {
	Name        string `json:"name"`
	CPUNanos    uint64 `json:"cpuNanos"`
	MemoryBytes int64  `json:"memoryBytes"`
	MemoryLimit int64  `json:"memoryLimit"`
	Pids        int64  `json:"pids"`
}

// NetworkStats sums the pod's NICs.
type NetworkStats struct {
	RxBytes   uint64 `json:"rxBytes"`
	TxBytes   uint64 `json:"txBytes"`
	RxPackets uint64 `json:"rxPackets"`
	TxPackets uint64 `json:"txPackets"`
}

// ErrorKind classifies a failed call.
type ErrorKind string

const (
	ErrNotFound      ErrorKind = "not-found"
	ErrInvalid       ErrorKind = "invalid"
	ErrConflict      ErrorKind = "conflict"
	ErrUnavailable   ErrorKind = "unavailable"
	ErrNotExecutable ErrorKind = "not-executable"
	ErrInternal      ErrorKind = "internal"
)

// GuestInfo describes the guest init.
type GuestInfo struct {
	Protocol      int    `json:"protocol"`
	KernelRelease string `json:"kernelRelease"`
}

// WindowSize is a terminal size.
type WindowSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Signal is a signal number for FrameSignal.
type Signal struct {
	Signal int `json:"signal"`
}

// ExitStatus ends a process stream.
type ExitStatus struct {
	// Code is the exit code; 128+n for a process killed by signal n; 127
	// when the command was not found and 126 when it could not be run.
	Code int `json:"code"`
	// Signal that killed the process, if any.
	Signal int `json:"signal,omitempty"`
	// Error says why the process never ran.
	Error string `json:"error,omitempty"`
	// OOMKilled is set when the VM ran out of memory and killed it.
	OOMKilled  bool      `json:"oomKilled,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
}

// Pod statuses.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
	// StatusDead is reported by readers for a pod whose supervisor is gone
	// without recording an exit.
	StatusDead = "dead"
)

// PodState is the supervisor's view of a pod; it is also state.json.
type PodState struct {
	ID         string           `json:"id"`
	Name       string           `json:"name,omitempty"`
	Status     string           `json:"status"`
	Error      string           `json:"error,omitempty"`
	ShimPID    int              `json:"shimPid,omitempty"`
	VMPID      int              `json:"vmPid,omitempty"`
	Paused     bool             `json:"paused,omitempty"`
	Accel      string           `json:"accel,omitempty"`
	IP         string           `json:"ip,omitempty"`
	Kernel     string           `json:"kernel,omitempty"`
	CreatedAt  time.Time        `json:"createdAt"`
	StartedAt  time.Time        `json:"startedAt,omitempty"`
	FinishedAt time.Time        `json:"finishedAt,omitempty"`
	Containers []ContainerState `json:"containers"`
	// Interfaces are the pod's NICs on networks now: those it booted
	// with and those plugged since.
	Interfaces []Interface `json:"interfaces,omitempty"`
}

// ContainerState is one container's part of PodState.
type ContainerState struct {
	Name      string      `json:"name"`
	Status    string      `json:"status"`
	Pid       int         `json:"pid,omitempty"`
	StartedAt time.Time   `json:"startedAt,omitempty"`
	Exit      *ExitStatus `json:"exit,omitempty"`
}

// Duration is a time.Duration that reads and writes as a Go duration string.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// ErrFrameTooLarge is returned for a frame longer than MaxFrame.
var ErrFrameTooLarge = errors.New("control frame too large")

// WriteFrame writes one frame. Callers that share a writer serialise calls.
func WriteFrame(w io.Writer, kind FrameKind, payload []byte) error {
	if len(payload) > MaxFrame {
		return ErrFrameTooLarge
	}
	var hdr [5]byte
	hdr[0] = byte(kind)
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	// One write per frame keeps frames whole on stream transports.
	buf := make([]byte, 0, len(hdr)+len(payload))
	buf = append(append(buf, hdr[:]...), payload...)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame.
func ReadFrame(r io.Reader) (FrameKind, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, ErrFrameTooLarge
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return FrameKind(hdr[0]), p, nil
}

// WriteJSON writes v as a frame of the given kind.
func WriteJSON(w io.Writer, kind FrameKind, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return WriteFrame(w, kind, b)
}

// ReadJSON reads a frame that must be of the given kind into v.
func ReadJSON(r io.Reader, kind FrameKind, v any) error {
	k, p, err := ReadFrame(r)
	if err != nil {
		return err
	}
	if k != kind {
		return fmt.Errorf("control protocol: got frame %d, want %d", k, kind)
	}
	if err := json.Unmarshal(p, v); err != nil {
		return fmt.Errorf("control protocol: frame %d: %w", k, err)
	}
	return nil
}

// CallError is a failed call's Response as an error.
type CallError struct {
	Kind    ErrorKind
	Message string
}

func (e *CallError) Error() string { return e.Message }

// Call writes req and reads the Response. A Response with an Error comes back
// as a *CallError.
func Call(rw io.ReadWriter, req *Request) (*Response, error) {
	if err := WriteJSON(rw, FrameRequest, req); err != nil {
		return nil, fmt.Errorf("%s: send: %w", req.Op, err)
	}
	var resp Response
	if err := ReadJSON(rw, FrameResponse, &resp); err != nil {
		return nil, fmt.Errorf("%s: receive: %w", req.Op, err)
	}
	if resp.Error != "" {
		return &resp, &CallError{Kind: resp.Kind, Message: resp.Error}
	}
	return &resp, nil
}
