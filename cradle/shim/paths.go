package shim

import (
	"fmt"
	"path/filepath"

	"github.com/hearth-cloud/hearth/cradle/spec"
)

// Paths lays out one pod's files. The pod directory (under the data dir)
// holds what must survive: the launch spec, the state, the logs. Sockets
// live under the run dir, where paths are short enough for unix sockets.
type Paths struct {
	Dir    string // the pod directory
	RunDir string // where the pod's sockets go
	ID     string
}

// NewPaths returns the layout of pod id under dataDir/cradle/pods and
// runDir/cradle.
func NewPaths(dataDir, runDir, id string) Paths {
	return Paths{
		Dir:    filepath.Join(dataDir, "cradle", "pods", id),
		RunDir: filepath.Join(runDir, "cradle"),
		ID:     id,
	}
}

func (p Paths) Spec() string    { return filepath.Join(p.Dir, "spec.json") }
func (p Paths) State() string   { return filepath.Join(p.Dir, "state.json") }
func (p Paths) Console() string { return filepath.Join(p.Dir, "console.log") }
func (p Paths) ShimLog() string { return filepath.Join(p.Dir, "shim.log") }
func (p Paths) QEMULog() string { return filepath.Join(p.Dir, "qemu.log") }
func (p Paths) LogDir() string  { return filepath.Join(p.Dir, "logs") }

// Log is the output file of one container.
func (p Paths) Log(container string) string {
	return filepath.Join(p.LogDir(), container+".log")
}

// LaunchLog is the output file of one container of launch l, which may
// keep its logs elsewhere.
func (p Paths) LaunchLog(l *spec.Launch, container string) string {
	if l.LogDir != "" {
		return filepath.Join(l.LogDir, container+".log")
	}
	return p.Log(container)
}

// Socket is where the supervisor serves its API.
func (p Paths) Socket() string { return filepath.Join(p.RunDir, p.ID[:16]+".sock") }

// Control is where QEMU connects the guest's control port.
func (p Paths) Control() string { return filepath.Join(p.RunDir, p.ID[:16]+".ctl") }

// maxSocketPath is the room in sockaddr_un for a path.
const maxSocketPath = 107

// CheckSockets reports a run dir too deep for unix sockets.
func (p Paths) CheckSockets() error {
	if n := len(p.Control()); n > maxSocketPath {
		return fmt.Errorf("run dir %s is too long for unix sockets (%d > %d bytes): choose a shorter --run-dir", p.RunDir, n, maxSocketPath)
	}
	return nil
}
