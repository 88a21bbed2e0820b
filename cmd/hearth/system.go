package main

import (
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hearth-cloud/hearth/cradle"
	cradlecli "github.com/hearth-cloud/hearth/cradle/cli"
	"github.com/hearth-cloud/hearth/image"
)

// System holds the subsystems one run of the binary uses, built on first
// use once the flags are parsed. It is the only place that knows how they
// fit together.
type System struct {
	Globals *cradlecli.Globals

	imagesOnce sync.Once
	images     *image.Service
	imagesErr  error
}

func (s *System) runtime() *cradle.Runtime {
	g := s.Globals
	return &cradle.Runtime{DataDir: g.DataDir, RunDir: g.RunDir, Log: g.Log, LogLevel: g.LogLevel}
}

// Images is the image service of the data dir, which knows from the pods
// which images and layers are in use.
func (s *System) Images() (*image.Service, error) {
	s.imagesOnce.Do(func() {
		s.images, s.imagesErr = image.Open(s.Globals.DataDir)
		if s.imagesErr != nil {
			return
		}
		rt := s.runtime()
		s.images.InUse = func(id v1.Hash) []string { return rt.PodsUsingImage(id.String()) }
		s.images.LayersInUse = rt.LayersInUse
	})
	return s.images, s.imagesErr
}
