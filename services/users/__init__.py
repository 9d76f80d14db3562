"""The users service: identity (Keycloak), account states, partner API keys."""
