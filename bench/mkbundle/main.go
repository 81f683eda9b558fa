// Command mkbundle writes a bundle of images made from uncompressed layer tars, each layer
// kept uncompressed (its digest is its diffID, as docker saves it), for the benchmarks:
//
//	mkbundle OUT TAG=LAYER.tar[,LAYER.tar...] ...
package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ferrytool/ferry/archive"
	"github.com/ferrytool/ferry/internal/atomicfile"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkbundle:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: mkbundle OUT TAG=LAYER.tar[,LAYER.tar...] ...")
	}
	b, src := &archive.Bundle{}, archive.V1Source{}
	for _, arg := range args[1:] {
		tag, files, ok := strings.Cut(arg, "=")
		if !ok {
			return fmt.Errorf("%q: want TAG=LAYER.tar,...", arg)
		}
		img := empty.Image
		for _, file := range strings.Split(files, ",") {
			l, err := fileLayer(file)
			if err == nil {
				img, err = mutate.AppendLayers(img, l)
			}
			if err != nil {
				return err
			}
		}
		if _, err := b.AddImage(img, []string{tag}, src); err != nil {
			return err
		}
	}
	f, err := atomicfile.Create(args[0], 0o644)
	if err != nil {
		return err
	}
	if err := archive.Write(context.Background(), f, b, src, archive.WriteOptions{}); err != nil {
		f.Abort()
		return err
	}
	return f.Commit()
}

// fileLayer is an uncompressed layer read from a tar file.
func fileLayer(path string) (v1.Layer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, err
	}
	diffID := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
	return &uncompressed{path: path, diffID: diffID, size: n}, nil
}

type uncompressed struct {
	path   string
	diffID v1.Hash
	size   int64
}

func (u *uncompressed) Digest() (v1.Hash, error)             { return u.diffID, nil }
func (u *uncompressed) DiffID() (v1.Hash, error)             { return u.diffID, nil }
func (u *uncompressed) Size() (int64, error)                 { return u.size, nil }
func (u *uncompressed) Compressed() (io.ReadCloser, error)   { return os.Open(u.path) }
func (u *uncompressed) Uncompressed() (io.ReadCloser, error) { return os.Open(u.path) }
func (u *uncompressed) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }
