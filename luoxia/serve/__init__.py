"""The OpenAI-compatible HTTP server and the web studio (`luoxia serve`)."""
