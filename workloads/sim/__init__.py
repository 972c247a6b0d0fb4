"""The deterministic simulation target: the real node code over simulated network, disk and
clocks, all in one ``trio.run`` under ``MockClock(autojump_threshold=0)``."""
