"""Ops of the reduce family (see base.py for what a definition holds)."""
