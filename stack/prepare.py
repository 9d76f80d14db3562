"""Prepare the running servers: roles, databases, vhosts, schemas, realm.

Every step is idempotent; `make up` runs all of them each time.
"""
from __future__ import annotations

from services.common import migrations
from services.common.config import REPO_ROOT, Settings
from stack import rabbitmq_access, servers

# Tests run in namespaces of their own (services.common.config.DEFAULT_TEST_SUFFIX).


def postgres(settings: Settings) -> list[str]:
    from psycopg import sql
    user, password = settings["EXCHANGE_POSTGRES_USER"], settings["EXCHANGE_POSTGRES_PASSWORD"]
    done = []
    with servers.pg_admin_connect(settings) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(sql.SQL(verb + " ROLE {} LOGIN CREATEDB PASSWORD {}").format(
            sql.Identifier(user), sql.Literal(password)))
        for db in [settings["EXCHANGE_POSTGRES_DB"]] + [
                settings["EXCHANGE_POSTGRES_DB"] + suffix for suffix in settings.test_suffixes]:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(db), sql.Identifier(user)))
                done.append(f"database {db} created")
        done.extend(postgres_roles(settings, conn))
        # Needs the library preloaded (stack/servers.py); a server started
        # before that setting has no such library yet: skipped until restarted.
        if conn.execute("SELECT 'pg_stat_statements' = ANY(regexp_split_to_array("
                        "current_setting('shared_preload_libraries'), '\\s*,\\s*'))").fetchone()[0]:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    import psycopg
    with psycopg.connect(settings.postgres_dsn()) as conn:
        applied = migrations.apply_sql_migrations(conn, migrations.service_sql_migrations())
    done.extend(f"migration {m.label}" for m in applied)
    return done


def postgres_principals() -> list[str]:
    """Who connects to PostgreSQL as a role of its own: every service, and
    the gateway (the catalogue, its health probe)."""
    from services.common.config import service_names
    return service_names() + ["gateway"]


def postgres_roles(settings: Settings, conn) -> list[str]:
    """Each principal's login role, named after it (the migrations grant it
    what it needs), its search path its own schema then public."""
    from psycopg import sql
    done = []
    for principal in postgres_principals():
        role, password = settings.postgres_login(principal)
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        conn.execute(sql.SQL(("ALTER" if exists else "CREATE") + " ROLE {} LOGIN NOINHERIT PASSWORD {}")
                     .format(sql.Identifier(role), sql.Literal(password)))
        conn.execute(sql.SQL('ALTER ROLE {} SET search_path = "$user", public')
                     .format(sql.Identifier(role)))
        if not exists:
            done.append(f"role {role} created")
    return done


def rabbitmq(settings: Settings) -> list[str]:
    """The vhosts, and every principal's user and permissions
    (stack/rabbitmq_access.py), imported into the running node: idempotent,
    and a changed password or permission takes effect without a restart."""
    done = []
    vhosts = set(servers.rabbitmqctl(settings, "list_vhosts", "--no-table-headers").split())
    users = set(servers.rabbitmqctl(settings, "list_users", "--no-table-headers").split())
    path = rabbitmq_access.write_definitions(
        settings, servers.run_dir(settings, "rabbitmq", "definitions.json"))
    servers._chown_tree(settings, path)  # rabbitmqctl runs as the servers' user
    servers.rabbitmqctl(settings, "import_definitions", str(path))
    done += [f"vhost {v} created" for v in rabbitmq_access.vhosts(settings) if v not in vhosts]
    done += [f"user {u} created" for u in rabbitmq_access.grants(settings) if u not in users]
    return done


def cassandra_session(settings: Settings):
    from cassandra.cluster import Cluster
    cluster = Cluster([settings.server_host("cassandra")], port=settings.int("EXCHANGE_CASSANDRA_PORT"),
                      protocol_version=5, connect_timeout=5)
    session = cluster.connect()
    # Schema changes wait for every replica's agreement: in a three-node
    # cluster on a loaded machine a CREATE took longer than the driver's 10 s
    # (the three-zones play stopped on OperationTimedOut). Each is idempotent.
    session.default_timeout = 60
    return cluster, session


def cql_migrations() -> list[migrations.Migration]:
    return migrations.read_migrations("cql", REPO_ROOT / "cql", "cql")


def cassandra(settings: Settings) -> list[str]:
    cluster, session = cassandra_session(settings)
    try:
        done = []
        for keyspace in [settings["EXCHANGE_CASSANDRA_KEYSPACE"]] + [
                settings["EXCHANGE_CASSANDRA_KEYSPACE"] + suffix for suffix in settings.test_suffixes]:
            applied = migrations.apply_cql_migrations(
                session, keyspace, settings["EXCHANGE_CASSANDRA_REPLICATION"], cql_migrations())
            done.extend(f"cql {keyspace} {m.version:03d}_{m.name}" for m in applied)
        return done
    finally:
        cluster.shutdown()


def keycloak(settings: Settings) -> list[str]:
    """The realm is imported by Keycloak at start (`--import-realm`, skipped when
    it exists); here we only confirm the backend client's service account works."""
    import requests
    response = requests.post(
        f"{settings.keycloak_issuer}/protocol/openid-connect/token",
        data={"grant_type": "client_credentials",
              "client_id": settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
              "client_secret": settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"]},
        timeout=10)
    if response.status_code != 200:
        raise servers.StackError(
            f"Keycloak realm is not as expected (backend client token: HTTP "
            f"{response.status_code}); `make clean && make up` re-imports it")
    return web_client_redirects(settings)


def web_client_origins(settings: Settings) -> list[str]:
    """Where the trader web client is served (by the gateway, at /) and may
    come back to after Keycloak's login page."""
    port = settings["EXCHANGE_GATEWAY_PORT"]
    return [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]


def web_client_redirects(settings: Settings) -> list[str]:
    """A realm imported before the web client was served by the gateway lacks
    its redirect URIs (the import never runs again): add them through the
    admin API, idempotently (nothing is written when they are there)."""
    import requests
    base = settings.keycloak_url
    token = requests.post(
        f"{base}/realms/master/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": "admin-cli",
              "username": settings["EXCHANGE_KEYCLOAK_ADMIN"],
              "password": settings["EXCHANGE_KEYCLOAK_ADMIN_PASSWORD"]}, timeout=10)
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    clients = f"{base}/admin/realms/{settings['EXCHANGE_KEYCLOAK_REALM']}/clients"
    found = requests.get(clients, params={"clientId": settings["EXCHANGE_KEYCLOAK_WEB_CLIENT_ID"]},
                         headers=headers, timeout=10)
    found.raise_for_status()
    if not found.json():
        raise servers.StackError("Keycloak realm has no web client; `make clean && make up` "
                                 "re-imports it")
    client = found.json()[0]
    redirects = list(client.get("redirectUris") or [])
    missing = [f"{origin}/*" for origin in web_client_origins(settings)
               if f"{origin}/*" not in redirects]
    if not missing:
        return []
    client["redirectUris"] = redirects + missing
    response = requests.put(f"{clients}/{client['id']}", json=client, headers=headers, timeout=10)
    response.raise_for_status()
    return [f"web client may now return to {', '.join(missing)}"]


STEPS = {"postgresql": postgres, "rabbitmq": rabbitmq, "cassandra": cassandra,
         "keycloak": keycloak}
