package volume

import (
	"os"
	"syscall"
)

// allocated is the space a file takes on disk, which for a sparse disk
// image is far less than its size.
func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
