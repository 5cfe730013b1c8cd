"""Cross-field pre-flight rules. Importing this package registers every rule."""
