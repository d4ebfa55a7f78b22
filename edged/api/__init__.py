"""The local gRPC API: listeners, the Inference servicer, proto <-> domain conversion, and the one error map."""
