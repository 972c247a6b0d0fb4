"""The local target: the reference store as real processes on 127.0.0.1, with faults through
signals and a fault-injecting TCP proxy on the peer links."""

from kvcheck.workloads.local.cluster import LocalCluster, execute_local

__all__ = ["LocalCluster", "execute_local"]
