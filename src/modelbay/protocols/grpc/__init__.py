"""Open Inference Protocol v2 over gRPC: generated wire types and their numpy codec."""
