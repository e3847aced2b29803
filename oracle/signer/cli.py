"""``oracle signer keygen`` and ``oracle signer serve``: the only process that holds an oracle key.

Also runnable alone: ``python -m oracle.signer.cli serve --chain-id 31337 --router 0x...``.
User errors print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from oracle.config import Settings, load_settings
from oracle.errors import OracleError
from oracle.signer.epochs import SqliteEpochStore
from oracle.signer.keys import (
    EPOCHS_FILE,
    PASSPHRASE_FILE,
    TOKEN_FILE,
    URL_FILE,
    generate_keystore,
    load_signing_key,
    new_passphrase,
    read_secret_file,
)
from oracle.signer.policy import RateLimiter, RateLimits, SigningPolicy, domains_of
from oracle.signer.service import SigningService

logger = logging.getLogger("oracle.signer")

DEFAULT_PORT = 8711

app = typer.Typer(help="The oracle signer: generate a key, serve EIP-712 report signatures on loopback.")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def _settings() -> Settings:
    try:
        return load_settings()
    except OracleError as e:
        raise _fail(str(e)) from None


def _signer_dir(settings: Settings, given: Path | None) -> Path:
    return given if given is not None else settings.data_dir / "signer"


@app.command()
def keygen(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="directory for keystore.json and token [<data_dir>/signer]"),
    ] = None,
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            "--passphrase-file", help="write the passphrase here (a secret mount), not beside the keystore"
        ),
    ] = None,
    dev: Annotated[
        bool, typer.Option("--dev", help="development only: keep the passphrase beside the keystore")
    ] = False,
) -> None:
    """Generate a signer key into an encrypted keystore with a random passphrase and bearer token.

    Prints the new address on stdout. The passphrase never lands beside the keystore (that would make
    the encryption pointless) except with ``--dev`` in a development environment: it goes to
    ``--passphrase-file``, or is printed ONCE on stderr for your secret store; ``serve`` then reads it
    from ORACLE_SIGNER_PASSPHRASE_FILE or ORACLE_SIGNER_PASSPHRASE. Refuses to overwrite an existing key.
    """
    settings = _settings()
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    signer_dir = _signer_dir(settings, out)
    if dev and settings.env != "dev":
        raise _fail(f"--dev keeps the passphrase beside the keystore: refused with ORACLE_ENV={settings.env}")
    if dev and passphrase_file is not None:
        raise _fail("--dev and --passphrase-file exclude each other")
    if passphrase_file is not None and passphrase_file.resolve().parent == signer_dir.resolve():
        raise _fail(f"--passphrase-file {passphrase_file} is beside the keystore; put it on another mount")
    target = signer_dir / PASSPHRASE_FILE if dev else passphrase_file
    passphrase = new_passphrase()
    try:
        result = generate_keystore(signer_dir, passphrase=passphrase, passphrase_file=target)
    except OracleError as e:
        raise _fail(str(e)) from None
    except OSError as e:
        raise _fail(f"cannot write the keystore: {e.strerror} ({e.filename})") from None
    typer.echo(result.address)
    if target is None:
        typer.echo(
            f"keystore passphrase (shown once; keep it as a secret for serve): {passphrase}",
            err=True,
        )


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on a loopback address; ``port`` 0 picks a free port."""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise _fail(f"--host {host!r} is not an IP address") from None
    if not ip.is_loopback:
        raise _fail(f"--host {host} is not a loopback address; the signer only listens on loopback")
    sock = socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise _fail(f"cannot listen on {host}:{port}: {e.strerror}") from None
    # Listen now, before the URL is announced: clients that connect early wait in the backlog.
    sock.listen(128)
    return sock


