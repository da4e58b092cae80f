"""The streaming run: read -> normalize -> score -> look up -> write, chunk by chunk."""
