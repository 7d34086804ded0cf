"""The model processes of a tritonserver: seen when one dies, and replaced.

Triton's Python backend runs each model instance in a stub process. When a stub dies (the
kernel's OOM killer, a crash), Triton 2.51 neither restarts it nor stops calling the model ready:
every later request fails with "Stub process ... is not healthy". This runs beside tritonserver
(``scripts/start_triton.sh`` starts it; stdlib only, so it also runs in the Triton image):

    python -m i2v_tools.stub_watch watch --server-pid PID --http 127.0.0.1:8010
        every half second, finds the stubs of tritonserver; when an instance's stub has died
        while its model is READY, unloads the model (its readiness turns false at once), then
        loads it again through the repository API (explicit model control, the admin key of
        TRITON_ADMIN_KEY), trying again until it loads. Ends with tritonserver.
    python -m i2v_tools.stub_watch check [--ready-url URL]
        exit 1 when a stub of this host's tritonserver is dead (a Kubernetes exec liveness probe
        for a tritonserver that runs without this watch), or the URL does not answer 200.
    python -m i2v_tools.stub_watch clean-shm
        removes the shared-memory regions of stubs that died with nothing left mapping them.
    python stub_watch.py start -- tritonserver ...
        the Triton image's entrypoint: removes every unmapped region (nothing else runs in the
        container yet; its /dev/shm outlives a restart), then runs the command in its place.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("i2v.stub_watch")
PROC = Path("/proc")
SHM = Path("/dev/shm")
SHM_PREFIX = "triton_python_backend_shm_region_"
STUB_COMM = "triton_python_b"  # the kernel keeps the first 15 characters of the executable's name
WATCH_S = 0.5
LOAD_RETRY_S = 10.0
# A region younger than this may belong to a stub being started right now (created by tritonserver
# a moment before anything maps it): never removed.
SHM_MIN_AGE_S = 30.0


@dataclass(frozen=True)
class Stub:
    pid: int
    parent: int
    state: str  # a /proc state letter: Z is a dead stub its parent has not reaped
    instance: str  # e.g. i2vgen_xl_0_0 (empty for a dead one: the kernel drops its command line)
    region: str = ""  # its shared-memory region (triton_python_backend_shm_region_<uuid>)

    @property
    def dead(self) -> bool:
        return self.state in ("Z", "X")

    @property
    def model(self) -> str:
        """The model of an instance named ``<model>_<group>_<index>``."""
        return self.instance.rsplit("_", 2)[0]


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, parent) of a process, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    state, parent = text[text.rindex(")") + 2:].split()[:2]
    return comm, state, int(parent)


def stubs(parent: int | None = None) -> list[Stub]:
    """The Python-backend stubs on this host, or those of one tritonserver."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(int(entry.name))
        if stat is None or stat[0] != STUB_COMM or (parent is not None and stat[2] != parent):
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            argv = []
        # triton_python_backend_stub <model.py> <shm region> <sizes...> <parent pid> <lib dir>
        # <ipc handle> <instance name> <runtime dir>
        instance = argv[8].decode(errors="replace") if len(argv) > 8 else ""
        region = argv[2].decode(errors="replace") if len(argv) > 8 else ""
        found.append(Stub(pid=int(entry.name), parent=stat[2], state=stat[1], instance=instance, region=region))
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] not in ("Z", "X")


