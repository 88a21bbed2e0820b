package testimage

import v1 "github.com/google/go-containerregistry/pkg/v1"

// echoSrc echoes TCP and UDP on port 7 (EXPOSE 7/tcp 7/udp), prefixing
// what it sends back with the pod's hostname. "/echo send HOST:PORT N"
// is its client: it streams N bytes through an echo and reads them back,
// and prints the MiB/s (for benchmarks inside a pod).
const echoSrc = `package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func send(addr string, n int64) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		panic(err)
	}
	began := time.Now()
	go func() {
		io.CopyN(c, zeros{}, n)
		c.(*net.TCPConn).CloseWrite()
	}()
	br := bufio.NewReader(c)
	if _, err := br.ReadString(' '); err != nil {
		panic(err)
	}
	got, err := io.Copy(io.Discard, br)
	if err != nil || got != n {
		panic(fmt.Sprintf("got %d of %d bytes back: %v", got, n, err))
	}
	fmt.Printf("%.1f\n", float64(n)/time.Since(began).Seconds()/(1<<20))
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == "send" {
		n, _ := strconv.ParseInt(os.Args[3], 10, 64)
		send(os.Args[2], n)
		return
	}
	host, _ := os.Hostname()
	ln, err := net.Listen("tcp", ":7")
	if err != nil {
		panic(err)
	}
	pc, err := net.ListenPacket("udp", ":7")
	if err != nil {
		panic(err)
	}
	go func() {
		b := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte(host+" "), b[:n]...), from)
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.WriteString(c, host+" ")
			io.Copy(c, c)
		}()
	}
}
`

// Echo is busybox with /echo as its command: a static Go server that
// echoes TCP and UDP on port 7 (EXPOSE 7/tcp 7/udp), for published ports
// and networks.
func Echo() (v1.Image, error) {
	bin, err := GoBinary(echoSrc)
	if err != nil {
		return nil, err
	}
	el, err := Layer([]File{{Path: "/echo", Mode: 0o755, Data: bin}})
	if err != nil {
		return nil, err
	}
	files, err := BusyboxFiles()
	if err != nil {
		return nil, err
	}
	base, err := Layer(files)
	if err != nil {
		return nil, err
	}
	cfg := BusyboxConfig
	cfg.Cmd = []string{"/echo"}
	cfg.ExposedPorts = map[string]struct{}{"7/tcp": {}, "7/udp": {}}
	return Image(cfg, base, el)
}
