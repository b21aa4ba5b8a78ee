"""Text (and later image) generation behind small interfaces that serving, safety and apps use."""
