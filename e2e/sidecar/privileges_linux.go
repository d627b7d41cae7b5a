package sidecar

import (
	"fmt"
	"os"
	"syscall"
)

// DropPrivileges makes the whole process uid/gid, as the istio-proxy
// container's securityContext (runAsUser/runAsGroup 1337) does. The capture
// rules exempt exactly these ids, so every socket the model opens afterwards
// bypasses its own redirection. It does nothing when already running as uid.
func DropPrivileges(uid, gid int) error {
	if os.Geteuid() == uid {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("running as uid %d: cannot become uid %d (start as root or as %d)", os.Geteuid(), uid, uid)
	}
	// Go applies these to every thread of the process.
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("setgid %d: %w", gid, err)
	}
	if err := syscall.Setuid(uid); err != nil {
		return fmt.Errorf("setuid %d: %w", uid, err)
	}
	return nil
}
