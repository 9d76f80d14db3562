"""The infrastructure servers of the local stack: how each is installed,
configured, started as a plain process on 127.0.0.1 and checked for readiness.

Everything a server writes lives under the run directory; the big downloads
(Cassandra, Keycloak) are cached by Maven in its local repository, outside the
repo, so a second `make up` downloads nothing.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from services.common import health
from services.common.config import REPO_ROOT, Settings
from stack import rabbitmq_access
from stack.proc import Process, StackError

STACK_DIR = Path(__file__).resolve().parent


@dataclass
class Server:
    name: str
    port_keys: list[str]
    probe: Callable[[Settings], health.Probe]
    ready_timeout: float
    install: Callable[[Settings], None]
    configure: Callable[[Settings], None]
    process: Callable[[Settings], Process]
    # Other processes this server needs started before it (epmd for RabbitMQ).
    companions: list[Callable[[Settings], Process]] = field(default_factory=list)
    # Readiness when it differs from the health probe (before roles exist).
    ready: Callable[[Settings], health.Probe] | None = None

    def is_ready(self, settings: Settings) -> health.Probe:
        return (self.ready or self.probe)(settings)


def run_dir(settings: Settings, *parts: str) -> Path:
    return settings.run_dir.joinpath(*parts)


def _proc(settings: Settings, name: str, argv: list[str], **kwargs) -> Process:
    return Process(name=name, argv=argv, log=run_dir(settings, "logs", f"{name}.log"),
                   pid_file=run_dir(settings, "pids", f"{name}.pid"),
                   user=settings["EXCHANGE_SYSTEM_USER"], **kwargs)


def _owned_dir(settings: Settings, path: Path) -> Path:
    """A directory the servers' system user may write to."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(path, settings["EXCHANGE_SYSTEM_USER"], settings["EXCHANGE_SYSTEM_USER"])
    return path


def _chown_tree(settings: Settings, path: Path) -> None:
    if os.geteuid() == 0:
        user = settings["EXCHANGE_SYSTEM_USER"]
        subprocess.run(["chown", "-R", f"{user}:{user}", str(path)], check=True)


def _nothing(settings: Settings) -> None:
    return None


def binds_every_interface(settings: Settings) -> bool:
    """True in the compose stack's containers, where servers listen on every
    interface of their own network namespace; the local stack binds 127.0.0.1."""
    return settings.host == "0.0.0.0"


def _binary(*candidates: str, package: str) -> str:
    for pattern in candidates:
        for path in sorted(glob.glob(pattern), reverse=True):
            if os.access(path, os.X_OK):
                return path
        found = shutil.which(pattern)
        if found:
            return found
    raise StackError(f"{candidates[0]} not found: install the Debian package {package} "
                     f"(`make up` does this when run as root or with sudo)")


def _mvn(*args: str) -> None:
    if not shutil.which("mvn"):
        raise StackError("mvn not found: install the Debian package maven")
    result = subprocess.run(["mvn", "-B", "-q", *args], capture_output=True, text=True)
    if result.returncode != 0:
        tail = " ".join((result.stdout + result.stderr).split()[-40:])
        raise StackError(f"Maven could not fetch a server from Maven Central: {tail}")


# ---------------------------------------------------------------- PostgreSQL

def _pg_bin(name: str) -> str:
    return _binary(f"/usr/lib/postgresql/*/bin/{name}", name, package="postgresql")


def pg_socket_dir(settings: Settings) -> Path:
    return run_dir(settings, "postgres", "sock")


def _pg_configure(settings: Settings) -> None:
    data = run_dir(settings, "postgres", "data")
    _owned_dir(settings, data.parent)
    _owned_dir(settings, pg_socket_dir(settings))
    if (data / "PG_VERSION").exists():
        return
    _owned_dir(settings, data)
    os.chmod(data, 0o700)
    argv = [_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--encoding=UTF8",
            "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256"]
    user = settings["EXCHANGE_SYSTEM_USER"] if os.geteuid() == 0 else None
    result = subprocess.run(argv, capture_output=True, text=True, user=user,
                            cwd=str(data.parent))
    if result.returncode != 0:
        raise StackError(f"initdb failed: {result.stderr.strip().splitlines()[-1:]}")
    if binds_every_interface(settings):
        # A container (docker/Dockerfile): clients are the other containers of its network.
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write("host all all samenet scram-sha-256\n")


