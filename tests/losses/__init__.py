"""Tests of the loss library, lossbench.losses: one file per module, plus the common test every loss must pass."""
