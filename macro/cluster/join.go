package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/internal/errhttp"
	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/pki"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Token lets a node join: it carries the hash of the cluster's CA (so the
// joiner can trust the node it contacts without a CA file) and the
// cluster's join secret.
type Token struct {
	CAHash string
	Secret string
}

const tokenPrefix = "hearth1"

func (t Token) String() string { return tokenPrefix + "." + t.CAHash + "." + t.Secret }

// ParseToken reads a token.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 || parts[0] != tokenPrefix || len(parts[1]) != 64 || len(parts[2]) != 32 {
		return Token{}, errdefs.InvalidArgument("invalid join token: want the output of `hearth join-token`")
	}
	return Token{CAHash: parts[1], Secret: parts[2]}, nil
}

// joinSecretKey holds the cluster's join secret.
const joinSecretKey = store.Prefix + "cluster/join-secret"

// JoinSecret returns the cluster's join secret, creating it once.
func JoinSecret(ctx context.Context, cli *clientv3.Client) (string, error) {
	b := make([]byte, 16)
	rand.Read(b)
	secret := hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(joinSecretKey), "=", 0)).
		Then(clientv3.OpPut(joinSecretKey, secret)).
		Else(clientv3.OpGet(joinSecretKey)).
		Commit()
	if err != nil {
		return "", errdefs.Unavailable("join secret: %v", err)
	}
	if resp.Succeeded {
		return secret, nil
	}
	return string(resp.Responses[0].GetResponseRange().Kvs[0].Value), nil
}

// JoinRequest is what a joining node sends.
type JoinRequest struct {
	Token string `json:"token"`
	Name  string `json:"name"`
	Role  string `json:"role"`
	// Address is where the joiner's node API listens (host:port).
	Address string `json:"address"`
	// PeerURL and ClientURL are the joiner's etcd URLs (control nodes).
	PeerURL   string `json:"peerURL,omitempty"`
	ClientURL string `json:"clientURL,omitempty"`
	// PublicKey is the joiner's key, PEM, to certify.
	PublicKey []byte `json:"publicKey"`
}

// JoinResponse admits a node.
type JoinResponse struct {
	CACert   []byte `json:"caCert"`
	NodeCert []byte `json:"nodeCert"`
	// CAKey goes to control nodes, so that any of them can admit nodes
	// and sign tenants' certificates when another is down.
	CAKey []byte `json:"caKey,omitempty"`
	// InitialCluster is etcd's member list for a control node to start
	// with; Endpoints are the members' client URLs.
	InitialCluster string   `json:"initialCluster,omitempty"`
	Endpoints      []string `json:"endpoints"`
}

// Admitter admits joining nodes on a control node.
type Admitter struct {
	CA     *pki.CA
	Client *clientv3.Client
	Store  *store.Store
	// Alive reports whether a node's heartbeat lease exists.
	Alive func(ctx context.Context, node string) bool
}

