"""Generated protobuf and gRPC stubs for proto/edged/v1 (do not edit: run scripts/gen_proto)."""
