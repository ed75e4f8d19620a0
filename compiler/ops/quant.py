"""Ops of the quant family (see base.py for what a definition holds)."""
