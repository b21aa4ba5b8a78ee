"""Retrieval for every application: documents in, the best matches for a query out (dense + BM25)."""
