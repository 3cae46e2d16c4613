"""One module per command, each with `add_parser(sub)` (its arguments and help) and `execute(args)` (what it
does), as Optimum's `commands/`; `cli.build_parser` adds them in this order."""

from . import bench, classify, compare, evaluate, export, infer, info, loadtest, predict, prepare, quantize, run, serve, train

COMMANDS = (prepare, predict, classify, export, infer, quantize, bench, compare, evaluate, run, info, serve, loadtest, train)
