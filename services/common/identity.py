"""Keycloak clients built from settings (python-keycloak): the backend's
confidential client for tokens, and its service account for the Admin API."""
from __future__ import annotations

from keycloak import KeycloakAdmin, KeycloakOpenID, KeycloakOpenIDConnection

from services.common.config import Settings


def backend_openid(settings: Settings) -> KeycloakOpenID:
    return KeycloakOpenID(server_url=settings.keycloak_url,
                          realm_name=settings["EXCHANGE_KEYCLOAK_REALM"],
                          client_id=settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
                          client_secret_key=settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"],
                          timeout=10)


def backend_admin(settings: Settings) -> KeycloakAdmin:
    """Admin API as the backend client's service account (manage-users only)."""
    connection = KeycloakOpenIDConnection(
        server_url=settings.keycloak_url, realm_name=settings["EXCHANGE_KEYCLOAK_REALM"],
        user_realm_name=settings["EXCHANGE_KEYCLOAK_REALM"],
        client_id=settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
        client_secret_key=settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"], timeout=10)
    return KeycloakAdmin(connection=connection)
