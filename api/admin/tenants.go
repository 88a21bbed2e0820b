package admin

import (
	"net/http"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/pki"
	"github.com/hearth-cloud/hearth/tenancy"
)

// TenantRequest creates a tenant, or rotates its credentials: the public
// key (PEM) of the key its clients hold, which never leaves them, and for
// a creation its quotas.
type TenantRequest struct {
	Name      string           `json:"name,omitempty"`
	Quotas    model.TenantSpec `json:"quotas,omitempty"`
	PublicKey string           `json:"publicKey"`
}

// TenantCredentials answer a creation or rotation: the certificate, the
// CA's, and where the tenant's APIs are reached.
type TenantCredentials struct {
	tenancy.Credentials
	// DockerHost is the Docker API's address (tcp://HOST:PORT), and
	// KubeServer the Kubernetes API's (https://HOST:PORT).
	DockerHost string `json:"dockerHost"`
	KubeServer string `json:"kubeServer"`
}

// TenantInfo is a tenant with what it holds.
type TenantInfo struct {
	Tenant *model.Tenant `json:"tenant"`
	Usage  tenancy.Usage `json:"usage"`
}

func (s *Server) tenantRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/tenants", func(w http.ResponseWriter, r *http.Request) {
		ts, err := s.Tenants.List(r.Context())
		if err != nil {
			writeError(w, err)
			return
		}
		out := []TenantInfo{}
		for _, t := range ts {
			u, err := tenancy.UsageOf(r.Context(), s.Store, t.Name, "")
			if err != nil {
				writeError(w, err)
				return
			}
			out = append(out, TenantInfo{Tenant: t, Usage: u})
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/tenants/{name}", func(w http.ResponseWriter, r *http.Request) {
		t, err := s.Tenants.Get(r.Context(), r.PathValue("name"))
		if err != nil {
			writeError(w, err)
			return
		}
		u, err := tenancy.UsageOf(r.Context(), s.Store, t.Name, "")
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, TenantInfo{Tenant: t, Usage: u})
	})
	mux.HandleFunc("POST /v1/tenants", func(w http.ResponseWriter, r *http.Request) {
		s.issue(w, r, http.StatusCreated, func(req TenantRequest, pub any) (*tenancy.Credentials, error) {
			return s.Tenants.Create(r.Context(), req.Name, req.Quotas, pub)
		})
	})
	mux.HandleFunc("POST /v1/tenants/{name}/rotate", func(w http.ResponseWriter, r *http.Request) {
		s.issue(w, r, http.StatusOK, func(_ TenantRequest, pub any) (*tenancy.Credentials, error) {
			return s.Tenants.Rotate(r.Context(), r.PathValue("name"), pub)
		})
	})
	mux.HandleFunc("PUT /v1/tenants/{name}/quotas", func(w http.ResponseWriter, r *http.Request) {
		var q model.TenantSpec
		if !readJSON(w, r, &q) {
			return
		}
		t, err := s.Tenants.SetQuotas(r.Context(), r.PathValue("name"), q)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, t)
	})
	mux.HandleFunc("DELETE /v1/tenants/{name}", func(w http.ResponseWriter, r *http.Request) {
		removed, err := s.Tenants.Remove(r.Context(), r.PathValue("name"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, removed)
	})
}

// issue answers a creation or rotation: the request's public key goes to
// sign, and the credentials it makes back to the client.
func (s *Server) issue(w http.ResponseWriter, r *http.Request, code int, sign func(TenantRequest, any) (*tenancy.Credentials, error)) {
	var req TenantRequest
	if !readJSON(w, r, &req) {
		return
	}
	pub, err := parseKey(req.PublicKey)
	if err != nil {
		writeError(w, err)
		return
	}
	creds, err := sign(req, pub)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, code, TenantCredentials{Credentials: *creds, DockerHost: s.DockerHost, KubeServer: s.KubeServer})
}

func parseKey(s string) (any, error) {
	if s == "" {
		return nil, errdefs.InvalidArgument("a public key is required")
	}
	pub, err := pki.ParsePublicKey([]byte(s))
	if err != nil {
		return nil, errdefs.InvalidArgument("invalid public key: %v", err)
	}
	return pub, nil
}
