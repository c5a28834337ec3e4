"""The command line: thin typer commands that parse, load the config and call the library."""
