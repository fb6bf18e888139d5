"""Operations of the registry service: metrics, request ids and access logs, readiness."""
