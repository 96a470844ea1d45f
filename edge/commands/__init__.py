"""The `veille` command line and what its subcommands run (demo, provision, replay, evals)."""
