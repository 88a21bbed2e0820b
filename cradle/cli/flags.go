package cli

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode"

	"github.com/docker/go-units"

	"github.com/hearth-cloud/hearth/cradle/spec"
	"github.com/hearth-cloud/hearth/internal/errdefs"
)

// ParseEnv resolves -e arguments as Docker does: KEY=VALUE is taken as it
// is; a bare KEY takes the host's value, and is dropped when the host has
// none.
func ParseEnv(args []string, lookup func(string) (string, bool)) ([]string, error) {
	var out []string
	for _, a := range args {
		k, _, hasValue := strings.Cut(a, "=")
		if k == "" {
			return nil, errdefs.InvalidArgument("invalid environment variable: %s", a)
		}
		if hasValue {
			out = append(out, a)
			continue
		}
		if v, ok := lookup(k); ok {
			out = append(out, k+"="+v)
		}
	}
	return out, nil
}

// ParseEnvFile reads a Docker env file: KEY=VALUE lines, # comments and
// blank lines skipped, a bare KEY taken from the host.
func ParseEnvFile(path string, lookup func(string) (string, bool)) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errdefs.InvalidArgument("open env file: %v", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimLeftFunc(sc.Text(), unicode.IsSpace)
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, hasValue := strings.Cut(line, "=")
		if k == "" {
			return nil, errdefs.InvalidArgument("%s:%d: no variable name", path, n)
		}
		if strings.ContainsFunc(k, unicode.IsSpace) {
			return nil, errdefs.InvalidArgument("%s:%d: variable '%s' contains whitespaces", path, n, k)
		}
		if hasValue {
			out = append(out, line)
		} else if v, ok := lookup(k); ok {
			out = append(out, k+"="+v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, errdefs.InvalidArgument("read env file %s: %v", path, err)
	}
	return out, nil
}

// ParseMemory parses a Docker memory size ("512m", "1g", "1073741824") into
// MiB, at least spec.MinMemoryMiB.
func ParseMemory(s string) (int, error) {
	b, err := units.RAMInBytes(s)
	if err != nil {
		return 0, errdefs.InvalidArgument("invalid memory size %q: %v", s, err)
	}
	mib := int(b >> 20)
	if b <= 0 || mib < spec.MinMemoryMiB {
		return 0, errdefs.InvalidArgument("invalid memory size %q: the minimum for a pod is %dMiB", s, spec.MinMemoryMiB)
	}
	return mib, nil
}

// ParseSize parses a byte size ("100m", "1g").
func ParseSize(s string) (int64, error) {
	b, err := units.RAMInBytes(s)
	if err != nil || b <= 0 {
		return 0, errdefs.InvalidArgument("invalid size %q", s)
	}
	return b, nil
}

// ParseCPUs turns Docker's fractional --cpus into whole virtual CPUs (a VM
// cannot have half a CPU), rejecting what Docker rejects.
func ParseCPUs(s string, host int) (int, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, errdefs.InvalidArgument("invalid argument %q for \"--cpus\" flag: failed to parse %s as a rational number", s, s)
	}
	if f < 0.01 || f > float64(host) {
		return 0, errdefs.InvalidArgument("range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", host, host)
	}
	n := int(math.Ceil(f))
	if n > spec.MaxCPUs {
		n = spec.MaxCPUs
	}
	return n, nil
}

// mountSpec is one -v, --mount or --tmpfs, before it becomes a volume.
type mountSpec struct {
	Type     spec.VolumeType
	Source   string
	Target   string
	ReadOnly bool
	Size     int64
}

// ParseVolume parses -v HOSTDIR:CTRDIR[:ro|rw].
func ParseVolume(s string) (mountSpec, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return mountSpec{}, errdefs.InvalidArgument("invalid volume specification: %q: want HOSTDIR:CTRDIR[:ro]", s)
	}
	m := mountSpec{Type: spec.VolumeDir, Source: parts[0], Target: parts[1]}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			m.ReadOnly = true
		case "rw":
		default:
			return mountSpec{}, errdefs.InvalidArgument("invalid mode %q in volume specification %q: want ro or rw", parts[2], s)
		}
	}
	if !filepath.IsAbs(m.Source) {
		return mountSpec{}, errdefs.InvalidArgument("invalid volume specification: %q: the host path must be absolute (named volumes need `hearth up`)", s)
	}
	if !filepath.IsAbs(m.Target) {
		return mountSpec{}, errdefs.InvalidArgument("invalid volume specification: %q: mount path must be absolute", s)
	}
	return m, nil
}

