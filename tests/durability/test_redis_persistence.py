"""Durable Redis as shipped, and the gateway's one-line warning when the Redis it is given is not."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis

from gateway.redis_persistence import Persistence, log_persistence
from i2v_tools import REPO_ROOT
from i2v_tools.servers import ManagedProcess, RedisServer, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def start_redis(tmp_path) -> Iterator:
    """Throwaway redis-servers of one test, stopped after it."""
    started: list[RedisServer] = []

    def start(durable: bool, *extra_args: str) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(started)}", durable=durable, extra_args=extra_args)
        started.append(server)
        return server.start().wait_ready()

    yield start
    for server in started:
        server.stop()


def checked(url: str) -> Persistence:
    async def check() -> Persistence:
        client = aioredis.from_url(url)
        try:
            return await log_persistence(client)
        finally:
            await client.aclose()
    return asyncio.run(check())


@pytest.mark.parametrize(("durable", "extra_args", "verdict", "fragment"), [
    (True, (), True, "append-only file, appendfsync everysec"),
    (False, (), False, "persistence off"),
    (False, ("--save", "3600 1"), False, "RDB snapshots only"),
    # Managed Redis services often disable CONFIG: INFO persistence still tells the append-only file.
    (True, ("--rename-command", "CONFIG", ""), True, "from INFO"),
    (False, ("--rename-command", "CONFIG", ""), False, "no append-only file"),
    (False, ("--rename-command", "CONFIG", "", "--rename-command", "INFO", ""), None, "could not be checked"),
], ids=["aof", "off", "snapshots", "aof-no-config", "off-no-config", "no-config-no-info"])
def test_the_check_tells_each_persistence(start_redis, caplog: pytest.LogCaptureFixture, durable: bool,
                                          extra_args: tuple[str, ...], verdict: bool | None, fragment: str) -> None:
    server = start_redis(durable, *extra_args)
    with caplog.at_level(logging.INFO, logger="gateway.redis"):
        found = checked(server.url())
    assert found.durable is verdict and fragment in found.summary, found
    [line] = [r for r in caplog.records if r.name == "gateway.redis"]
    assert line.levelno == (logging.INFO if verdict else logging.WARNING)
    assert f"127.0.0.1:{server.port}/0" in line.getMessage() and fragment in line.getMessage()
    if not verdict:
        assert "appendonly yes" in line.getMessage()  # what to do about it


def test_an_unreachable_redis_is_said_so_without_stopping_anything(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="gateway.redis"):
        found = checked(f"redis://127.0.0.1:{free_port()}/0")
    assert found.durable is None and "could not be checked" in found.summary


def test_the_gateway_warns_at_start_when_redis_keeps_nothing(start_redis, start_gateway, new_redis_url) -> None:
    volatile = start_redis(False)
    gateway = start_gateway({"I2V_REDIS_URL": volatile.url(), "I2V_JOB_WORKERS": "0"})
    [warning] = [line for line in gateway.log_path.read_text().splitlines() if " gateway.redis " in line]
    assert "WARNING" in warning and "persistence off" in warning, warning
    # The test suite's own Redis runs as shipped: no warning.
    durable = start_gateway({"I2V_REDIS_URL": new_redis_url(), "I2V_JOB_WORKERS": "0"})
    [line] = [line for line in durable.log_path.read_text().splitlines() if " gateway.redis " in line]
    assert "INFO" in line and "append-only file, appendfsync everysec" in line, line


def test_what_redis_acknowledged_survives_its_sigkill(start_redis) -> None:
    """Redis writes the append-only file before it answers; everysec only defers the fsync, which
    matters on a power failure, not when the process dies."""
    server = start_redis(True)
    client = redis.Redis.from_url(server.url())
    client.set("i2v:test:accepted", b"job")
    client.close()
    server.kill()
    server.start().wait_ready()  # same port, same folder
    client = redis.Redis.from_url(server.url())
    try:
        assert client.get("i2v:test:accepted") == b"job"
    finally:
        client.close()


def test_the_shipped_redis_conf_is_durable(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    """docker/redis/redis.conf as shipped, with its data folder moved here."""
    conf = (REPO_ROOT / "docker" / "redis" / "redis.conf").read_text()
    assert "\ndir /data\n" in conf
    (tmp_path / "redis.conf").write_text(conf.replace("\ndir /data\n", f"\ndir {tmp_path}\n"))
    port = free_port()
    server = ManagedProcess("redis-server", ["redis-server", str(tmp_path / "redis.conf"), "--port", str(port),
                                             "--bind", "127.0.0.1"], tmp_path / "redis.log")
    client = redis.Redis(port=port, decode_responses=True)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    server.start()
    try:
        server.wait_until(answers, 20, "PONG")
        with caplog.at_level(logging.INFO, logger="gateway.redis"):
            found = checked(f"redis://127.0.0.1:{port}/0")
        assert found == Persistence(True, "an append-only file, appendfsync everysec"), found
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        client.close()
        server.stop()
