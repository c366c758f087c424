"""The local "production" stack of a service: a cache, stable replicas, at most one canary,
and HAProxy in front splitting traffic by weight; all on one Docker network, the proxy's port
published on 127.0.0.1 only.

Every operation reads the stack's state from Docker (container labels) and is idempotent, so a
re-run after a crash carries on from what is there: a second canary is never started (a canary
of another version is rolled back first), and stable replicas are replaced one at a time, each
only after the other is healthy, so at least one healthy stable replica is always serving.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import docker
import docker.errors
from docker.models.containers import Container

from prefect_agentic.environments.images import RUNTIME_IMAGE
from prefect_agentic.environments.labels import (
    LABEL_OWNER,
    LABEL_VERSION,
    STACK,
    labels,
    owner_is_gone,
    remove_environment,
)
from prefect_agentic.errors import ToolError

MEMORY = "256m"
PROXY_PORT = 8080
ADMIN_PORT = 9999
BACKEND = "app"
PROXY_START = 'printf "%s" "$HAPROXY_CFG" > /tmp/haproxy.cfg && exec haproxy -db -f /tmp/haproxy.cfg'


class StackError(ToolError):
    """The stack is missing, or one of its parts did not become healthy in time."""


HAPROXY_CFG = """\
global
  stats socket ipv4@127.0.0.1:{admin} level admin
defaults
  mode http
  timeout connect 1s
  timeout client 10s
  timeout server 10s
  retries 3
  option redispatch 1
resolvers docker
  nameserver dns 127.0.0.11:53
  hold valid 1s
  hold nx 1s
  hold obsolete 1s
  timeout resolve 500ms
  timeout retry 500ms
frontend web
  bind :{port}
  default_backend {backend}
backend {backend}
  balance roundrobin
  option httpchk GET /health
  http-check expect status 200
  default-server inter 500ms fall 2 rise 2 resolvers docker init-addr last,libc,none check
{servers}
"""

# Fetch /health and /metrics of some hosts in one go (run inside the proxy container).
_PROBE = """
import json, sys, urllib.request, urllib.error
out = {}
for host in sys.argv[1:]:
    got = {}
    for path in ("health", "metrics"):
        try:
            with urllib.request.urlopen(f"http://{host}:8000/{path}", timeout=2) as r:
                got[path] = [r.status, r.read().decode()]
        except urllib.error.HTTPError as e:
            got[path] = [e.code, ""]
        except OSError as e:
            got[path] = [0, str(e)]
    out[host] = got
print(json.dumps(out))
"""

_ADMIN = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.argv[2].encode() + b"\\n")
print(s.makefile().read())
"""


@dataclass(frozen=True)
class StackState:
    """What runs now: the stable version and replicas, the canary (if any), the canary's share."""

    stable_version: str | None
    stable: list[str]
    canary_version: str | None
    canary_weight: int
    proxy_url: str | None


