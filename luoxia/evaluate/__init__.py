"""Measuring models: perplexity and bits per character/byte, diversity and repetition of samples."""
