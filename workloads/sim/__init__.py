"""The deterministic simulation target: the real node code over simulated network, disk and
clocks, all in one ``trio.run`` in virtual time (``scheduler.SimScheduler``, trio's clock for the run)."""
