package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/loom-mesh/loom/config"
)

func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: loom-node config validate [FILE] | loom-node config print [--config FILE]")
		return 2
	}
	switch args[0] {
	case "validate":
		fs := flag.NewFlagSet("loom-node config validate", flag.ContinueOnError)
		fs.SetOutput(stderr)
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		path := config.Path(fs.Arg(0))
		if path == "" {
			fmt.Fprintln(stderr, "loom-node config validate: no file given and LOOM_CONFIG_PATH is not set")
			return 2
		}
		if _, err := config.Load(path); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
		return 0
	case "print":
		f := newNodeFlags("loom-node config print", stderr)
		if err := f.fs.Parse(args[1:]); err != nil {
			return 2
		}
		cfg, err := f.load(config.Default())
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 1
		}
		b, err := cfg.YAML()
		if err != nil {
			fmt.Fprintf(stderr, "loom-node config print: %v\n", err)
			return 1
		}
		_, _ = stdout.Write(b)
		return 0
	default:
		fmt.Fprintf(stderr, "loom-node config: unknown subcommand %q\n", args[0])
		return 2
	}
}
