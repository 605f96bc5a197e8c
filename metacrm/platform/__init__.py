"""The web platform: FastAPI app, auth, tenants, REST API, CLI and settings."""
