"""The meta-filesystem: chunking, content addressing, the chunk store and the chunk-exchange core."""
