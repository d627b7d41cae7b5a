//go:build !unix

package probe

// OpenFileLimit is unknown on this platform.
func OpenFileLimit() (limit int, ok bool) { return 0, false }

// RaiseOpenFileLimit has nothing to raise on this platform.
func RaiseOpenFileLimit() (limit int, ok bool) { return 0, false }
