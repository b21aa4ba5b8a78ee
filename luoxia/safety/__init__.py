"""Trust: moderation, PII redaction, watermarking, provenance and the audit trail."""
