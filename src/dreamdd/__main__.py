"""`python -m dreamdd ...`: the same as the `dreamdd` command."""
import sys

from .cli import main

sys.exit(main())
