package tenancy

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"sigs.k8s.io/yaml"
)

// The files a tenant's credentials are written to.
const (
	CAFile      = "ca.pem"
	CertFile    = "cert.pem"
	KeyFile     = "key.pem"
	ContextFile = "docker.dockercontext"
	KubeFile    = "kubeconfig"
)

// Bundle is a tenant's credentials and where they are used.
type Bundle struct {
	Tenant                 string
	CAPEM, CertPEM, KeyPEM []byte
	DockerHost             string
	KubeServer             string
}

// ContextName is the name of the tenant's docker context and kubeconfig
// context.
func (b *Bundle) ContextName() string { return "hearth-" + b.Tenant }

// Write puts the bundle in dir: the PEM files (for DOCKER_CERT_PATH), a
// docker context that `docker context import` takes, and a kubeconfig.
// Files already there are refused, so that no key is overwritten.
func (b *Bundle) Write(dir string) error {
	files := map[string][]byte{CAFile: b.CAPEM, CertFile: b.CertPEM, KeyFile: b.KeyPEM}
	ctx, err := b.dockerContext()
	if err != nil {
		return err
	}
	files[ContextFile] = ctx
	if files[KubeFile], err = b.kubeconfig(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write credentials: %w", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("write credentials: %w", err)
		}
	}
	return nil
}

// CheckFree fails when dir holds any of the bundle's files.
func CheckFree(dir string) error {
	for _, name := range []string{CAFile, CertFile, KeyFile, ContextFile, KubeFile} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("%s already exists: choose an empty directory", filepath.Join(dir, name))
		}
	}
	return nil
}

// dockerContext is the archive `docker context export` writes: meta.json
// with the endpoint, and the TLS files under tls/docker/.
func (b *Bundle) dockerContext() ([]byte, error) {
	type endpoint struct {
		Host          string
		SkipTLSVerify bool
	}
	meta, err := json.Marshal(struct {
		Name      string
		Metadata  map[string]string
		Endpoints map[string]endpoint
	}{
		Name:      b.ContextName(),
		Metadata:  map[string]string{"Description": "Hearth tenant " + b.Tenant},
		Endpoints: map[string]endpoint{"docker": {Host: b.DockerHost}},
	})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	now := time.Now()
	for _, d := range []string{"tls/", "tls/docker/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o700, ModTime: now}); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"meta.json", meta}, {"tls/docker/ca.pem", b.CAPEM}, {"tls/docker/cert.pem", b.CertPEM}, {"tls/docker/key.pem", b.KeyPEM}} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o600, Size: int64(len(f.data)), ModTime: now}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// kubeconfig is a kubectl configuration with one cluster, user and
// context, the credentials inline.
func (b *Bundle) kubeconfig() ([]byte, error) {
	type named struct {
		Name    string         `json:"name"`
		Cluster map[string]any `json:"cluster,omitempty"`
		User    map[string]any `json:"user,omitempty"`
		Context map[string]any `json:"context,omitempty"`
	}
	cfg := map[string]any{
		"apiVersion": "v1",
		"kind":       "Config",
		"clusters": []named{{Name: "hearth", Cluster: map[string]any{
			"server": b.KubeServer, "certificate-authority-data": b.CAPEM}}},
		"users": []named{{Name: b.Tenant, User: map[string]any{
			"client-certificate-data": b.CertPEM, "client-key-data": b.KeyPEM}}},
		"contexts": []named{{Name: b.ContextName(), Context: map[string]any{
			"cluster": "hearth", "user": b.Tenant, "namespace": "default"}}},
		"current-context": b.ContextName(),
		"preferences":     map[string]any{},
	}
	return yaml.Marshal(cfg)
}
