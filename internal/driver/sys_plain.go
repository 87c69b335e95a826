//go:build unix && !(linux && !race)

package driver

import "syscall"

// sysRead and sysWrite are plain read(2) and write(2). Under the race
// detector they keep its annotations of the buffers the kernel touches.
func sysRead(fd uintptr, p []byte) (int, error)  { return syscall.Read(int(fd), p) }
func sysWrite(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }
