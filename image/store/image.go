package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// Image returns the image whose manifest is the blob d, reading its config
// and layers from the store as they are needed.
func (s *Store) Image(d v1.Hash) (v1.Image, error) {
	raw, err := s.ReadBlob(d)
	if err != nil {
		return nil, err
	}
	var head struct {
		MediaType types.MediaType `json:"mediaType"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	if head.MediaType == "" {
		head.MediaType = types.OCIManifestSchema1
	}
	if head.MediaType.IsIndex() {
		return nil, errdefs.InvalidArgument("%s is an index, not an image", d)
	}
	img, err := partial.CompressedToImage(&storeImage{s: s, raw: raw, mediaType: head.MediaType})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", d, err)
	}
	return img, nil
}

// storeImage is an image whose blobs are files of the store.
type storeImage struct {
	s         *Store
	raw       []byte
	mediaType types.MediaType
}

func (i *storeImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *storeImage) MediaType() (types.MediaType, error) { return i.mediaType, nil }

func (i *storeImage) RawConfigFile() ([]byte, error) {
	m, err := v1.ParseManifest(bytes.NewReader(i.raw))
	if err != nil {
		return nil, err
	}
	return i.s.ReadBlob(m.Config.Digest)
}

func (i *storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	m, err := v1.ParseManifest(bytes.NewReader(i.raw))
	if err != nil {
		return nil, err
	}
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if d.Digest == h {
			return &storeBlob{s: i.s, desc: d}, nil
		}
	}
	return nil, errdefs.NotFound("blob %s is not part of the image", h)
}

// storeBlob is a layer (or config) blob of the store.
type storeBlob struct {
	s    *Store
	desc v1.Descriptor
}

func (b *storeBlob) Digest() (v1.Hash, error)            { return b.desc.Digest, nil }
func (b *storeBlob) Size() (int64, error)                { return b.desc.Size, nil }
func (b *storeBlob) MediaType() (types.MediaType, error) { return b.desc.MediaType, nil }

func (b *storeBlob) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(b.s.BlobPath(b.desc.Digest))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, errdefs.NotFound("blob %s not in the store", b.desc.Digest)
		}
		return nil, err
	}
	return f, nil
}