// Handler serves POST /v1/join and /v1/join/abort.
func (a *Admitter) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/join", func(w http.ResponseWriter, r *http.Request) {
		var req JoinRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			errhttp.Write(w, errdefs.InvalidArgument("invalid join request: %v", err))
			return
		}
		resp, err := a.admit(r.Context(), &req)
		if err != nil {
			errhttp.Write(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	})
	mux.HandleFunc("POST /v1/join/abort", func(w http.ResponseWriter, r *http.Request) {
		var req JoinRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			errhttp.Write(w, errdefs.InvalidArgument("invalid request: %v", err))
			return
		}
		if err := a.checkToken(r.Context(), req.Token); err != nil {
			errhttp.Write(w, err)
			return
		}
		if err := a.removeMember(r.Context(), req.PeerURL); err != nil {
			errhttp.Write(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func (a *Admitter) checkToken(ctx context.Context, s string) error {
	tok, err := ParseToken(s)
	if err != nil {
		return err
	}
	secret, err := JoinSecret(ctx, a.Client)
	if err != nil {
		return err
	}
	if tok.CAHash != pki.Hash(a.CA.Cert) || subtle.ConstantTimeCompare([]byte(tok.Secret), []byte(secret)) != 1 {
		return errdefs.Unauthenticated("join refused: the token is not this cluster's")
	}
	return nil
}

func (a *Admitter) admit(ctx context.Context, req *JoinRequest) (*JoinResponse, error) {
	if err := a.checkToken(ctx, req.Token); err != nil {
		return nil, err
	}
	if !model.ValidName(req.Name) {
		return nil, errdefs.InvalidArgument("invalid node name %q", req.Name)
	}
	if req.Role != model.RoleControl && req.Role != model.RoleWorker {
		return nil, errdefs.InvalidArgument("invalid role %q", req.Role)
	}
	host, _, err := net.SplitHostPort(req.Address)
	if err != nil {
		return nil, errdefs.InvalidArgument("invalid node address %q: want host:port", req.Address)
	}
	if _, err := store.Get[model.Node](ctx, a.Store, model.KindNode, "", req.Name); err == nil && a.Alive(ctx, req.Name) {
		return nil, errdefs.Conflict("a node named %q is already in the cluster", req.Name)
	}
	pub, err := pki.ParsePublicKey(req.PublicKey)
	if err != nil {
		return nil, errdefs.InvalidArgument("join request: %v", err)
	}
	cert, err := a.CA.SignNode(req.Name, pub, []string{host})
	if err != nil {
		return nil, err
	}
	resp := &JoinResponse{CACert: a.CA.PEM, NodeCert: cert}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if req.Role == model.RoleControl {
		if resp.CAKey, err = a.CA.KeyPEM(); err != nil {
			return nil, err
		}
		if _, err := url.Parse(req.PeerURL); err != nil || req.PeerURL == "" || req.ClientURL == "" {
			return nil, errdefs.InvalidArgument("a control node needs its etcd peer and client URLs")
		}
		// As a learner first: a learner does not count towards quorum, so
		// a joiner that never starts cannot stall the cluster. The joiner
		// promotes itself once it has caught up.
		added, err := a.addLearner(ctx, req.PeerURL)
		if err != nil {
			return nil, errdefs.Unavailable("add etcd member %s: %v", req.PeerURL, err)
		}
		var parts []string
		for _, m := range added.Members {
			n := m.Name
			if m.ID == added.Member.ID {
				n = req.Name
			}
			for _, p := range m.PeerURLs {
				parts = append(parts, n+"="+p)
			}
			if m.ID != added.Member.ID {
				resp.Endpoints = append(resp.Endpoints, m.ClientURLs...)
			}
		}
		resp.InitialCluster = strings.Join(parts, ",")
		return resp, nil
	}
	members, err := a.Client.MemberList(cctx)
	if err != nil {
		return nil, errdefs.Unavailable("list etcd members: %v", err)
	}
	for _, m := range members.Members {
		if !m.IsLearner {
			resp.Endpoints = append(resp.Endpoints, m.ClientURLs...)
		}
	}
	return resp, nil
}

// addLearner adds a learner, waiting out etcd's refusal to change
// membership while a member that just joined is not yet counted healthy
// (its first seconds), which is what joining nodes back to back meets.
func (a *Admitter) addLearner(ctx context.Context, peerURL string) (*clientv3.MemberAddResponse, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := a.Client.MemberAddAsLearner(cctx, []string{peerURL})
		cancel()
		if err == nil || !errors.Is(err, rpctypes.ErrUnhealthy) || time.Now().After(deadline) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

func (a *Admitter) removeMember(ctx context.Context, peerURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	members, err := a.Client.MemberList(ctx)
	if err != nil {
		return errdefs.Unavailable("list etcd members: %v", err)
	}
	for _, m := range members.Members {
		for _, p := range m.PeerURLs {
			if p == peerURL {
				if _, err := a.Client.MemberRemove(ctx, m.ID); err != nil {
					return errdefs.Unavailable("remove etcd member: %v", err)
				}
				return nil
			}
		}
	}
	return nil
}

// trustingClient is an HTTPS client that trusts exactly the CA whose hash
// the token carries, which the server sends after its own certificate.
func trustingClient(caHash string) *http.Client {
	cfg := &tls.Config{
		InsecureSkipVerify: true, // verified below, against the token's hash
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) < 2 {
				return errors.New("the node did not present its CA")
			}
			ca, err := x509.ParseCertificate(raw[len(raw)-1])
			if err != nil {
				return err
			}
			if pki.Hash(ca) != caHash {
				return errors.New("the node's CA does not match the join token")
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			return err
		},
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}

// Join asks a node of the cluster at addr to admit this one.
func Join(ctx context.Context, addr string, req *JoinRequest) (*JoinResponse, error) {
	tok, err := ParseToken(req.Token)
	if err != nil {
		return nil, err
	}
	var out JoinResponse
	if err := postJoin(ctx, addr, tok, "/v1/join", req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// AbortJoin undoes the etcd member a failed control join added.
func AbortJoin(ctx context.Context, addr string, req *JoinRequest) error {
	tok, err := ParseToken(req.Token)
	if err != nil {
		return err
	}
	return postJoin(ctx, addr, tok, "/v1/join/abort", req, nil)
}

func postJoin(ctx context.Context, addr string, tok Token, path string, req *JoinRequest, out any) error {
	b, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+path, bytes.NewReader(b))
	if err != nil {
		return errdefs.InvalidArgument("join address %q: %v", addr, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := trustingClient(tok.CAHash).Do(hreq)
	if err != nil {
		return errdefs.Unavailable("join %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		err := errhttp.Read(resp)
		return errdefs.New(classOf(err), fmt.Sprintf("join %s: %v", addr, err))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// classOf is err's class, for rewording it.
func classOf(err error) error {
	for _, c := range []error{errdefs.ErrUnauthenticated, errdefs.ErrConflict, errdefs.ErrInvalidArgument, errdefs.ErrNotFound} {
		if errors.Is(err, c) {
			return c
		}
	}
	return errdefs.ErrUnavailable
}
