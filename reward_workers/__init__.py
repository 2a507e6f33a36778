"""The reward service: gRPC reward workers, dynamic batching, scorers and their backends."""
