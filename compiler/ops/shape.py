"""Ops of the shape family (see base.py for what a definition holds)."""
