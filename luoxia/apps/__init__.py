"""Applications built on generation, encoders, retrieval and the guard: `support` (customer service
with retrieval and hand-off) and `ask` (knowledge-grounded answers with citations)."""
