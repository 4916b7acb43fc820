"""Thin Ray actors: each wraps one engine and forwards a few typed methods."""
