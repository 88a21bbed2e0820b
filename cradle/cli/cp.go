package cli

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"github.com/hearth-cloud/hearth/cradle"
	"github.com/hearth-cloud/hearth/cradle/shim"
	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// splitCopyArg reads POD:PATH; ok is false for a host path.
func splitCopyArg(s string) (pod, p string, ok bool) {
	if strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") {
		return "", s, false
	}
	pod, p, ok = strings.Cut(s, ":")
	return pod, p, ok
}

func cpCmd(g *Globals) *cobra.Command {
	var container string
	c := &cobra.Command{
		Use:   "cp POD:SRC DEST | SRC POD:DEST",
		Short: "Copy files between a running pod and the host, as docker cp does",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcPod, src, fromPod := splitCopyArg(args[0])
			dstPod, dst, toPod := splitCopyArg(args[1])
			switch {
			case fromPod && toPod:
				return errdefs.InvalidArgument("copying between two pods is not supported")
			case !fromPod && !toPod:
				return errdefs.InvalidArgument("one of source and destination must be POD:PATH")
			}
			ref := srcPod
			if toPod {
				ref = dstPod
			}
			p, err := g.runtime().Find(ref)
			if err != nil {
				return err
			}
			ctr := p.Launch.Containers[0].Name
			if container != "" {
				ctr = container
			}
			if fromPod {
				return copyFrom(p, ctr, src, dst)
			}
			return copyTo(p, ctr, src, dst)
		},
	}
	c.Flags().StringVarP(&container, "container", "c", "", "container of the pod (default: the first)")
	return c
}

// copyFrom copies a path out of a container: into DEST when DEST is a
// directory, else as DEST.
func copyFrom(p *cradle.Pod, ctr, src, dst string) error {
	if !path.IsAbs(src) {
		src = "/" + src
	}
	rename := ""
	if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		rename = filepath.Base(dst)
		dst = filepath.Dir(dst)
	}
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- extractHost(pr, dst, path.Base(src), rename) }()
	_, err := p.Client().ArchiveGet(ctr, src, pw)
	pw.CloseWithError(err)
	if xerr := <-errc; err == nil {
		err = xerr
	}
	return podErr(p, err)
}

// copyTo copies a host path into a container: into DEST when DEST is a
// directory there, else as DEST.
func copyTo(p *cradle.Pod, ctr, src, dst string) error {
	if !path.IsAbs(dst) {
		dst = "/" + dst
	}
	if _, err := os.Lstat(src); err != nil {
		return errdefs.NotFound("copy %s: no such file or directory", src)
	}
	name := filepath.Base(src)
	dir := dst
	st, err := p.Client().PathStat(ctr, dst)
	var ce *spec.CallError
	switch {
	case err == nil && os.FileMode(st.Mode)&os.ModeDir != 0:
		// Into the directory, under the source's name.
	case err == nil, errors.As(err, &ce) && ce.Kind == spec.ErrNotFound:
		// As DEST, in its parent.
		name, dir = path.Base(dst), path.Dir(dst)
	default:
		return podErr(p, err)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeHostArchive(pw, src, name)) }()
	return podErr(p, p.Client().ArchivePut(ctr, dir, pr))
}

// writeHostArchive tars the host path src under the name base.
func writeHostArchive(w io.Writer, src, base string) error {
	tw := tar.NewWriter(w)
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		name := base
		if rel != "." {
			name = path.Join(base, filepath.ToSlash(rel))
		}
		link := ""
		if fi.Mode()&os.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		h, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		h.Name = name
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			h.Uid, h.Gid = int(st.Uid), int(st.Gid)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// extractHost writes an archive rooted at top under dir, its top entry
// renamed when rename is set. Entries may not climb out of dir.
func extractHost(r io.Reader, dir, top, rename string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if rename != "" {
			if name == top {
				name = rename
			} else if rest, ok := strings.CutPrefix(name, top+"/"); ok {
				name = path.Join(rename, rest)
			}
		}
		if name == ".." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return fmt.Errorf("archive entry %q leaves the destination", h.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, h.FileInfo().Mode().Perm()|0o700); err != nil {
				return err
			}
		case tar.TypeReg, tar.TypeRegA:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, h.FileInfo().Mode().Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			os.Remove(target)
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		}
	}
}

func statsCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats POD...",
		Short: "Show pods' resource use",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "POD ID\tCONTAINER\tCPU TIME\tMEM USAGE / LIMIT\tPIDS\tNET I/O")
			for _, a := range args {
				p, err := g.runtime().Find(a)
				if err != nil {
					return err
				}
				st, err := p.Client().Stats()
				if err != nil {
					if errors.Is(err, shim.ErrGone) {
						return errdefs.Conflict("pod %s is not running", p.Launch.ID[:12])
					}
					return err
				}
				for _, c := range st.Containers {
					fmt.Fprintf(tw, "%s\t%s\t%.2fs\t%s / %s\t%d\t%s / %s\n", p.Launch.ID[:12], c.Name, float64(c.CPUNanos)/1e9,
						units.BytesSize(float64(c.MemoryBytes)), units.BytesSize(float64(c.MemoryLimit)), c.Pids,
						units.HumanSize(float64(st.Network.RxBytes)), units.HumanSize(float64(st.Network.TxBytes)))
				}
			}
			return tw.Flush()
		},
	}
}
