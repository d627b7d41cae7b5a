//go:build tools

// Package tools pins the main packages hack/testbins.sh builds, so that
// `go mod tidy` keeps every module they need.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
