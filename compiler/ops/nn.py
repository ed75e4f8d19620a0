"""Ops of the nn family (see base.py for what a definition holds)."""
