"""`python -m examples.keydoor key=value ...` (see examples/keydoor/cli.py)."""
import sys

from examples.keydoor.cli import main

if __name__ == "__main__":
    sys.exit(main())
