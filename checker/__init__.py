"""The checkers: history model and formats, linearizability, reports."""
