//go:build !linux

package sidecar

import "errors"

// DropPrivileges needs Linux.
func DropPrivileges(uid, gid int) error { return errors.New("sidecar: DropPrivileges needs Linux") }
