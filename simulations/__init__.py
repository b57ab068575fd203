"""Deterministic simulation of colonies: a seeded virtual clock and network driving real cores."""
