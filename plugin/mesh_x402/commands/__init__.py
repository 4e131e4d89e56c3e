"""One module per `mesh-x402` subcommand: `configure(parser)` and `run(args)`."""