def pg_admin_connect(settings: Settings, dbname: str = "postgres"):
    """The cluster's superuser over the private unix socket (trust, local only)."""
    import psycopg
    return psycopg.connect(host=str(pg_socket_dir(settings)), port=settings["EXCHANGE_POSTGRES_PORT"],
                           user="postgres", dbname=dbname, connect_timeout=2, autocommit=True)


def _pg_ready(settings: Settings) -> health.Probe:
    def check():
        with pg_admin_connect(settings) as conn:
            conn.execute("SELECT 1")
    return health.timed("postgresql", check)


def _pg_process(settings: Settings) -> Process:
    data = run_dir(settings, "postgres", "data")
    return _proc(settings, "postgresql", [
        _pg_bin("postgres"), "-D", str(data),
        "-c", f"port={settings['EXCHANGE_POSTGRES_PORT']}",
        "-c", f"listen_addresses={settings.host}",
        "-c", f"unix_socket_directories={pg_socket_dir(settings)}",
        "-c", "max_connections=300",
        "-c", "shared_buffers=256MB",
        # Durability is the point of the ledger: fsync and synchronous commit stay on.
        "-c", "fsync=on", "-c", "synchronous_commit=on",
        # An exchange's statements are short and many: no parallel workers and
        # no JIT. A statement the planner misjudges as large (a new market's
        # journal tail read against the statistics of a market with millions
        # of rows) launched two worker processes per call, about 20 ms and a
        # fork's kernel time each, and a generic plan costed above
        # jit_above_cost spent 13-18 ms compiling: at 1,000 orders/s over 4
        # markets that saturated the machine (bench/README.md, session 16).
        # A reporting query that wants them can SET LOCAL them.
        "-c", "max_parallel_workers_per_gather=0", "-c", "jit=off",
        "-c", "log_min_messages=warning",
        # Per-statement cost (calls, time, rows), read by bench/order_path_bench.py;
        # the view is made in the postgres database by stack/prepare.py.
        "-c", "shared_preload_libraries=pg_stat_statements",
    ], cwd=data.parent)


# ---------------------------------------------------------------- RabbitMQ

def _rabbit_env(settings: Settings) -> dict[str, str]:
    base = run_dir(settings, "rabbitmq")
    return {
        "RABBITMQ_NODENAME": settings["EXCHANGE_RABBITMQ_NODENAME"],
        # A node named by its address (exchange@169.254.100.11) needs long names.
        "RABBITMQ_USE_LONGNAME": "true" if "." in settings["EXCHANGE_RABBITMQ_NODENAME"] else "false",
        "RABBITMQ_NODE_IP_ADDRESS": settings.host,
        "RABBITMQ_NODE_PORT": settings["EXCHANGE_RABBITMQ_PORT"],
        "RABBITMQ_DIST_PORT": settings["EXCHANGE_RABBITMQ_DIST_PORT"],
        "ERL_EPMD_PORT": settings["EXCHANGE_EPMD_PORT"],
        "ERL_EPMD_ADDRESS": settings.host,
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
        "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
        "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
        "HOME": str(base / "home"),
    }


