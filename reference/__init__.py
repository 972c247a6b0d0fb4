"""The system under test: an etcd-like key-value store on Raft."""
