//go:build unix && !linux

package testenv

import "syscall"

// sysProcAttr puts each child in its own process group so stop can signal
// the group; only Linux has a parent-death signal.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
