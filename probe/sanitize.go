package probe

import "github.com/serverfirst/kubectl-serverfirst/probe/safetext"

// SanitizeLimit is the longest string Sanitize returns, in runes.
const SanitizeLimit = 200

// Sanitize renders bytes from the network for a terminal, capped at
// SanitizeLimit runes: safetext.Escape, where backslashes are doubled so
// that every escape stands for one byte from the server.
func Sanitize(b []byte) string { return safetext.Escape(b, SanitizeLimit) }
