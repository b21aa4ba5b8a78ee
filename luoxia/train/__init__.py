"""The training core shared by every model family, and one short entry per family."""
