// Command gibbon is an interactive web explorer for adversarial examples. Its
// commands live in package cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"gibbon/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
