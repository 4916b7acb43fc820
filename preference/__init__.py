"""Preference models behind one interface, and K x K matrices built from them."""
