"""One module per command group: parse flags, build frozen options, call the engine, render."""
