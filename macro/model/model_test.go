package model

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 253)
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"0", true},
		{"web-1", true},
		{"a.b-c.d", true},
		{"1a", true},
		{long, true},
		{long + "a", false},
		{"", false},
		{"A", false},
		{"Web", false},
		{"-a", false},
		{"a-", false},
		{".a", false},
		{"a.", false},
		{"a_b", false},
		{"a b", false},
		{"a/b", false},
		{"é", false},
		{"a\n", false},
	} {
		if got := ValidName(tt.name); got != tt.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.ok)
		}
	}
}

func TestMetaValidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		desc string
		m    Meta
		kind string
		want string // substring of the error; "" for none
	}{
		{"pod", Meta{Kind: KindPod, Tenant: "acme", Name: "web"}, KindPod, ""},
		{"node", Meta{Kind: KindNode, Name: "n1"}, KindNode, ""},
		{"tenant", Meta{Kind: KindTenant, Name: "acme"}, KindTenant, ""},
		{"service", Meta{Kind: KindService, Tenant: "acme", Name: "web"}, KindService, ""},
		{"wrong kind", Meta{Kind: KindPod, Tenant: "acme", Name: "web"}, KindService, `object of kind "pods" where "services" was expected`},
		{"no kind", Meta{Tenant: "acme", Name: "web"}, KindPod, `object of kind "" where "pods" was expected`},
		{"empty name", Meta{Kind: KindPod, Tenant: "acme"}, KindPod, `invalid pods name ""`},
		{"upper-case name", Meta{Kind: KindPod, Tenant: "acme", Name: "Web"}, KindPod, `invalid pods name "Web"`},
		{"underscore", Meta{Kind: KindNode, Name: "n_1"}, KindNode, `invalid nodes name "n_1"`},
		{"pod without tenant", Meta{Kind: KindPod, Name: "web"}, KindPod, "pods web has no tenant"},
		{"secret without tenant", Meta{Kind: KindSecret, Name: "s"}, KindSecret, "secrets s has no tenant"},
		{"node with tenant", Meta{Kind: KindNode, Tenant: "acme", Name: "n1"}, KindNode, "nodes are cluster-scoped: n1 has a tenant"},
		{"tenant with tenant", Meta{Kind: KindTenant, Tenant: "acme", Name: "acme"}, KindTenant, "tenants are cluster-scoped"},
		{"invalid tenant", Meta{Kind: KindPod, Tenant: "Acme", Name: "web"}, KindPod, `invalid tenant "Acme"`},
		{"tenant with slash", Meta{Kind: KindPod, Tenant: "a/b", Name: "web"}, KindPod, `invalid tenant "a/b"`},
	} {
		err := tt.m.Validate(tt.kind)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v", tt.desc, err)
		case tt.want != "" && err == nil:
			t.Errorf("%s: valid, want error %q", tt.desc, tt.want)
		case tt.want != "" && !strings.Contains(err.Error(), tt.want):
			t.Errorf("%s: error %q, want %q", tt.desc, err, tt.want)
		}
	}
}

func TestClusterScoped(t *testing.T) {
	t.Parallel()
	for _, k := range []string{KindNode, KindTenant} {
		if !ClusterScoped(k) {
			t.Errorf("%s is not cluster-scoped", k)
		}
	}
	for _, k := range []string{KindPod, KindService, KindNetwork, KindVolume, KindSecret, KindConfig} {
		if ClusterScoped(k) {
			t.Errorf("%s is cluster-scoped", k)
		}
	}
}

func validPod() *Pod {
	return &Pod{
		Meta: Meta{Kind: KindPod, Tenant: "acme", Name: "web"},
		Spec: PodSpec{
			Containers: []Container{{Name: "app", Image: "nginx"}, {Name: "side", Image: "busybox"}},
			Resources:  Resources{CPUs: 1, MemoryMiB: 64},
			Restart:    Restart{Policy: RestartOnFailure, MaxRetries: 3},
			Desired:    DesiredRunning,
		},
	}
}