// ParseMount parses --mount type=bind|block|tmpfs,source=…,target=…[,readonly][,size=…].
func ParseMount(s string) (mountSpec, error) {
	m := mountSpec{Type: spec.VolumeDir}
	typ := ""
	for _, field := range strings.Split(s, ",") {
		k, v, hasValue := strings.Cut(field, "=")
		switch strings.ToLower(k) {
		case "type":
			typ = v
		case "source", "src":
			m.Source = v
		case "target", "dst", "destination":
			m.Target = v
		case "readonly", "ro":
			if !hasValue {
				m.ReadOnly = true
				break
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return m, errdefs.InvalidArgument("invalid value for %s: %s", k, v)
			}
			m.ReadOnly = b
		case "size", "tmpfs-size":
			n, err := ParseSize(v)
			if err != nil {
				return m, err
			}
			m.Size = n
		default:
			return m, errdefs.InvalidArgument("unexpected key '%s' in '%s'", k, field)
		}
	}
	switch typ {
	case "bind":
		m.Type = spec.VolumeDir
	case "block":
		m.Type = spec.VolumeBlock
	case "tmpfs":
		m.Type = spec.VolumeTmpfs
		if m.Source != "" {
			return m, errdefs.InvalidArgument("invalid mount %q: tmpfs takes no source", s)
		}
	case "":
		return m, errdefs.InvalidArgument("invalid mount %q: type is required (bind, block or tmpfs)", s)
	default:
		return m, errdefs.InvalidArgument("invalid mount %q: unknown type %q (want bind, block or tmpfs)", s, typ)
	}
	if m.Type != spec.VolumeTmpfs && !filepath.IsAbs(m.Source) {
		return m, errdefs.InvalidArgument("invalid mount %q: source must be an absolute host path", s)
	}
	if !filepath.IsAbs(m.Target) {
		return m, errdefs.InvalidArgument("invalid mount %q: target must be an absolute path", s)
	}
	return m, nil
}

// ParseTmpfs parses --tmpfs /path[:size=…].
func ParseTmpfs(s string) (mountSpec, error) {
	target, opts, _ := strings.Cut(s, ":")
	m := mountSpec{Type: spec.VolumeTmpfs, Target: target}
	if !filepath.IsAbs(target) {
		return m, errdefs.InvalidArgument("invalid tmpfs %q: mount path must be absolute", s)
	}
	for _, o := range strings.Split(opts, ",") {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "":
		case "size":
			n, err := ParseSize(v)
			if err != nil {
				return m, err
			}
			m.Size = n
		case "ro":
			m.ReadOnly = true
		case "rw", "mode", "exec", "noexec", "nosuid", "nodev":
			// Docker's defaults apply; the VM boundary is the isolation.
		default:
			return m, errdefs.InvalidArgument("invalid tmpfs option %q", o)
		}
	}
	return m, nil
}

// volumes turns parsed mounts into the pod's volumes and the container's
// mounts.
func volumes(ms []mountSpec) ([]spec.Volume, []spec.Mount, error) {
	var vols []spec.Volume
	var mounts []spec.Mount
	for i, m := range ms {
		name := fmt.Sprintf("v%d", i)
		v := spec.Volume{Name: name, Type: m.Type, Source: m.Source, ReadOnly: m.ReadOnly, SizeBytes: m.Size}
		if m.Type == spec.VolumeDir {
			fi, err := os.Stat(m.Source)
			switch {
			case os.IsNotExist(err):
				// Docker creates a missing bind source as a directory.
				if err := os.MkdirAll(m.Source, 0o755); err != nil {
					return nil, nil, errdefs.InvalidArgument("create bind source %s: %v", m.Source, err)
				}
			case err != nil:
				return nil, nil, errdefs.InvalidArgument("bind source %s: %v", m.Source, err)
			case !fi.IsDir():
				return nil, nil, errdefs.InvalidArgument("bind source %s is not a directory: cradle shares directories (use --mount type=block for a disk image)", m.Source)
			}
		}
		vols = append(vols, v)
		mounts = append(mounts, spec.Mount{Volume: name, Target: m.Target, ReadOnly: m.ReadOnly})
	}
	return vols, mounts, nil
}
