"""`python -m pixeldojo_cli` is the same program as `pixeldojo`."""

from pixeldojo_cli.cli import main

if __name__ == "__main__":
    main()
