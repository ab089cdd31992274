// Package cli is gibbon's command line: one file per command, each parsing its
// flags, making one call into the domain (inference/..., gallery, server for
// serve) and writing the outcome; the dispatch, exit codes and the helpers the
// commands share are here.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"gibbon/inference"
)

// Main runs the command line args and returns the process's exit code: 0, 1 for
// a failure, 2 for a mistake in the command line. Errors are printed here, once.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	if err == nil {
		return 0
	}
	if !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stderr, "gibbon:", err)
	}
	return exitCode(err)
}

// run dispatches to a subcommand; every error comes back here, printed once by Main.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printHelp(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(ctx, args[1:], stdout, stderr)
			if errors.Is(err, inference.ErrInvalid) {
				return usageError{err.Error()} // a mistake in the command line, found by the domain
			}
			return err
		}
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printHelp(stdout)
		return nil
	}
	return usageError{fmt.Sprintf("unknown command %q (see `gibbon help`)", args[0])}
}

// usageError marks a mistake in the command line (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "gibbon: an interactive web explorer for adversarial examples")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: gibbon COMMAND [flags] [args]   (gibbon COMMAND -h for a command's flags)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-14s %s\n", "help", "show this list")
}

// runFunc runs a command or subcommand.
type runFunc = func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// runSubcommand runs the subcommand args[0] names of command cmd (bench, models,
// runtime) with the rest of args; -h prints usage.
func runSubcommand(ctx context.Context, cmd, usage string, subs map[string]runFunc, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usageError{cmd + " needs a subcommand: " + usage}
	}
	if run, ok := subs[args[0]]; ok {
		return run(ctx, args[1:], stdout, stderr)
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, "Usage:", usage)
		return nil
	}
	return usageError{fmt.Sprintf("unknown %s subcommand %q: %s", cmd, args[0], usage)}
}
