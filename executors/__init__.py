"""Executors: turning a function spec into work on a platform, and its result back."""
