//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// registry is a real CNCF distribution registry (Debian's docker-registry)
// on loopback, started for one test.
type registry struct {
	Host    string // 127.0.0.1:port
	dataDir string
}

type registryAuth int

const (
	noAuth registryAuth = iota
	basicAuth
	tokenAuth
)

// The users the auth registries know.
const (
	regUser = "alice"
	regPass = "wonderland"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startRegistry(t *testing.T, auth registryAuth) *registry {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	r := &registry{Host: fmt.Sprintf("127.0.0.1:%d", port), dataDir: filepath.Join(dir, "data")}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, r.dataDir, r.Host)
	switch auth {
	case basicAuth:
		hash, err := bcrypt.GenerateFromPassword([]byte(regPass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		os.WriteFile(htpasswd, []byte(regUser+":"+string(hash)+"\n"), 0o644)
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: hearth-test\n    path: %s\n", htpasswd)
	case tokenAuth:
		realm, certFile := startTokenServer(t, dir)
		cfg += fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: hearth-test-registry\n    issuer: hearth-test-issuer\n    rootcertbundle: %s\n", realm, certFile)
	}
	cfgFile := filepath.Join(dir, "config.yml")
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	cmd := exec.Command("docker-registry", "serve", cfgFile)
	logf, _ := os.Create(filepath.Join(dir, "registry.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start docker-registry (apt-get install docker-registry): %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
	eventually(t, 30*time.Second, "the registry to listen", func() bool {
		resp, err := http.Get("http://" + r.Host + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return r
}

// startTokenServer serves the bearer-token flow Docker Hub and GHCR use:
// the registry sends clients to /token, which checks their basic
// credentials and signs a JWT granting what they asked for.
func startTokenServer(t *testing.T, dir string) (realm, certFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hearth-test-issuer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, "token.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)

	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	sign := func(claims map[string]any) string {
		h, _ := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(der)}})
		c, _ := json.Marshal(claims)
		input := b64(h) + "." + b64(c)
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
		if err != nil {
			t.Error(err)
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return input + "." + b64(sig)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if ok && (user != regUser || pass != regPass) {
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
			return
		}
		var access []map[string]any
		if ok {
			for _, scope := range r.URL.Query()["scope"] {
				parts := strings.Split(scope, ":")
				if len(parts) == 3 && parts[0] == "repository" {
					access = append(access, map[string]any{"type": "repository", "name": parts[1], "actions": strings.Split(parts[2], ",")})
				}
			}
		}
		now := time.Now()
		tok := sign(map[string]any{
			"iss": "hearth-test-issuer", "sub": user, "aud": r.URL.Query().Get("service"),
			"exp": now.Add(5 * time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
			"jti": fmt.Sprint(now.UnixNano()), "access": access,
		})
		json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 300})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	// A host name, not an IP: clients refuse token realms at private IP
	// literals.
	return fmt.Sprintf("http://localhost:%d/token", ln.Addr().(*net.TCPAddr).Port), certFile
}

// imageHearth runs hearth with a data dir of the test's own, so image
// stores of parallel tests do not meet.
type imageEnv struct {
	data, run string
	env       []string
}

func newImageEnv(t *testing.T) *imageEnv {
	dir, err := os.MkdirTemp("/tmp", "hie")
	if err != nil {
		t.Fatal(err)
	}
	e := &imageEnv{data: filepath.Join(dir, "d"), run: filepath.Join(dir, "r"), env: []string{"DOCKER_CONFIG=" + filepath.Join(dir, "docker")}}
	t.Cleanup(func() {
		out, _ := exec.Command(hearthB, "--data-dir", e.data, "--run-dir", e.run, "cradle", "ls", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			exec.Command(hearthB, "--data-dir", e.data, "--run-dir", e.run, "cradle", "rm", "-f", id).Run()
		}
		os.RemoveAll(dir)
	})
	return e
}

func (e *imageEnv) run_(t *testing.T, o cmdOpts, args ...string) result {
	t.Helper()
	o.env = append(append([]string{}, e.env...), o.env...)
	return hearthWith(t, o, append([]string{"--data-dir", e.data, "--run-dir", e.run}, args...)...)
}

func (e *imageEnv) hearth(t *testing.T, args ...string) result {
	t.Helper()
	return e.run_(t, cmdOpts{}, args...)
}

func (e *imageEnv) must(t *testing.T, args ...string) string {
	t.Helper()
	r := e.hearth(t, args...)
	if r.code != 0 {
		t.Fatalf("hearth %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}
