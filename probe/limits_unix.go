//go:build unix

package probe

import "syscall"

// OpenFileLimit is the process's current open-files limit, which bounds how
// many probes can hold a socket at once (Go raises the soft limit to the
// hard one at start-up). ok is false when the limit is unknown.
func OpenFileLimit() (limit int, ok bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0, false
	}
	return int(rl.Cur), true
}
