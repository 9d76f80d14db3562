"""Keycloak's role and database on the PostgreSQL leader, made once.

Run by roles/keycloak on a zone host before its Keycloak starts (Keycloak
creates its own tables, not the database). Connects as PostgreSQL's
superuser through the host's HAProxy (the leader); prints `created ...`
when it made something, nothing otherwise. Arguments: the settings come
from the environment (EXCHANGE_* of config/defaults.env, as the role sets
them) plus PGPASSWORD of the superuser.
"""
import os
import sys

import psycopg
from psycopg import sql

sys.path.insert(0, os.environ["EXCHANGE_REPO"])
from services.common.config import load_settings  # noqa: E402

settings = load_settings()
user, password = settings["EXCHANGE_KEYCLOAK_DB_USER"], settings["EXCHANGE_KEYCLOAK_DB_PASSWORD"]
database = settings["EXCHANGE_KEYCLOAK_DB_NAME"]
dsn = (f"host={settings.server_host('postgres')} port={settings['EXCHANGE_POSTGRES_PORT']} "
       "user=postgres dbname=postgres connect_timeout=5")
with psycopg.connect(dsn, autocommit=True) as conn:
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
    # ALTER on every run: a rotated password reaches the server.
    conn.execute(sql.SQL(("ALTER" if exists else "CREATE") + " ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(user), sql.Literal(password)))
    if not exists:
        print(f"created role {user}")
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(database), sql.Identifier(user)))
        print(f"created database {database}")
