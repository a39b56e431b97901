"""Procedural scene generators (pure numpy)."""
