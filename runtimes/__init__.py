"""Runners, the capability table, comparison and the embedding API.

Importing this package needs numpy alone; each runner module imports its own runtime when used.
"""