def _rabbit_configure(settings: Settings) -> None:
    base = _owned_dir(settings, run_dir(settings, "rabbitmq"))
    for sub in ("mnesia", "log", "home"):
        _owned_dir(settings, base / sub)
    (base / "rabbitmq-env.conf").write_text("# private node: ignore /etc/rabbitmq\n")
    # rabbitmq_prometheus serves /metrics on its own port (stack/monitoring.py).
    (base / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")
    # The Erlang distribution port would otherwise listen on every interface.
    octets = ",".join(settings.host.split("."))
    # A cluster's nodes notice a lost peer after net_ticktime (Erlang's 60 s by
    # default, during which publishes to a queue led there wait): 10 s.
    ticktime = ", {net_ticktime, 10}" if _rabbit_cluster_lines(settings) else ""
    (base / "advanced.config").write_text(
        f"[{{kernel, [{{inet_dist_use_interface, {{{octets}}}}}{ticktime}]}}].\n")
    (base / "rabbitmq.conf").write_text("\n".join([
        f"listeners.tcp.default = {settings.host}:{settings['EXCHANGE_RABBITMQ_PORT']}",
        "loopback_users = none",
        f"default_vhost = {settings['EXCHANGE_RABBITMQ_VHOST']}",
        f"default_user = {settings['EXCHANGE_RABBITMQ_USER']}",
        f"default_pass = {settings['EXCHANGE_RABBITMQ_PASSWORD']}",
        "default_user_tags.administrator = true",
        "default_permissions.configure = .*",
        "default_permissions.read = .*",
        "default_permissions.write = .*",
        # Every principal's user and permissions (stack/rabbitmq_access.py),
        # imported at each boot; stack/prepare.py imports them into a running node.
        f"load_definitions = {rabbitmq_access.write_definitions(settings, base / 'definitions.json')}",
        "log.console = true",
        "log.console.level = warning",
        "log.file = false",
        *monitoring.rabbitmq_config_lines(settings),
        *_rabbit_cluster_lines(settings),
        "",
    ]))
    cookie = settings["EXCHANGE_RABBITMQ_ERLANG_COOKIE"]
    if cookie:  # every node of a cluster shares it; a single node lets Erlang make one
        path = base / "home" / ".erlang.cookie"
        if not path.exists() or path.read_text() != cookie:
            path.write_text(cookie)
        os.chmod(path, 0o400)
    _chown_tree(settings, base)


def _rabbit_cluster_lines(settings: Settings) -> list[str]:
    """Peer discovery from the node list (EXCHANGE_RABBITMQ_CLUSTER_NODES, empty
    for a single node); the side of a partition without a majority pauses
    instead of accepting writes the majority never sees."""
    nodes = [n for n in settings["EXCHANGE_RABBITMQ_CLUSTER_NODES"].split(",") if n.strip()]
    if not nodes:
        return []
    return ["cluster_formation.peer_discovery_backend = classic_config",
            *(f"cluster_formation.classic_config.nodes.{i} = {n.strip()}"
              for i, n in enumerate(nodes, 1)),
            "cluster_partition_handling = pause_minority"]


def _epmd_process(settings: Settings) -> Process:
    # Started by us (not by rabbitmq-server's `epmd -daemon`, which would detach
    # from our process group and outlive `make down`).
    epmd = _binary("/usr/lib/erlang/erts-*/bin/epmd", "epmd", package="erlang-base")
    # epmd adds the loopback address to -address itself, so a wildcard beside it
    # fails ("already running"); without -address it listens on every interface.
    address = [] if binds_every_interface(settings) else ["-address", settings.host]
    return _proc(settings, "epmd", [epmd, "-port", settings["EXCHANGE_EPMD_PORT"], *address],
                 env={"HOME": str(run_dir(settings, "rabbitmq", "home"))})


def _rabbit_process(settings: Settings) -> Process:
    """The node. RUNNING_UNDER_SYSTEMD (read by rabbitmq-server only) makes the
    script exec the Erlang VM instead of running it as a child and waiting, so
    the recorded pid is beam.smp's: a kill -9 of it kills the node. Without it
    the pid was the shell's, and a kill -9 left the node running orphaned,
    holding its ports, invisible to `make status` and `make down` (the zones'
    supervisord had the same fault: ansible/roles/rabbitmq). A SIGTERM (`make
    down`) stops the VM gracefully itself."""
    server = _binary("/usr/lib/rabbitmq/bin/rabbitmq-server", package="rabbitmq-server")
    return _proc(settings, "rabbitmq", [server],
                 env={**_rabbit_env(settings), "RUNNING_UNDER_SYSTEMD": "true"},
                 cwd=run_dir(settings, "rabbitmq"))


def rabbitmqctl(settings: Settings, *args: str) -> str:
    ctl = _binary("/usr/lib/rabbitmq/bin/rabbitmqctl", package="rabbitmq-server")
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", **_rabbit_env(settings)}
    user = settings["EXCHANGE_SYSTEM_USER"] if os.geteuid() == 0 else None
    result = subprocess.run([ctl, "--quiet", *args], env=env, capture_output=True, text=True,
                            user=user, cwd=str(run_dir(settings, "rabbitmq")))
    if result.returncode != 0:
        raise StackError(f"rabbitmqctl {' '.join(args)}: {result.stderr.strip()[:300]}")
    return result.stdout


# ---------------------------------------------------------------- Memcached

def _memcached_process(settings: Settings) -> Process:
    return _proc(settings, "memcached", [
        _binary("/usr/bin/memcached", "memcached", package="memcached"),
        "-l", settings.host, "-p", settings["EXCHANGE_MEMCACHED_PORT"], "-U", "0",
        "-m", "128", "-c", "2048"])


# ---------------------------------------------------------------- Cassandra

def cassandra_home(settings: Settings) -> Path:
    return run_dir(settings, "opt", f"cassandra-{settings['EXCHANGE_CASSANDRA_VERSION']}")


def _cassandra_install(settings: Settings) -> None:
    lib = cassandra_home(settings) / "lib"
    stamp = lib / ".complete"
    if stamp.exists():
        return
    lib.mkdir(parents=True, exist_ok=True)
    _mvn("-f", str(STACK_DIR / "cassandra-pom.xml"), "dependency:copy-dependencies",
         f"-Dcassandra.version={settings['EXCHANGE_CASSANDRA_VERSION']}",
         f"-DoutputDirectory={lib}", "-DincludeScope=runtime")
    stamp.write_text(settings["EXCHANGE_CASSANDRA_VERSION"])


def cassandra_seeds(settings: Settings) -> list[str]:
    """The storage addresses of a cluster's seed nodes (EXCHANGE_CASSANDRA_SEEDS,
    comma-separated); empty for the single local node, its own seed."""
    return [s.strip() for s in settings["EXCHANGE_CASSANDRA_SEEDS"].split(",") if s.strip()]


def _cassandra_configure(settings: Settings) -> None:
    base = _owned_dir(settings, run_dir(settings, "cassandra"))
    for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "logs", "conf"):
        _owned_dir(settings, base / sub)
    host = settings.host
    # Cassandra refuses a wildcard listen address; a single node's storage port
    # only talks to the node itself.
    storage_host = "127.0.0.1" if binds_every_interface(settings) else host
    config = {
        "cluster_name": "exchange-local",
        "num_tokens": 16,
        "allocate_tokens_for_local_replication_factor": 1,
        "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
        "data_file_directories": [str(base / "data")],
        "commitlog_directory": str(base / "commitlog"),
        "saved_caches_directory": str(base / "saved_caches"),
        "hints_directory": str(base / "hints"),
        "cdc_raw_directory": str(base / "cdc_raw"),
        "commitlog_sync": "periodic",
        "commitlog_sync_period": "10000ms",
        "seed_provider": [{
            "class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
            "parameters": [{"seeds": ",".join(
                f"{seed}:{settings['EXCHANGE_CASSANDRA_STORAGE_PORT']}"
                for seed in cassandra_seeds(settings) or [storage_host])}],
        }],
        "listen_address": storage_host,
        "rpc_address": host,
        "storage_port": settings.int("EXCHANGE_CASSANDRA_STORAGE_PORT"),
        "native_transport_port": settings.int("EXCHANGE_CASSANDRA_PORT"),
        "start_native_transport": True,
        # A node with a rack (Ansible's three-zones: one rack per zone) gossips its
        # data centre and rack, which NetworkTopologyStrategy spreads replicas over.
        "endpoint_snitch": "GossipingPropertyFileSnitch" if settings["EXCHANGE_CASSANDRA_RACK"]
                           else "SimpleSnitch",
        "authenticator": "AllowAllAuthenticator",
        "authorizer": "AllowAllAuthorizer",
        "storage_compatibility_mode": "NONE",
        "concurrent_reads": 16,
        "concurrent_writes": 32,
    }
    if binds_every_interface(settings):
        config["broadcast_rpc_address"] = storage_host  # required beside a wildcard rpc_address
    # JSON is valid YAML, and needs no YAML writer here.
    (base / "conf" / "cassandra.yaml").write_text(json.dumps(config, indent=1))
    if settings["EXCHANGE_CASSANDRA_RACK"]:
        (base / "conf" / "cassandra-rackdc.properties").write_text(
            f"dc={settings['EXCHANGE_CASSANDRA_DC']}\nrack={settings['EXCHANGE_CASSANDRA_RACK']}\n")
    (base / "conf" / "logback.xml").write_text(
        '<configuration>\n'
        '  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">\n'
        '    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>\n'
        '  </appender>\n'
        '  <root level="INFO"><appender-ref ref="STDOUT"/></root>\n'
        '  <logger name="org.apache.cassandra" level="INFO"/>\n'
        '</configuration>\n')


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise StackError("Java is missing: install the Debian package openjdk-17-jre-headless")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < 17:
        raise StackError(f"Java 17 or newer is needed, found: {out.splitlines()[:1]}; "
                         "install openjdk-17-jre-headless")
    return java


