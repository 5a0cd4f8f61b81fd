"""Generated protobuf and gRPC stubs of errand.v1 (do not edit; see tools/gen_stubs.py)."""
