"""Test-wide settings: notebooks run in their quick mode, plots render without a screen."""
import os

os.environ.setdefault("LOSSBENCH_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as lossbench sets it, before anything imports torch