def _cassandra_process(settings: Settings) -> Process:
    base = run_dir(settings, "cassandra")
    lib = cassandra_home(settings) / "lib"
    jamm = sorted(lib.glob("jamm-*.jar"))
    options = (STACK_DIR / "cassandra-jvm17.options").read_text().split()
    heap = settings["EXCHANGE_CASSANDRA_HEAP"]
    argv = [_java(), f"-Xms{heap}", f"-Xmx{heap}", "-Xss256k", *options,
            *(f"-javaagent:{j}" for j in jamm[:1]),
            *monitoring.cassandra_agent_args(settings),
            # JMX bound to the loopback (nodetool snapshots), where asked for.
            *([f"-Dcassandra.jmx.local.port={settings['EXCHANGE_CASSANDRA_JMX_PORT']}",
               "-Dcom.sun.management.jmxremote.authenticate=false"]
              if settings["EXCHANGE_CASSANDRA_JMX_PORT"] else []),
            f"-Dcassandra.config=file://{base}/conf/cassandra.yaml",
            f"-Dlogback.configurationFile=file://{base}/conf/logback.xml",
            f"-Dcassandra.logdir={base}/logs", f"-Dcassandra.storagedir={base}/data",
            "-Dcassandra-foreground=yes",
            # A single local node: nothing to wait for in gossip (a cluster's
            # nodes must learn the ring before they own a part of it).
            *([] if cassandra_seeds(settings) else
              ["-Dcassandra.skip_wait_for_gossip_to_settle=0", "-Dcassandra.ring_delay_ms=0"]),
            "-cp", f"{base}/conf:{lib}/*", "org.apache.cassandra.service.CassandraDaemon"]
    return _proc(settings, "cassandra", argv, cwd=base)


