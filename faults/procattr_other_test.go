//go:build !linux

package faults_test

import "syscall"

// writerAttr: elsewhere than Linux a writer outlives a test process that
// dies without running its cleanups.
func writerAttr() *syscall.SysProcAttr { return nil }
