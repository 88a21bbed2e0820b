// Command mkimage writes the busybox test image as a docker-archive
// tarball, for `make run` and for trying `hearth cradle run` by hand.
package main

import (
	"fmt"
	"os"

	"github.com/hearth-cloud/hearth/internal/testimage"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkimage OUT.tar")
		os.Exit(2)
	}
	img, err := testimage.Busybox()
	if err == nil {
		err = testimage.WriteDockerArchive(os.Args[1], "hearth.local/busybox:latest", img)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}
