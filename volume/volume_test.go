package volume

import (
	"errors"
	"strings"
	"testing"

	"github.com/hearth-cloud/hearth/internal/errdefs"
	"github.com/hearth-cloud/hearth/macro/model"
)

func TestOptions(t *testing.T) {
	size, shared, err := Options(nil)
	if err != nil || size != DefaultSize || shared {
		t.Errorf("no options: %d %v %v", size, shared, err)
	}
	size, shared, err = Options(map[string]string{"size": "64m", "shared": "false"})
	if err != nil || size != 64<<20 || shared {
		t.Errorf("size=64m shared=false: %d %v %v", size, shared, err)
	}
	if _, shared, err = Options(map[string]string{"shared": "true"}); err != nil || !shared {
		t.Errorf("shared=true: %v %v", shared, err)
	}
	for _, bad := range []map[string]string{
		{"size": "lots"}, {"size": "-1"}, {"size": "1g", "shared": "true"}, {"size": "1k"}, {"shared": "maybe"}, {"type": "nfs"},
	} {
		if _, _, err := Options(bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%v: %v, want invalid argument", bad, err)
		}
	}
}

func pod(name, phase, desired string, vols []model.Volume, mounts ...model.Mount) *model.Pod {
	return &model.Pod{Meta: model.Meta{Name: name, Alias: name},
		Spec: model.PodSpec{Desired: desired, Volumes: vols,
			Containers: []model.Container{{Name: "main", Mounts: mounts}}},
		Status: model.PodStatus{Phase: phase}}
}

// TestConflict: a disk volume has one writer and no reader beside it; a
// shared one has any number; stopped pods hold nothing.
func TestConflict(t *testing.T) {
	disk := []model.Volume{{Name: "m0", Type: "volume", Source: "v1", Alias: "data"}}
	shared := []model.Volume{{Name: "m0", Type: "volume", Source: "v2", Alias: "sh", Shared: true}}
	rw, ro := model.Mount{Volume: "m0", Target: "/d"}, model.Mount{Volume: "m0", Target: "/d", ReadOnly: true}
	running := func(name string, vols []model.Volume, m model.Mount) *model.Pod {
		return pod(name, model.PhaseRunning, model.DesiredRunning, vols, m)
	}
	tests := []struct {
		name   string
		p      *model.Pod
		others []*model.Pod
		ok     bool
	}{
		{"alone", pod("a", "", model.DesiredStopped, disk, rw), nil, true},
		{"writer beside a writer", pod("a", "", model.DesiredStopped, disk, rw), []*model.Pod{running("b", disk, rw)}, false},
		{"reader beside a writer", pod("a", "", model.DesiredStopped, disk, ro), []*model.Pod{running("b", disk, rw)}, false},
		{"writer beside a reader", pod("a", "", model.DesiredStopped, disk, rw), []*model.Pod{running("b", disk, ro)}, false},
		{"readers", pod("a", "", model.DesiredStopped, disk, ro), []*model.Pod{running("b", disk, ro), running("c", disk, ro)}, true},
		{"writer beside a stopped writer", pod("a", "", model.DesiredStopped, disk, rw),
			[]*model.Pod{pod("b", model.PhaseExited, model.DesiredStopped, disk, rw)}, true},
		{"writer beside one about to start", pod("a", "", model.DesiredStopped, disk, rw),
			[]*model.Pod{pod("b", model.PhasePending, model.DesiredRunning, disk, rw)}, false},
		{"itself", running("a", disk, rw), []*model.Pod{running("a", disk, rw)}, true},
		{"shared writers", pod("a", "", model.DesiredStopped, shared, rw), []*model.Pod{running("b", shared, rw)}, true},
	}
	for _, tt := range tests {
		err := Conflict(tt.p, tt.others)
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
		if err != nil && (!errdefs.IsConflict(err) || !strings.Contains(err.Error(), "volume data is in use by container b")) {
			t.Errorf("%s: %v, want a conflict naming the volume and the user", tt.name, err)
		}
	}
}

func TestUsersAndReadOnly(t *testing.T) {
	vols := []model.Volume{{Name: "m0", Type: "volume", Source: "v1"}, {Name: "m1", Type: "bind", Source: "v1"}}
	p := pod("a", "", model.DesiredStopped, vols, model.Mount{Volume: "m0", Target: "/d", ReadOnly: true})
	q := pod("b", "", model.DesiredStopped, vols[1:])
	if u := Users([]*model.Pod{p, q}, "v1"); len(u) != 1 || u[0] != p {
		t.Errorf("Users = %v, want only the pod with a volume (not a bind) of that name", u)
	}
	if !ReadOnly(p, "m0") {
		t.Error("a volume mounted read-only everywhere is not ReadOnly")
	}
	p.Spec.Containers = append(p.Spec.Containers, model.Container{Name: "side", Mounts: []model.Mount{{Volume: "m0", Target: "/w"}}})
	if ReadOnly(p, "m0") {
		t.Error("a volume one container writes is ReadOnly")
	}
}
