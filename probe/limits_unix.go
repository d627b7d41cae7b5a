//go:build unix

package probe

import "syscall"

// OpenFileLimit is the process's current (soft) open-files limit, which
// bounds how many probes can hold a socket at once. ok is false when the
// limit is unknown.
func OpenFileLimit() (limit int, ok bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0, false
	}
	return int(rl.Cur), true
}

// RaiseOpenFileLimit lifts the soft open-files limit to the hard one, which
// any process may do, and returns the limit then in force. Go does this by
// itself at start-up on Linux (and lowers it again for child processes);
// calling it says so where the prober depends on it and covers the
// platforms where Go does not.
func RaiseOpenFileLimit() (limit int, ok bool) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl) // darwin caps it lower: keep what we have
	}
	return OpenFileLimit()
}
