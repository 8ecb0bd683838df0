"""One module per `factory` subcommand: register(subparsers) adds it, with set_defaults(func=run)."""
