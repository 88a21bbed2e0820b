// Command hearth-init is PID 1 inside every cradle microVM (see
// cradle/guest). It is built static and without cgo, and packed into the
// initramfs together with hearth-stub.
package main

import (
	"os"

	"github.com/hearth-cloud/hearth/cradle/guest"
)

func main() {
	if os.Getpid() != 1 {
		os.Stderr.WriteString("hearth-init: runs as PID 1 of a cradle VM only\n")
		os.Exit(2)
	}
	guest.Main()
}