class Stack:
    """One service's stack, named ``name`` (containers ``NAME-stable-1``, ``NAME-canary``, ...)."""

    def __init__(self, client: docker.DockerClient, name: str, replicas: int = 2) -> None:
        if not 1 <= replicas <= 2:
            raise StackError("a stack has 1 or 2 stable replicas (HAProxy weights are at most 256)")
        self.client, self.name, self.replicas = client, name, replicas
        self.network = f"{name}-net"

    # ---- reading the state -------------------------------------------------------------

    def container(self, suffix: str) -> Container | None:
        try:
            return self.client.containers.get(f"{self.name}-{suffix}")
        except docker.errors.NotFound:
            return None

    def state(self) -> StackState:
        proxy = self.container("proxy")
        if proxy is None:
            raise StackError(f"stack '{self.name}' is not up (no {self.name}-proxy); start it with `agentic canaries up`")
        stable = [c for i in range(1, self.replicas + 1) if (c := self.container(f"stable-{i}")) is not None]
        canary = self.container("canary")
        weights = self.weights()
        share = weights.get("canary", 0) * 100 // max(1, weights.get("canary", 0) + sum(
            weights.get(f"stable-{i}", 0) for i in range(1, self.replicas + 1)))
        ports = proxy.attrs["NetworkSettings"]["Ports"].get(f"{PROXY_PORT}/tcp") or []
        return StackState(
            stable_version=stable[0].labels.get(LABEL_VERSION) if stable else None,
            stable=[c.name for c in stable],
            canary_version=canary.labels.get(LABEL_VERSION) if canary else None,
            canary_weight=share if canary else 0,
            proxy_url=f"http://127.0.0.1:{ports[0]['HostPort']}" if ports else None)

    def orphaned_canary(self) -> bool:
        """Whether the stack has a canary whose deploying process is gone (a killed run never re-run,
        or a run suspended at a promotion gate): nothing watches it any more."""
        canary = self.container("canary")
        return canary is not None and owner_is_gone(canary.labels.get(LABEL_OWNER, ""))

    def weights(self) -> dict[str, int]:
        """Server name -> its current HAProxy weight."""
        rows = self.admin("show stat").splitlines()
        if not rows or not rows[0].startswith("# "):
            return {}
        header = rows[0][2:].split(",")
        found = {}
        for row in rows[1:]:
            cells = dict(zip(header, row.split(",")))
            if cells.get("pxname") == BACKEND and cells.get("svname") not in ("BACKEND", "FRONTEND", None):
                found[cells["svname"]] = int(cells.get("weight") or 0)
        return found

    def server_status(self) -> dict[str, str]:
        rows = self.admin("show stat").splitlines()
        header = rows[0][2:].split(",") if rows else []
        return {c["svname"]: c["status"] for row in rows[1:]
                if (c := dict(zip(header, row.split(",")))).get("pxname") == BACKEND
                and c.get("svname") not in ("BACKEND", "FRONTEND")}

    # ---- bringing it up ----------------------------------------------------------------

    def up(self, image: str, loadgen_rate: float | None = None, loadgen_total: int = 100_000) -> StackState:
        """Start whatever part is missing (cache, stable replicas, proxy, optional traffic)."""
        self._network()
        if self.container("cache") is None:
            self._run(RUNTIME_IMAGE, "cache", ["redis-server", "--save", "", "--appendonly", "no", "--protected-mode", "no"], user="redis")
        for i in range(1, self.replicas + 1):
            if self.container(f"stable-{i}") is None:
                self._run_service(image, f"stable-{i}", "stable")
        if self.container("proxy") is None:
            self._run(RUNTIME_IMAGE, "proxy", ["sh", "-c", PROXY_START],
                      environment={"HAPROXY_CFG": self._config()}, user="haproxy",
                      ports={f"{PROXY_PORT}/tcp": ("127.0.0.1", None)})
        self.wait_healthy([f"stable-{i}" for i in range(1, self.replicas + 1)])
        if loadgen_rate and self.container("loadgen") is None:
            self._run(image, "loadgen", ["python3", "/app/loadgen.py", f"http://{self.name}-proxy:{PROXY_PORT}/",
                                                 str(loadgen_rate), str(loadgen_total)],
                      ports={"9100/tcp": ("127.0.0.1", None)})
        return self.state()

    def down(self) -> int:
        return remove_environment(self.client, self.name)

    def _config(self) -> str:
        servers = [f"  server stable-{i} {self.name}-stable-{i}:8000 weight 100" for i in range(1, self.replicas + 1)]
        servers.append(f"  server canary {self.name}-canary:8000 weight 0")
        return HAPROXY_CFG.format(admin=ADMIN_PORT, port=PROXY_PORT, backend=BACKEND, servers="\n".join(servers))

    def _network(self) -> None:
        if not self.client.networks.list(names=[self.network]):
            self.client.networks.create(self.network, driver="bridge", labels=labels(self.name, STACK, "network"))

    def _run_service(self, image: str, suffix: str, role: str) -> Container:
        return self._run(image, suffix, None, role=role, version=image, environment={"CACHE_HOST": f"{self.name}-cache"})

    def _run(self, image: str, suffix: str, command: list[str] | None, *, role: str | None = None,
             version: str | None = None, **options: object) -> Container:
        return self.client.containers.run(
            image, command, name=f"{self.name}-{suffix}", hostname=suffix, detach=True,
            network=self.network, mem_limit=MEMORY, pids_limit=256,
            labels=labels(self.name, STACK, role or suffix, version), **options)  # type: ignore[arg-type]

    # ---- the canary --------------------------------------------------------------------

    def deploy_canary(self, image: str) -> bool:
        """Run the canary of ``image`` at weight 0; returns False when it was already there.

        A canary of another version is rolled back first: never two canaries.
        """
        canary = self.container("canary")
        if canary is not None and canary.labels.get(LABEL_VERSION) == image and canary.status == "running":
            return False
        if canary is not None:
            self.rollback()
        self._run_service(image, "canary", "canary")
        self.wait_healthy(["canary"])
        return True

    def set_canary_share(self, percent: int) -> None:
        """Send ``percent`` % of the traffic to the canary and the rest to the stable replicas."""
        if not 0 <= percent <= 100:
            raise StackError(f"canary share {percent} is not between 0 and 100")
        if percent and self.container("canary") is None:
            raise StackError(f"stack '{self.name}' has no canary to send {percent} % of the traffic to")
        commands = [f"set weight {BACKEND}/stable-{i} {100 - percent}" for i in range(1, self.replicas + 1)]
        commands.append(f"set weight {BACKEND}/canary {self.replicas * percent}")
        self.admin("; ".join(commands))

    def rollback(self) -> bool:
        """Give all traffic back to the stable replicas and remove the canary; False if none ran."""
        canary = self.container("canary")
        self.set_canary_share(0)
        if canary is None:
            return False
        self.admin(f"set server {BACKEND}/canary state drain")
        time.sleep(0.5)  # in-flight requests finish; new ones go to stable (and redispatch on error)
        canary.remove(force=True)
        self.admin(f"set server {BACKEND}/canary state ready")
        return True

    def promote(self) -> None:
        """Make the canary's version stable: replace the replicas one by one, then drop the canary."""
        canary = self.container("canary")
        if canary is None:
            raise StackError(f"stack '{self.name}' has no canary to promote")
        image = canary.labels[LABEL_VERSION]
        for i in range(1, self.replicas + 1):
            replica = self.container(f"stable-{i}")
            if replica is not None and replica.labels.get(LABEL_VERSION) == image:
                continue
            self.admin(f"set server {BACKEND}/stable-{i} state drain")
            time.sleep(0.5)
            if replica is not None:
                replica.remove(force=True)
            self._run_service(image, f"stable-{i}", "stable")
            self.admin(f"set server {BACKEND}/stable-{i} state ready")
            self.wait_healthy([f"stable-{i}"])
        self.rollback()  # the canary's traffic goes to the new stable replicas

    # ---- probing -----------------------------------------------------------------------

    def admin(self, command: str) -> str:
        proxy = self.container("proxy")
        if proxy is None:
            raise StackError(f"stack '{self.name}' has no proxy")
        code, output = proxy.exec_run(["python3", "-c", _ADMIN, str(ADMIN_PORT), command])
        if code != 0:
            raise StackError(f"HAProxy runtime API refused {command!r}: {output.decode(errors='replace')[-300:]}")
        return output.decode(errors="replace")

    def probe(self, suffixes: list[str]) -> dict[str, dict[str, list]]:
        """/health and /metrics of the named containers, fetched from inside the proxy."""
        proxy = self.container("proxy")
        if proxy is None:
            raise StackError(f"stack '{self.name}' has no proxy")
        hosts = [f"{self.name}-{s}" for s in suffixes]
        code, output = proxy.exec_run(["python3", "-c", _PROBE, *hosts])
        if code != 0:
            raise StackError(f"probing {hosts} failed: {output.decode(errors='replace')[-300:]}")
        found = json.loads(output.decode())
        return {s: found[f"{self.name}-{s}"] for s in suffixes}

    def wait_healthy(self, suffixes: list[str], timeout: float = 60) -> None:
        """Wait until each container answers /health 200 and HAProxy sees it UP."""
        deadline = time.monotonic() + timeout
        while True:
            probes = self.probe(suffixes)
            status = self.server_status()
            bad = [s for s in suffixes if probes[s]["health"][0] != 200 or not status.get(s, "").startswith("UP")]
            if not bad:
                return
            if time.monotonic() > deadline:
                raise StackError(f"stack '{self.name}': {', '.join(bad)} not healthy after {timeout:g} s "
                                 f"(HAProxy: {status})")
            time.sleep(0.5)
