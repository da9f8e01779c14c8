"""``python -m tasder`` runs the command line (same as the ``tasder`` console script)."""

from tasder.cli.app import main

if __name__ == "__main__":
    main()
