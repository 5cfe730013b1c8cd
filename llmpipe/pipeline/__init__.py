"""The pipeline engine: stage graph, fingerprints, the content-addressed store, the runner."""
