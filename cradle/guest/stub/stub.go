// Package stub is the first process of every container: PID 1 of the
// container's new PID namespace for the few system calls before it execs
// the container's command. It mounts /proc (only a process inside the PID
// namespace can mount the right one), pivots into the rootfs, takes on the
// container's user and working directory, and execs.
//
// It is a program of its own (cmd/hearth-stub) and imports nothing but
// syscall: under TCG every instruction a VM runs for the first time is
// translated, so a Go program's start costs what its runtime and package
// initialisers run. Init does all lookups (user, command path) beforehand
// and hands the stub plain values.
package stub

import (
	"errors"
	"runtime"
	"syscall"
	"unsafe"
)

// Descriptors the stub is started with, after stdin, stdout and stderr.
const (
	ConfigFd = 3 // Config, encoded by Encode; read to EOF
	StatusFd = 4 // on failure the stub writes "CODE MESSAGE"; close-on-exec
)

// Config is everything the stub needs, resolved by init.
type Config struct {
	// Rootfs is the container's root as seen before the pivot.
	Rootfs string
	// Cwd, inside the container, exists already.
	Cwd string
	// Path is the command's absolute path inside the container.
	Path   string
	Args   []string
	Env    []string
	UID    uint32
	GID    uint32
	Groups []uint32
}

// Encode serialises c: NUL-terminated fields, lists prefixed by their
// length. Strings must hold no NUL (spec.Process.Validate sees to it).
func Encode(c *Config) []byte {
	var b []byte
	str := func(s string) { b = append(append(b, s...), 0) }
	num := func(n uint32) { str(itoa(n)) }
	list := func(l []string) {
		num(uint32(len(l)))
		for _, s := range l {
			str(s)
		}
	}
	str(c.Rootfs)
	str(c.Cwd)
	str(c.Path)
	list(c.Args)
	list(c.Env)
	num(c.UID)
	num(c.GID)
	num(uint32(len(c.Groups)))
	for _, g := range c.Groups {
		num(g)
	}
	return b
}

var errCorrupt = errors.New("corrupt stub config")

// Decode is Encode's inverse.
func Decode(b []byte) (*Config, error) {
	var err error
	next := func() string {
		for i, c := range b {
			if c == 0 {
				s := string(b[:i])
				b = b[i+1:]
				return s
			}
		}
		err = errCorrupt
		return ""
	}
	num := func() uint32 {
		n, ok := atoi(next())
		if !ok {
			err = errCorrupt
		}
		return n
	}
	list := func() []string {
		n := num()
		if n > 1<<16 {
			err = errCorrupt
			return nil
		}
		out := make([]string, 0, n)
		for i := uint32(0); i < n && err == nil; i++ {
			out = append(out, next())
		}
		return out
	}
	c := &Config{}
	c.Rootfs = next()
	c.Cwd = next()
	c.Path = next()
	c.Args = list()
	c.Env = list()
	c.UID = num()
	c.GID = num()
	n := num()
	if n > 1<<16 {
		return nil, errCorrupt
	}
	for i := uint32(0); i < n && err == nil; i++ {
		c.Groups = append(c.Groups, num())
	}
	if err != nil {
		return nil, err
	}
	if len(b) != 0 {
		return nil, errCorrupt
	}
	return c, nil
}

func itoa(n uint32) string {
	if n == 0 {
		return "0"
	}
	var buf [10]byte
	i := len(buf)
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return string(buf[i:])
}

func atoi(s string) (uint32, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	var n uint64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > 1<<32-1 {
		return 0, false
	}
	return uint32(n), true
}

// Main is the stub's program. It never returns.
func Main() {
	// Credentials are set on this thread and exec runs from it.
	runtime.LockOSThread()
	syscall.CloseOnExec(StatusFd)
	c, err := readConfig()
	if err != nil {
		fail(126, "read container config: "+err.Error())
	}
	if err := syscall.Mount("proc", c.Rootfs+"/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		fail(126, "mount /proc: "+err.Error())
	}
	// pivot_root(".", ".") stacks the old root under the new one; detach
	// it, and nothing of the VM is left in view.
	if err := syscall.Chdir(c.Rootfs); err != nil {
		fail(126, "chdir to rootfs: "+err.Error())
	}
	if err := syscall.PivotRoot(".", "."); err != nil {
		fail(126, "pivot_root: "+err.Error())
	}
	if err := syscall.Unmount(".", syscall.MNT_DETACH); err != nil {
		fail(126, "detach old root: "+err.Error())
	}
	if err := syscall.Chdir(c.Cwd); err != nil {
		fail(126, "chdir to cwd ("+c.Cwd+") set in config.json failed: "+err.Error())
	}
	// Credentials are per thread in Linux, and execve keeps the calling
	// thread's: set them raw on this thread and exec from it, rather than
	// through the runtime's all-threads calls.
	groups := make([]uint32, len(c.Groups))
	copy(groups, c.Groups)
	var gp uintptr
	if len(groups) > 0 {
		gp = uintptr(unsafe.Pointer(&groups[0]))
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(groups)), gp, 0); e != 0 {
		fail(126, "setgroups: "+e.Error())
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESGID, uintptr(c.GID), uintptr(c.GID), uintptr(c.GID)); e != 0 {
		fail(126, "setgid: "+e.Error())
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, uintptr(c.UID), uintptr(c.UID), uintptr(c.UID)); e != 0 {
		fail(126, "setuid: "+e.Error())
	}
	err = syscall.Exec(c.Path, c.Args, c.Env)
	code := 126
	if err == syscall.ENOENT {
		code = 127
	}
	fail(code, "exec: \""+c.Args[0]+"\": "+err.Error())
}

func readConfig() (*Config, error) {
	var b []byte
	buf := make([]byte, 4096)
	for {
		n, err := syscall.Read(ConfigFd, buf)
		if n > 0 {
			b = append(b, buf[:n]...)
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
		if len(b) > 16<<20 {
			return nil, errCorrupt
		}
	}
	syscall.Close(ConfigFd)
	c, err := Decode(b)
	if err != nil {
		return nil, err
	}
	if len(c.Args) == 0 {
		return nil, errCorrupt
	}
	return c, nil
}

// fail reports why the container's process never ran, on the status pipe
// for init and on stderr for the user, and exits.
func fail(code int, msg string) {
	syscall.Write(StatusFd, []byte(itoa(uint32(code))+" "+msg))
	syscall.Write(2, []byte("hearth: "+msg+"\n"))
	syscall.Exit(code)
}
