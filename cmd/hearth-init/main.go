// Command hearth-init is PID 1 inside every cradle microVM (see
// cradle/guest). It is built static and without cgo, and packed into the
// initramfs together with hearth-stub. Bound into a container as
// /sbin/docker-init, it is that container's init (docker run --init).
package main

import (
	"os"
	"path/filepath"

	"github.com/hearth-cloud/hearth/cradle/guest"
)

func main() {
	if filepath.Base(os.Args[0]) == "docker-init" {
		os.Exit(guest.DockerInit(os.Args[1:]))
	}
	if os.Getpid() != 1 {
		os.Stderr.WriteString("hearth-init: runs as PID 1 of a cradle VM only\n")
		os.Exit(2)
	}
	guest.Main()
}