# ---------------------------------------------------------------- Keycloak

def keycloak_home(settings: Settings) -> Path:
    return run_dir(settings, "opt", f"keycloak-{settings['EXCHANGE_KEYCLOAK_VERSION']}")


def _keycloak_install(settings: Settings) -> None:
    home = keycloak_home(settings)
    if (home / "bin" / "kc.sh").exists():
        return
    version = settings["EXCHANGE_KEYCLOAK_VERSION"]
    opt = run_dir(settings, "opt")
    opt.mkdir(parents=True, exist_ok=True)
    _mvn("dependency:copy", f"-Dartifact=org.keycloak:keycloak-quarkus-dist:{version}:tar.gz",
         f"-DoutputDirectory={opt}")
    archive = opt / f"keycloak-quarkus-dist-{version}.tar.gz"
    with tarfile.open(archive) as tar:
        # Extraction filters came with Python 3.11.4; Debian 12's python3 is 3.11.2.
        tar.extractall(opt, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    archive.unlink()
    _chown_tree(settings, home)


def render_realm(settings: Settings) -> str:
    template = (REPO_ROOT / "keycloak" / "exchange-realm.json").read_text()
    rendered = re.sub(r"\$\{(EXCHANGE_[A-Z0-9_]+)\}", lambda m: settings[m.group(1)], template)
    json.loads(rendered)
    return rendered


def _keycloak_configure(settings: Settings) -> None:
    imports = keycloak_home(settings) / "data" / "import"
    imports.mkdir(parents=True, exist_ok=True)
    (imports / "exchange-realm.json").write_text(render_realm(settings))
    _chown_tree(settings, keycloak_home(settings) / "data")


def _keycloak_cluster_env(settings: Settings) -> dict[str, str]:
    """A production node on the shared database: every node that uses it is
    one cluster (Keycloak 26's default `ispn` cache with the `jdbc-ping`
    stack: the nodes find each other in a table of that database)."""
    if not settings.get("EXCHANGE_KEYCLOAK_DB"):
        return {}
    if settings["EXCHANGE_KEYCLOAK_DB"] != "postgres":
        raise StackError(f"EXCHANGE_KEYCLOAK_DB is {settings['EXCHANGE_KEYCLOAK_DB']!r}: "
                         "empty (development node) or postgres")
    return {
        "KC_DB": "postgres",
        "KC_DB_URL_HOST": settings.server_host("postgres"),
        "KC_DB_URL_PORT": settings["EXCHANGE_POSTGRES_PORT"],
        "KC_DB_URL_DATABASE": settings["EXCHANGE_KEYCLOAK_DB_NAME"],
        "KC_DB_USERNAME": settings["EXCHANGE_KEYCLOAK_DB_USER"],
        "KC_DB_PASSWORD": settings["EXCHANGE_KEYCLOAK_DB_PASSWORD"],
        "KC_CACHE": "ispn",
        "KC_CACHE_STACK": "jdbc-ping",
        "KC_CACHE_EMBEDDED_NETWORK_BIND_ADDRESS": settings.host,
        # Behind HAProxy, plain HTTP on a private network; the issuer follows
        # the address clients use (the zone's HAProxy), the same on every node.
        "KC_HTTP_ENABLED": "true",
        "KC_HOSTNAME_STRICT": "false",
        # /health/ready on the management port: HAProxy's check of each node.
        "KC_HEALTH_ENABLED": "true",
    }


def _keycloak_process(settings: Settings) -> Process:
    home = keycloak_home(settings)
    _java()
    cluster = _keycloak_cluster_env(settings)
    return _proc(settings, "keycloak", [
        str(home / "bin" / "kc.sh"), "start" if cluster else "start-dev", f"--http-host={settings.host}",
        f"--http-port={settings['EXCHANGE_KEYCLOAK_PORT']}",
        f"--http-management-port={settings['EXCHANGE_KEYCLOAK_MANAGEMENT_PORT']}",
        "--import-realm",
    ], cwd=home, env={
        **cluster,
        "KC_BOOTSTRAP_ADMIN_USERNAME": settings["EXCHANGE_KEYCLOAK_ADMIN"],
        # /metrics on the management port, scraped by Prometheus.
        "KC_METRICS_ENABLED": "true",
        "KC_BOOTSTRAP_ADMIN_PASSWORD": settings["EXCHANGE_KEYCLOAK_ADMIN_PASSWORD"],
        "JAVA_OPTS_KC_HEAP": f"-Xms64m -Xmx{settings['EXCHANGE_KEYCLOAK_HEAP']}",
        "JAVA_HOME": str(Path(os.path.realpath(_java())).parents[1]),
    })


SERVERS: list[Server] = [
    Server("postgresql", ["EXCHANGE_POSTGRES_PORT"], health.probe_postgres, 60,
           _nothing, _pg_configure, _pg_process, ready=_pg_ready),
    Server("rabbitmq", ["EXCHANGE_RABBITMQ_PORT", "EXCHANGE_RABBITMQ_DIST_PORT",
                        "EXCHANGE_EPMD_PORT"], health.probe_rabbitmq, 90,
           _nothing, _rabbit_configure, _rabbit_process, companions=[_epmd_process]),
    Server("memcached", ["EXCHANGE_MEMCACHED_PORT"], health.probe_memcached, 20,
           _nothing, _nothing, _memcached_process),
    Server("cassandra", ["EXCHANGE_CASSANDRA_PORT", "EXCHANGE_CASSANDRA_STORAGE_PORT"],
           health.probe_cassandra, 240, _cassandra_install, _cassandra_configure,
           _cassandra_process),
    Server("keycloak", ["EXCHANGE_KEYCLOAK_PORT", "EXCHANGE_KEYCLOAK_MANAGEMENT_PORT"],
           health.probe_keycloak, 300, _keycloak_install, _keycloak_configure,
           _keycloak_process),
]


# Prometheus, Alertmanager and the exporters join SERVERS (after the servers
# they watch) when stack.monitoring loads; it uses the helpers above.
from stack import monitoring  # noqa: E402,F401
