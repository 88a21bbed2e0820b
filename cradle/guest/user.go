package guest

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ExecUser is a resolved user: what a process runs as.
type ExecUser struct {
	UID    uint32
	GID    uint32
	Groups []uint32
	Home   string
}

type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// ResolveUser resolves a user spec ("", "name", "uid", "name:group",
// "uid:gid", "name:gid", "uid:group") against the contents of a container's
// /etc/passwd and /etc/group, the way Docker (runc) does:
//   - a name must exist in passwd, a group name in group;
//   - a numeric uid need not exist; when it does, its entry gives the
//     primary group and home;
//   - supplementary groups are the groups that list the user as a member,
//     unless a group was given explicitly.
//
// passwd and group may be nil when the files do not exist.
func ResolveUser(spec string, passwd, group io.Reader) (ExecUser, error) {
	u := ExecUser{Home: "/"}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if hasGroup && groupPart == "" {
		return u, fmt.Errorf("invalid user %q: empty group", spec)
	}
	users, err := parsePasswd(passwd)
	if err != nil {
		return u, err
	}
	var entry *passwdEntry
	if userPart == "" {
		userPart = "0"
	}
	if uid, err := parseID(userPart); err == nil {
		u.UID = uid
		for i := range users {
			if users[i].uid == uid {
				entry = &users[i]
				break
			}
		}
	} else {
		for i := range users {
			if users[i].name == userPart {
				entry = &users[i]
				break
			}
		}
		if entry == nil {
			return u, fmt.Errorf("unable to find user %s: no matching entries in passwd file", userPart)
		}
		u.UID = entry.uid
	}
	if entry != nil {
		u.GID = entry.gid
		if entry.home != "" {
			u.Home = entry.home
		}
	}

	groups, err := parseGroup(group)
	if err != nil {
		return u, err
	}
	if hasGroup {
		if gid, err := parseID(groupPart); err == nil {
			u.GID = gid
		} else {
			found := false
			for _, g := range groups {
				if g.name == groupPart {
					u.GID, found = g.gid, true
					break
				}
			}
			if !found {
				return u, fmt.Errorf("unable to find group %s: no matching entries in group file", groupPart)
			}
		}
		return u, nil
	}
	if entry != nil {
		for _, g := range groups {
			for _, m := range g.members {
				if m == entry.name {
					u.Groups = append(u.Groups, g.gid)
					break
				}
			}
		}
	}
	return u, nil
}

func parseID(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err
}

// parsePasswd reads name:password:uid:gid:gecos:home:shell lines, skipping
// comments and lines it cannot parse, as libc does.
func parsePasswd(r io.Reader) ([]passwdEntry, error) {
	var out []passwdEntry
	err := eachLine(r, func(f []string) {
		if len(f) < 4 {
			return
		}
		uid, err1 := parseID(f[2])
		gid, err2 := parseID(f[3])
		if err1 != nil || err2 != nil {
			return
		}
		e := passwdEntry{name: f[0], uid: uid, gid: gid}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
	})
	if err != nil {
		return nil, fmt.Errorf("read passwd file: %w", err)
	}
	return out, nil
}

// parseGroup reads name:password:gid:member,member lines.
func parseGroup(r io.Reader) ([]groupEntry, error) {
	var out []groupEntry
	err := eachLine(r, func(f []string) {
		if len(f) < 3 {
			return
		}
		gid, err := parseID(f[2])
		if err != nil {
			return
		}
		e := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			e.members = strings.Split(f[3], ",")
		}
		out = append(out, e)
	})
	if err != nil {
		return nil, fmt.Errorf("read group file: %w", err)
	}
	return out, nil
}

func eachLine(r io.Reader, fn func([]string)) error {
	if r == nil {
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	return sc.Err()
}
