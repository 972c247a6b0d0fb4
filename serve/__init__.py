"""kvcheck serve: a web UI over a run store and a key browser for a live cluster."""
