package main

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// followGoRun makes the kernel send us SIGTERM when our parent dies, if that
// parent is the go command. `go run` does not pass SIGTERM on to the program
// it runs: a script that stops `go -C e2e run ./cmd/testcluster` by its pid
// would otherwise leave etcd and kube-apiserver running for good. Any other
// parent (a shell that backgrounds the built binary and exits) keeps the
// usual behaviour.
func followGoRun() {
	ppid := os.Getppid()
	exe, err := os.Readlink("/proc/" + strconv.Itoa(ppid) + "/exe")
	if err != nil || filepath.Base(exe) != "go" {
		return
	}
	const prSetPdeathsig = 1
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetPdeathsig, uintptr(syscall.SIGTERM), 0); errno != 0 {
		return
	}
	// The parent may have died before prctl took effect.
	if os.Getppid() != ppid {
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
	}
}
