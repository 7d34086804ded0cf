"""A TLS-terminating haproxy (Debian's) in front of one gateway, as a deployment puts one: it
adds X-Forwarded-For and X-Forwarded-Proto: https, with a self-signed certificate made by openssl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from i2v_tools.servers import ManagedProcess, free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def available() -> bool:
    return Path(HAPROXY).exists() and shutil.which("openssl") is not None


def self_signed_pem(work_dir: Path) -> Path:
    """A certificate for 127.0.0.1 and localhost with its key, in one PEM as haproxy reads it."""
    key, cert = work_dir / "key.pem", work_dir / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    combined = work_dir / "haproxy.pem"
    combined.write_text(cert.read_text() + key.read_text())
    return combined


class TlsProxy(ManagedProcess):
    def __init__(self, work_dir: Path, backend: str) -> None:
        work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        config = work_dir / "haproxy.cfg"
        config.write_text(f"""\
global
    maxconn 64

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s

frontend tls
    bind 127.0.0.1:{self.port} ssl crt {self_signed_pem(work_dir)}
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    default_backend gateway

backend gateway
    server gateway {backend}
""")
        checked = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        super().__init__("haproxy-tls", [HAPROXY, "-db", "-f", str(config)], work_dir / "haproxy.log", cwd=work_dir)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"
