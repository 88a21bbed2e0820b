package testimage

import v1 "github.com/google/go-containerregistry/pkg/v1"

// AppSrc is a three-tier test app in one static program, for compose:
//
//	app kv          a key-value store on :8080 that keeps each key in a
//	                file under /data (fsynced), with /health
//	app api         on :8080, reads and writes keys through http://kv:8080
//	app web         on :80, serves /k/NAME through http://api:8080
//	app check URL   exits 0 when URL answers 200 (healthchecks)
//
// Every answer names the hosts it went through, so a test can see which
// replica served it.
const AppSrc = `package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// client opens a connection per request, so that each request resolves
// the next tier's name afresh and replicas share the load.
var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func host() string { h, _ := os.Hostname(); return h }

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// relay passes a request on to next and prefixes the answer with who.
func relay(next, who string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest(r.Method, next+r.URL.Path, r.Body)
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, who+": "+err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		w.WriteHeader(resp.StatusCode)
		fmt.Fprintf(w, "%s %s", who, b)
	}
}

func kv() {
	dir := env("DATA", "/data")
	http.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(dir); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	http.HandleFunc("/k/", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/k/")
		if name == "" || strings.ContainsAny(name, "/.") {
			http.Error(w, "bad key", http.StatusBadRequest)
			return
		}
		p := filepath.Join(dir, name)
		switch r.Method {
		case http.MethodPut:
			b, _ := io.ReadAll(r.Body)
			f, err := os.Create(p)
			if err == nil {
				_, err = f.Write(b)
				if serr := f.Sync(); err == nil {
					err = serr
				}
				f.Close()
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, "kv=%s stored", host())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				http.Error(w, "kv="+host()+" missing", http.StatusNotFound)
				return
			}
			fmt.Fprintf(w, "kv=%s value=%s", host(), b)
		}
	})
	serve(":8080")
}

func serve(addr string) {
	fmt.Println("listening on", addr)
	if err := http.ListenAndServe(addr, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: app kv|api|web|check URL")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "kv":
		kv()
	case "api":
		http.HandleFunc("/k/", relay(env("KV", "http://kv:8080"), "api="+host()))
		serve(":8080")
	case "web":
		http.HandleFunc("/k/", relay(env("API", "http://api:8080"), "web="+host()))
		serve(":80")
	case "check":
		resp, err := client.Get(os.Args[2])
		if err != nil || resp.StatusCode != 200 {
			os.Exit(1)
		}
	default:
		os.Exit(2)
	}
}
`

// App is busybox with /app, AppSrc built.
func App() (v1.Image, error) {
	bin, err := GoBinary(AppSrc)
	if err != nil {
		return nil, err
	}
	al, err := Layer([]File{{Path: "/app", Mode: 0o755, Data: bin}, {Path: "/data", Dir: true, Mode: 0o755}})
	if err != nil {
		return nil, err
	}
	return Busybox(al)
}
