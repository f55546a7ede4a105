"""The `aitm` commands, one module each: `add_parser(subparsers)` adds the command and
its flags and returns its parser, `run(args)` runs it, and `LOADS_TENSORFLOW` says
whether TensorFlow is imported (quietly) before `run`."""