def _write_url(path: Path, url: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(url + "\n", encoding="utf-8")
    os.replace(tmp, path)


@app.command()
def serve(
    chain_id: Annotated[
        int, typer.Option("--chain-id", envvar="ORACLE_SIGNER_CHAIN_ID", help="the only chain id to sign for")
    ],
    router: Annotated[
        list[str],
        typer.Option(
            "--router", envvar="ORACLE_SIGNER_ROUTER", help="router contract(s) to sign for (repeatable)"
        ),
    ],
    signer_dir: Annotated[
        Path | None,
        typer.Option("--dir", help="signer directory (keystore, token, epochs) [<data_dir>/signer]"),
    ] = None,
    keystore: Annotated[
        Path | None, typer.Option("--keystore", help="keystore file [<dir>/keystore.json]")
    ] = None,
    host: Annotated[str, typer.Option("--host", help="loopback address to listen on")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", envvar="ORACLE_SIGNER_PORT", min=0, max=65535, help="TCP port, 0 = any free"),
    ] = DEFAULT_PORT,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", help="bearer token file [ORACLE_SIGNER_TOKEN or <dir>/token]"),
    ] = None,
    url_file: Annotated[
        Path | None, typer.Option("--url-file", help="where to write the bound URL [<dir>/url]")
    ] = None,
    global_rate: Annotated[float, typer.Option(help="signatures per second, all subjects")] = 50.0,
    global_burst: Annotated[float, typer.Option(help="burst size, all subjects")] = 200.0,
    subject_rate: Annotated[float, typer.Option(help="signatures per second for one subject")] = 1.0,
    subject_burst: Annotated[float, typer.Option(help="burst size for one subject")] = 10.0,
    exit_with_parent: Annotated[
        bool, typer.Option("--exit-with-parent", help="stop when the process that started this one is gone")
    ] = False,
) -> None:
    """Serve ``POST /v1/sign`` and ``GET /v1/health`` on loopback until interrupted."""
    import uvicorn

    from oracle.signer.app import create_app

    if exit_with_parent:
        _watch_parent()

    settings = _settings()
    logging.basicConfig(
        level=settings.log_level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    directory = _signer_dir(settings, signer_dir)
    url_path = url_file if url_file is not None else directory / URL_FILE
    url_path.unlink(missing_ok=True)  # a stale URL from an earlier run must not be mistaken for this one
    try:
        domains = domains_of((chain_id, r) for r in router)
        limits = RateLimits(
            global_rate=global_rate,
            global_burst=global_burst,
            subject_rate=subject_rate,
            subject_burst=subject_burst,
        )
        if token_file is not None:
            token = read_secret_file(token_file, "token")
        elif settings.signer_token is not None:
            token = settings.signer_token.get_secret_value()
        else:
            token = read_secret_file(directory / TOKEN_FILE, "token")
        if len(token) < 16:
            raise _fail("the bearer token must be at least 16 characters")
        key = load_signing_key(settings, signer_dir=directory, keystore=keystore)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = SqliteEpochStore(directory / EPOCHS_FILE)
    except OracleError as e:
        raise _fail(str(e)) from None
    service = SigningService(
        key, policy=SigningPolicy(domains=domains), store=store, limiter=RateLimiter(limits)
    )
    sock = _bind(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    url = f"http://[{bound_host}]:{bound_port}" if ":" in bound_host else f"http://{bound_host}:{bound_port}"
    _write_url(url_path, url)
    logger.info(
        "signer address=%s listening on %s domains=%s",
        key.address,
        url,
        ",".join(sorted(f"{d.chain_id}:{d.router}" for d in domains)),
    )
    typer.echo(f"signer {key.address} listening on {url}")
    sys.stdout.flush()
    config = uvicorn.Config(
        create_app(service, token=token), log_config=None, access_log=True, lifespan="off"
    )
    # uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown, so nothing after run() is guaranteed to
    # execute; SQLite has committed every signature already, and the url file is replaced at next start.
    uvicorn.Server(config).run(sockets=[sock])


def _watch_parent() -> None:
    """Stop (as on SIGTERM) once the parent is gone: a service killed outright must not leave its signer
    running with the key loaded. The signer runs in a session of its own, so nothing else would stop it."""
    import os
    import signal
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        logger.warning("the process that started this signer is gone; stopping")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


if __name__ == "__main__":
    app()
