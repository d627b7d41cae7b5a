//go:build !linux

package main

// followGoRun is Linux-only; elsewhere stop testcluster itself, not `go run`.
func followGoRun() {}
