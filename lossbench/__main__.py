"""`python -m lossbench` runs the `lossbench` command line."""
import sys

from lossbench.cli import main

sys.exit(main())
