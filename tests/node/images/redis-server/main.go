// /usr/local/bin/redis-server of the test node's Redis image (Debian's redis-server): runs the
// real binary with the operator's arguments plus `--protected-mode no`. The official Redis
// image is built with protected mode off; Debian's is not, and without a bind address or a
// password it refuses connections from other pods, which the managed Redis must accept.
package main

import (
	"fmt"
	"os"
	"syscall"
)

const binary = "/usr/local/lib/redis/redis-server"

func main() {
	args := append([]string{"redis-server"}, os.Args[1:]...)
	args = append(args, "--protected-mode", "no")
	err := syscall.Exec(binary, args, os.Environ())
	fmt.Fprintf(os.Stderr, "redis-server wrapper: exec %s: %v\n", binary, err)
	os.Exit(127)
}
