"""The `tokenwatch` command line: one module per command group."""
