"""Generators that read the machine table: diagrams, the C table."""
