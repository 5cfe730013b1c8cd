"""Model loading helpers and the built-in offline models (see llmpipe.models.tiny)."""