class TritonAdmin:
    """The few repository-API calls the watch needs, with the admin key when one is set."""

    def __init__(self, http: str, admin_key: str = "") -> None:
        self.base = f"http://{http}"
        self.headers = {"admin-key": admin_key} if admin_key else {}

    def _post(self, path: str, timeout: float) -> tuple[int, str]:
        request = urllib.request.Request(self.base + path, data=b"{}", headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")

    def states(self) -> dict[str, str]:
        """Each model's state: READY, LOADING, UNLOADING or UNAVAILABLE (unloaded); {} when unknown."""
        status, body = self._post("/v2/repository/index", 10)
        if status != 200:
            return {}
        return {str(entry.get("name")): str(entry.get("state", "")) for entry in json.loads(body)}

    def state(self, model: str) -> str:
        return self.states().get(model, "")

    def ready(self, model: str) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/v2/models/{model}/ready", timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def reload(self, model: str, timeout: float) -> None:
        """Unload (so nothing is routed to the dead instance and readiness is false), then load."""
        status, body = self._post(f"/v2/repository/models/{model}/unload", 60)
        if status != 200:
            raise RuntimeError(f"unload answered {status}: {body[:200]}")
        deadline = time.monotonic() + 60
        while self.ready(model) and time.monotonic() < deadline:
            time.sleep(0.1)
        status, body = self._post(f"/v2/repository/models/{model}/load", timeout)
        if status != 200:
            raise RuntimeError(f"load answered {status}: {body[:200]}")


def watch(server_pid: int, admin: TritonAdmin, load_timeout: float = 600.0) -> None:
    """Reload every model one of whose stubs dies, until tritonserver ends."""
    known: dict[str, Stub] = {}  # instance -> its live stub
    to_load: dict[str, float] = {}  # model -> when to try loading it again
    dead_regions: set[str] = set()  # of the stubs that died: removed once their models are back
    while alive(server_pid):
        live = {stub.instance: stub for stub in stubs(server_pid) if not stub.dead and stub.instance}
        # An instance with no live stub (a new pid is fine: a reload by an operator starts the
        # new stub before it stops the old one).
        lost = {instance for instance in known if instance not in live}
        if any(stub.dead for stub in stubs(server_pid)) and not lost and not to_load:
            # A stub that died before this watch saw it alive (its name went with it): a READY
            # model with no live stub at all is the one.
            serving = {instance.rsplit("_", 2)[0] for instance in live}
            lost = {f"{model}_?_?" for model, state in admin.states().items()
                    if state == "READY" and model not in serving}
            known.update({instance: Stub(0, server_pid, "Z", instance) for instance in lost})
        known.update(live)
        dead_regions.update(known[instance].region for instance in lost if known[instance].region)
        for model in sorted({instance.rsplit("_", 2)[0] for instance in lost}):
            for instance in [i for i in known if i.rsplit("_", 2)[0] == model]:
                known.pop(instance)
            state = admin.state(model)
            if state == "READY":  # not an operator's unload, nor a load under way
                logger.error("the process of model %s died (instance stub %s); reloading the model", model,
                             ", ".join(sorted(i for i in lost if i.rsplit("_", 2)[0] == model)))
                to_load[model] = 0.0
            else:
                logger.info("model %s stopped its instances (%s); leaving it as it is", model, state or "unknown")
        for model, when in list(to_load.items()):
            if time.monotonic() < when:
                continue
            started = time.monotonic()
            try:
                admin.reload(model, load_timeout)
            except (RuntimeError, OSError) as exc:
                logger.error("reloading %s failed (%s); trying again in %.0f s", model, exc, LOAD_RETRY_S)
                to_load[model] = time.monotonic() + LOAD_RETRY_S
                continue
            logger.warning("model %s reloaded in %.1f s", model, time.monotonic() - started)
            del to_load[model]
        if dead_regions and not to_load:
            # Triton leaves the region of a stub that died in /dev/shm (and keeps it mapped while
            # an answer of the dead instance is pending). Its name goes now; the memory goes
            # with the last mapping. Nothing opens a region by name but the stub it was made for.
            for path in clean_shm(SHM / name for name in dead_regions):
                logger.info("removed %s, the shared memory of a dead model process", path)
            dead_regions.clear()
        time.sleep(WATCH_S)


def _mapped_regions() -> set[str]:
    """Names of the shared-memory regions some process on this host maps."""
    mapped = set()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            maps = (entry / "maps").read_text(errors="replace")
        except OSError:
            continue
        for line in maps.splitlines():
            if SHM_PREFIX in line:
                mapped.add(line.rsplit("/", 1)[-1].split()[0])
    return mapped


def stale_regions(now: float | None = None, min_age_s: float = SHM_MIN_AGE_S) -> list[Path]:
    """Regions no process maps any more, old enough not to be one being set up."""
    now = time.time() if now is None else now
    mapped = _mapped_regions()
    stale = []
    for path in SHM.glob(SHM_PREFIX + "*"):
        try:
            age = now - path.stat().st_mtime
        except OSError:
            continue
        if path.name not in mapped and age >= min_age_s:
            stale.append(path)
    return stale


def clean_shm(paths: Iterable[Path] | None = None) -> list[Path]:
    """Remove stale regions (those of ``stale_regions`` unless given); the ones removed."""
    removed = []
    for path in stale_regions() if paths is None else paths:
        try:
            path.unlink()
        except OSError:
            continue  # another user's, or removed meanwhile
        removed.append(path)
    return removed


def check(ready_url: str = "") -> int:
    """0 when no Python-backend stub on this host is dead (and ``ready_url`` answers 200), else 1."""
    dead = [stub for stub in stubs() if stub.dead]
    if dead:
        print(f"dead model process(es): pid {', '.join(str(stub.pid) for stub in dead)}", file=sys.stderr)
        return 1
    if ready_url:
        try:
            with urllib.request.urlopen(ready_url, timeout=5) as response:
                if response.status != 200:
                    raise urllib.error.URLError(f"status {response.status}")
        except (urllib.error.URLError, OSError) as exc:
            print(f"{ready_url}: {exc}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    watching = commands.add_parser("watch", help="reload a model whose stub dies, until tritonserver ends")
    watching.add_argument("--server-pid", type=int, required=True)
    watching.add_argument("--http", required=True, help="Triton's HTTP host:port")
    watching.add_argument("--load-timeout", type=float, default=600.0)
    checking = commands.add_parser("check", help="exit 1 when a model process is dead (a liveness probe)")
    checking.add_argument("--ready-url", default="")
    commands.add_parser("clean-shm", help="remove shared-memory regions of dead stubs")
    starting = commands.add_parser("start", help="remove unmapped regions, then exec the command")
    starting.add_argument("command_line", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s stub_watch %(levelname)s %(message)s")
    if args.command == "check":
        return check(args.ready_url)
    if args.command in ("clean-shm", "start"):
        for path in clean_shm(stale_regions(min_age_s=0 if args.command == "start" else SHM_MIN_AGE_S)):
            logger.info("removed %s (no process maps it)", path)
    if args.command == "clean-shm":
        return 0
    if args.command == "start":
        command = args.command_line[1:] if args.command_line[:1] == ["--"] else args.command_line
        if not command:
            parser.error("start needs a command to run")
        os.execvp(command[0], command)
    watch(args.server_pid, TritonAdmin(args.http, os.environ.get("TRITON_ADMIN_KEY", "")), args.load_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
