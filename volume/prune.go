package volume

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hearth-cloud/hearth/macro/model"
	"github.com/hearth-cloud/hearth/macro/store"
)

// Prune removes the data of this node's volumes once their objects are
// gone: at start those deleted while the node was down, then each as it
// is deleted. A volume is deleted only when no pod refers to it, so no
// pod loses its data. It returns when ctx ends.
func Prune(ctx context.Context, st *store.Store, dataDir, node string, log *slog.Logger) error {
	// What is on disk is read before the objects, so that a volume made
	// in between is never taken for a deleted one.
	var found []string
	tenants, _ := os.ReadDir(filepath.Join(dataDir, "volumes"))
	for _, t := range tenants {
		vols, _ := os.ReadDir(filepath.Join(dataDir, "volumes", t.Name()))
		for _, v := range vols {
			found = append(found, filepath.Join(t.Name(), v.Name()))
		}
	}
	// The watch's first list says which exist; its later events, which
	// follow that list without a gap, say which go.
	known := map[string]bool{}
	listed := false
	err := store.Watch[model.VolumeObject](ctx, st, model.KindVolume, func(ev store.Event[*model.VolumeObject], initial bool) {
		switch {
		case !listed && ev.Object == nil:
			listed = true
			for _, f := range found {
				if !known[f] {
					remove(filepath.Join(dataDir, "volumes", f), log)
				}
			}
		case !listed:
			known[filepath.Join(ev.Object.Tenant, ev.Object.Name)] = true
		case ev.Type == store.Deleted && ev.Object != nil && ev.Object.Spec.Node == node:
			remove(Dir(dataDir, ev.Object.Tenant, ev.Object.Name), log)
		}
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func remove(dir string, log *slog.Logger) {
	if err := os.RemoveAll(dir); err != nil {
		log.Warn("remove the data of a deleted volume", "dir", dir, "err", err)
		return
	}
	log.Info("removed the data of a deleted volume", "dir", dir)
}
