"""The harness: generators, faults, targets and the recorder."""
