"""Corpus reading, cleaning, deduplication, tokenizers and packed token files."""
