"""Content codings: which one a client accepts, and encoding responses on the way out."""
