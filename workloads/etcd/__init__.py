"""Real etcd as a target: its JSON-gateway client (``client``) and a cluster of ``etcd``
processes on 127.0.0.1 under faults (``cluster``)."""
