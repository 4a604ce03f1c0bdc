"""`python -m lossbench` runs the `lossbench` command line."""
from lossbench.cli import run

run()
