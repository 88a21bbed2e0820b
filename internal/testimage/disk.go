package testimage

import v1 "github.com/google/go-containerregistry/pkg/v1"

// DiskSrc is a static disk benchmark: sequential write (with the fsync
// that makes it durable) and read of a file in 1 MiB blocks, then 4 KiB
// random reads and writes for a while, all with O_DIRECT so that neither
// side's page cache answers for the disk. Usage: disk DIR MIB SECONDS.
// It prints one line of key=value figures.
const DiskSrc = `package main

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

func fail(err error) {
	fmt.Fprintln(os.Stderr, "disk:", err)
	os.Exit(1)
}

// aligned is a page-aligned buffer, as O_DIRECT needs.
func aligned(n int) []byte {
	b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		fail(err)
	}
	return b
}

func main() {
	if len(os.Args) != 4 {
		fail(fmt.Errorf("usage: disk DIR MIB SECONDS"))
	}
	mib, _ := strconv.Atoi(os.Args[2])
	secs, _ := strconv.Atoi(os.Args[3])
	path := filepath.Join(os.Args[1], "disk-bench.dat")
	defer os.Remove(path)
	big := aligned(1 << 20)
	for i := range big {
		big[i] = byte(i * 7)
	}

	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|syscall.O_DIRECT, 0o644)
	if err != nil {
		fail(err)
	}
	began := time.Now()
	for i := 0; i < mib; i++ {
		if _, err := f.Write(big); err != nil {
			fail(err)
		}
	}
	if err := f.Sync(); err != nil {
		fail(err)
	}
	seqWrite := float64(mib) / time.Since(began).Seconds()
	f.Close()

	f, err = os.OpenFile(path, os.O_RDWR|syscall.O_DIRECT, 0)
	if err != nil {
		fail(err)
	}
	began = time.Now()
	for i := 0; i < mib; i++ {
		if _, err := f.ReadAt(big, int64(i)<<20); err != nil {
			fail(err)
		}
	}
	seqRead := float64(mib) / time.Since(began).Seconds()

	small := aligned(4096)
	blocks := int64(mib) << 8
	rng := rand.New(rand.NewSource(1))
	iops := func(write bool) float64 {
		n := 0
		began := time.Now()
		for time.Since(began) < time.Duration(secs)*time.Second {
			off := rng.Int63n(blocks) << 12
			var err error
			if write {
				_, err = f.WriteAt(small, off)
			} else {
				_, err = f.ReadAt(small, off)
			}
			if err != nil {
				fail(err)
			}
			n++
		}
		if write {
			if err := f.Sync(); err != nil {
				fail(err)
			}
		}
		return float64(n) / time.Since(began).Seconds()
	}
	randRead := iops(false)
	randWrite := iops(true)
	fmt.Printf("seqwrite=%.1f seqread=%.1f randread=%.0f randwrite=%.0f\n", seqWrite, seqRead, randRead, randWrite)
}
`

// Disk is busybox with /disk, DiskSrc built.
func Disk() (v1.Image, error) {
	bin, err := GoBinary(DiskSrc)
	if err != nil {
		return nil, err
	}
	dl, err := Layer([]File{{Path: "/disk", Mode: 0o755, Data: bin}})
	if err != nil {
		return nil, err
	}
	return Busybox(dl)
}
