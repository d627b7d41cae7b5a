//go:build tools

// Package tools pins the main packages hack/testbins.sh builds, so that
// `go mod tidy` keeps every module they need.
package tools

import (
	_ "istio.io/istio/pilot/cmd/pilot-agent"
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