func TestPodValidate(t *testing.T) {
	t.Parallel()
	if err := validPod().Validate(); err != nil {
		t.Fatalf("valid pod: %v", err)
	}
	for _, tt := range []struct {
		desc   string
		mutate func(p *Pod)
		want   string
	}{
		{"meta", func(p *Pod) { p.Name = "Web" }, `invalid pods name "Web"`},
		{"kind", func(p *Pod) { p.Kind = KindService }, `object of kind "services" where "pods" was expected`},
		{"no tenant", func(p *Pod) { p.Tenant = "" }, "has no tenant"},
		{"no containers", func(p *Pod) { p.Spec.Containers = nil }, "pod web has no containers"},
		{"empty container name", func(p *Pod) { p.Spec.Containers[0].Name = "" }, `invalid or duplicate container name ""`},
		{"invalid container name", func(p *Pod) { p.Spec.Containers[1].Name = "Side" }, `invalid or duplicate container name "Side"`},
		{"duplicate container name", func(p *Pod) { p.Spec.Containers[1].Name = "app" }, `invalid or duplicate container name "app"`},
		{"no image", func(p *Pod) { p.Spec.Containers[1].Image = "" }, "container side has no image"},
		{"no CPU", func(p *Pod) { p.Spec.Resources.CPUs = 0 }, "resources 0 CPUs, 64 MiB: want at least 1 CPU and 64 MiB"},
		{"negative CPU", func(p *Pod) { p.Spec.Resources.CPUs = -1 }, "want at least 1 CPU"},
		{"too little memory", func(p *Pod) { p.Spec.Resources.MemoryMiB = 63 }, "resources 1 CPUs, 63 MiB"},
		{"no restart policy", func(p *Pod) { p.Spec.Restart.Policy = "" }, `unknown restart policy ""`},
		{"unknown restart policy", func(p *Pod) { p.Spec.Restart.Policy = "sometimes" }, `unknown restart policy "sometimes"`},
		{"negative retries", func(p *Pod) { p.Spec.Restart.MaxRetries = -1 }, "negative maximum retry count"},
		{"no desired state", func(p *Pod) { p.Spec.Desired = "" }, `desired state "": want running or stopped`},
		{"unknown desired state", func(p *Pod) { p.Spec.Desired = "paused" }, `desired state "paused"`},
	} {
		p := validPod()
		tt.mutate(p)
		err := p.Validate()
		if err == nil {
			t.Errorf("%s: valid, want error %q", tt.desc, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q, want %q", tt.desc, err, tt.want)
		}
	}
	// Every policy and desired state is accepted.
	for _, pol := range []string{RestartNo, RestartOnFailure, RestartAlways, RestartUnlessStopped} {
		for _, d := range []string{DesiredRunning, DesiredStopped} {
			p := validPod()
			p.Spec.Restart.Policy, p.Spec.Desired = pol, d
			if err := p.Validate(); err != nil {
				t.Errorf("policy %s, desired %s: %v", pol, d, err)
			}
		}
	}
}

func TestTerminal(t *testing.T) {
	t.Parallel()
	for phase, want := range map[string]bool{
		"":             false,
		PhasePending:   false,
		PhaseScheduled: false,
		PhaseStarting:  false,
		PhaseRunning:   false,
		PhaseExited:    true,
		PhaseFailed:    true,
		PhaseLost:      true,
		"exited":       false,
	} {
		if got := Terminal(phase); got != want {
			t.Errorf("Terminal(%q) = %v, want %v", phase, got, want)
		}
	}
}

func TestGetMeta(t *testing.T) {
	t.Parallel()
	var objs []Object = []Object{&Pod{}, &Node{}, &Service{}, &Tenant{}, &Network{}, &VolumeObject{}, &Secret{}, &Config{}}
	for _, o := range objs {
		m := o.GetMeta()
		m.Name = "x"
		if o.GetMeta().Name != "x" {
			t.Errorf("%T: GetMeta does not return the object's own Meta", o)
		}
	}
}
