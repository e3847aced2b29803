"""CLI for telemetry: ``oracle devices add|rotate|bind|list|revoke|broker-credential|broker-init|retention``,
``oracle ingest telemetry``.

Broker credentials: with ``ORACLE_MQTT_ADMIN_USERNAME`` + ``ORACLE_MQTT_ADMIN_PASSWORD_FILE`` set, ``devices
add`` also creates the device's broker user (user name = device id, allowed its own telemetry topic and its
own receipts only) and hands out its password once (``--broker-credential FILE``, 0600, or printed);
``devices revoke`` deletes that user, and the broker closes its connection at once. The broker keeps only a
salted hash, the oracle nothing (:mod:`oracle.broker_auth`).

Two Typer apps to mount in ``oracle/cli.py``: :data:`devices_app` as ``devices`` and :data:`ingest_app` as
``ingest``. :data:`app` holds both for standalone use (``python -m oracle.commands.telemetry devices ...``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse

import typer

from oracle.commands.retention import retention_command
from oracle.errors import ConfigError, OracleError, ValidationError

devices_app = typer.Typer(
    help="Telemetry devices: public keys (or legacy HMAC secrets) bound to shipments.", no_args_is_help=True
)
ingest_app = typer.Typer(help="Ingest workers.", no_args_is_help=True)
app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(devices_app, name="devices")
app.add_typer(ingest_app, name="ingest")

logger = logging.getLogger(__name__)


def _when(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{option}: {value!r} is not an ISO-8601 time such as 2026-05-01T10:00:00Z", reason="bad_time"
        ) from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t


def _context() -> Any:
    from oracle.config import load_settings
    from oracle.context import open_context

    return open_context(load_settings())


ShipmentOption = Annotated[str, typer.Option("--shipment", help="shipment the device measures")]
FromOption = Annotated[str | None, typer.Option("--from", help="binding start, ISO-8601 (default now)")]
ToOption = Annotated[str | None, typer.Option("--to", help="binding end, ISO-8601 (default open)")]


BrokerCredentialOption = Annotated[
    Path | None,
    typer.Option(
        "--broker-credential",
        help="write the device's broker login (JSON: url, username, password) to this new file, 0600, "
        "for the operator to hand to the device; without it the password is printed once",
    ),
]


@devices_app.command("add")
def devices_add(
    device_id: Annotated[str, typer.Argument(help="device id (A-Z a-z 0-9 . _ : -, at most 64)")],
    shipment: Annotated[str | None, typer.Option("--shipment", help="shipment the device measures")] = None,
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="the device's public key, PEM (P-256 → ES256, Ed25519 → EdDSA); the oracle keeps only it",
        ),
    ] = None,
    valid_from: FromOption = None,
    valid_to: ToOption = None,
    broker_credential: BrokerCredentialOption = None,
) -> None:
    """Register a device by its public key; without --public-key, a legacy HMAC device (weaker).

    With --public-key the device signs with its own private key and the oracle stores only the public
    key. Without it a new HMAC secret is drawn, sealed, and printed (hex) ONCE; HS256 is weaker: the oracle
    holds that secret and could forge the device's readings.

    With a broker admin configured (ORACLE_MQTT_ADMIN_USERNAME), the device also gets its broker login,
    written to --broker-credential FILE (0600) or printed once.
    """
    from oracle.devices import check_device_id, load_kek, register_device, register_device_key

    check_device_id(device_id)
    admin = _broker_admin_settings(required=broker_credential is not None)
    if public_key is not None:
        pem = _read_pem(public_key)
        ctx = _context()
        try:
            key = register_device_key(
                ctx.sessions,
                device_id=device_id,
                public_key_pem=pem,
                shipment_id=shipment,
                valid_from=_when(valid_from, "--from"),
                valid_to=_when(valid_to, "--to"),
            )
        finally:
            ctx.close()
        bound = f", bound to shipment {shipment}" if shipment else " (bind it with `devices bind`)"
        typer.echo(f"device {device_id} registered with {key.alg} key {key.fingerprint}{bound}")
        if admin is not None:
            _issue_broker_credential(admin, device_id, broker_credential)
        return
    if shipment is None:
        raise ValidationError(
            "--shipment: an HMAC device is bound when it is added (or give --public-key)",
            reason="missing_shipment",
        )
    ctx = _context()
    try:
        secret = register_device(
            ctx.sessions,
            load_kek(ctx.settings),
            device_id=device_id,
            shipment_id=shipment,
            valid_from=_when(valid_from, "--from"),
            valid_to=_when(valid_to, "--to"),
        )
    finally:
        ctx.close()
    typer.echo(secret.hex())
    typer.echo(
        f"device {device_id} bound to shipment {shipment}; the secret above is shown only once: "
        "provision it into the logger now. HS256 is weaker: the oracle holds this secret too; "
        "prefer `--public-key` (ES256 or EdDSA)",
        err=True,
    )
    if admin is not None:
        _issue_broker_credential(admin, device_id, broker_credential)


def _broker_admin_settings(*, required: bool) -> Any:
    """The settings when a broker admin is configured (else None; an error when ``required``)."""
    from oracle.config import load_settings

    settings = load_settings()
    if settings.mqtt_admin_username and settings.mqtt_url:
        return settings
    if not settings.mqtt_url:
        # The broker `oracle run` started for this data directory, with the admin login it made there.
        from oracle.devstack.broker import client_settings
        from oracle.service import BROKER_URL_FILE

        url_file = settings.data_dir / "mqtt" / BROKER_URL_FILE
        if url_file.is_file():
            url = url_file.read_text().strip()
            return settings.model_copy(update=client_settings(settings.data_dir / "mqtt", url))
    if required:
        raise ConfigError(
            "--broker-credential: no broker admin configured and no broker started by `oracle run` "
            "for this data directory; set ORACLE_MQTT_URL, ORACLE_MQTT_ADMIN_USERNAME and "
            "ORACLE_MQTT_ADMIN_PASSWORD_FILE"
        )
    return None


def _issue_broker_credential(settings: Any, device_id: str, out: Path | None) -> None:
    """Create (or re-key) the device's broker user and hand its password out once."""
    from oracle.broker_auth import BrokerAdmin, admin_login, write_secret_file

    login = admin_login(settings)
    assert login is not None
    if out is not None and out.exists():
        raise ValidationError(f"--broker-credential: {out} exists; give a new file", reason="file_exists")
    with BrokerAdmin(settings.mqtt_url, login, ca_file=settings.mqtt_ca_file) as admin:
        password = admin.issue_device(device_id)
    if out is not None:
        credential = {"url": settings.mqtt_url, "username": device_id, "password": password}
        write_secret_file(out, json.dumps(credential, indent=2) + "\n")
        typer.echo(f"broker login of {device_id} written to {out} (0600): hand it to the device", err=True)
    else:
        typer.echo(f"broker login: username {device_id} password {password}")
        typer.echo(
            f"the broker password of {device_id} above is shown only once (the broker keeps a hash)", err=True
        )


@devices_app.command("broker-credential")
def devices_broker_credential(
    device_id: Annotated[str, typer.Argument(help="a device id")],
    out: BrokerCredentialOption = None,
) -> None:
    """Issue the device a new broker password (a lost one, a replaced logger); the old one stops working."""
    from oracle.devices import check_device_id

    check_device_id(device_id)
    settings = _broker_admin_settings(required=True)
    _issue_broker_credential(settings, device_id, out)


@devices_app.command("broker-init")
def devices_broker_init(
    directory: Annotated[Path, typer.Argument(help="the broker's dynamic-security directory")],
    credentials: Annotated[
        Path | None,
        typer.Option(help="where the worker's and admin's passwords go (default DIR/credentials)"),
    ] = None,
    owner: Annotated[
        str | None, typer.Option(help="UID:GID to own DIR and its file (the broker's user, e.g. 1883:1883)")
    ] = None,
    credentials_owner: Annotated[
        str | None, typer.Option(help="UID:GID to own the password files (the oracle's user)")
    ] = None,
) -> None:
    """Write a broker's first dynamic-security file (DIR/dynamic-security.json) with the ingest-worker and
    admin users, and their passwords (0600) for ORACLE_MQTT_PASSWORD_FILE and
    ORACLE_MQTT_ADMIN_PASSWORD_FILE. An existing file is left as it is (the broker keeps its device users
    there), so this can run before every start."""
    import os

    from oracle.devstack.broker import CREDENTIALS_DIR, DYNSEC_FILE, ensure_dynsec_file

    creds = credentials if credentials is not None else directory / CREDENTIALS_DIR
    if (directory / DYNSEC_FILE).exists():
        typer.echo(f"{directory / DYNSEC_FILE} exists already; left as it is")
        return
    ensure_dynsec_file(directory, credentials=creds)
    for paths, spec in (
        ((directory, directory / DYNSEC_FILE), owner),
        ((creds, *creds.iterdir()), credentials_owner),
    ):
        if spec is not None:
            uid, gid = _owner(spec)
            for path in paths:
                os.chown(path, uid, gid)
    typer.echo(
        f"wrote {directory / DYNSEC_FILE} and the passwords of oracle-ingest and oracle-admin "
        f"in {creds}/ (0600)"
    )


def _owner(spec: str) -> tuple[int, int]:
    try:
        uid, gid = (int(x) for x in spec.split(":"))
    except ValueError:
        raise ValidationError(
            f"owner {spec!r}: expected UID:GID such as 1883:1883", reason="bad_owner"
        ) from None
    return uid, gid


def _read_pem(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValidationError(
            f"--public-key: cannot read {path}: {e.strerror}", reason="bad_public_key"
        ) from None
    if len(data) > 16_384:
        raise ValidationError(
            f"--public-key: {path} is not a PEM public key (too large)", reason="bad_public_key"
        )
    return data


@devices_app.command("rotate")
def devices_rotate(
    device_id: Annotated[str, typer.Argument(help="a registered key device")],
    public_key: Annotated[Path, typer.Option("--public-key", help="the device's new public key, PEM")],
    old_valid_through_seq: Annotated[
        int,
        typer.Option(
            "--old-valid-through-seq",
            help="the last seq the old key may sign; readings past it must verify with the new key",
        ),
    ],
) -> None:
    """Give a device a new key; its old key stays valid only up to --old-valid-through-seq."""
    from oracle.devices import rotate_device_key

    pem = _read_pem(public_key)
    ctx = _context()
    try:
        key = rotate_device_key(
            ctx.sessions,
            device_id=device_id,
            public_key_pem=pem,
            old_valid_through_seq=old_valid_through_seq,
        )
    finally:
        ctx.close()
    typer.echo(
        f"device {device_id} now signs with {key.alg} key {key.fingerprint}; the old key verifies seq "
        f"<= {old_valid_through_seq} only (running workers pick this up within 30 s)"
    )


@devices_app.command("bind")
def devices_bind(
    device_id: Annotated[str, typer.Argument(help="a registered device")],
    shipment: ShipmentOption,
    valid_from: FromOption = None,
    valid_to: ToOption = None,
) -> None:
    """Bind an existing device to a (further) shipment for a time window."""
    from oracle.devices import bind_device

    ctx = _context()
    try:
        bind_device(
            ctx.sessions,
            device_id=device_id,
            shipment_id=shipment,
            valid_from=_when(valid_from, "--from"),
            valid_to=_when(valid_to, "--to"),
        )
    finally:
        ctx.close()
    typer.echo(f"device {device_id} bound to shipment {shipment}")


def _iso_ms(ms: int | None) -> str:
    if ms is None:
        return "open"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


@devices_app.command("list")
def devices_list(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON document instead of a table")] = False,
) -> None:
    """List devices, their status and shipment bindings (never their secrets)."""
    from oracle.devices import list_devices

    ctx = _context()
    try:
        devices = list_devices(ctx.sessions)
    finally:
        ctx.close()
    rows = [
        {
            "device_id": d.device_id,
            "status": d.status,
            "auth": d.auth_view,
            "keys": [
                {"alg": k.alg, "fingerprint": k.fingerprint, "valid_through_seq": k.valid_through_seq}
                for k in d.keys
            ],
            "kek_id": d.kek_id or None,
            "created_at": d.created_at.isoformat(),
            "revoked_at": d.revoked_at.isoformat() if d.revoked_at else None,
            "revoked_after_seq": d.revoked_after_seq,
            "bindings": [
                {"shipment_id": b.shipment_id, "from": _iso_ms(b.valid_from_ms), "to": _iso_ms(b.valid_to_ms)}
                for b in d.bindings
            ],
        }
        for d in devices
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("device", "status", "auth", "shipment", "from", "to")
    for d in devices:
        view = d.auth_view
        auth = f"{view['alg']} ({view['strength']})"
        lines = [(b.shipment_id, _iso_ms(b.valid_from_ms), _iso_ms(b.valid_to_ms)) for b in d.bindings]
        for i, (shipment, start, end) in enumerate(lines or [("-", "-", "-")]):
            first = i == 0
            table.add_row(
                d.device_id if first else "",
                d.status if first else "",
                auth if first else "",
                shipment,
                start,
                end,
            )
    Console(width=120).print(table)


@devices_app.command("revoke")
def devices_revoke(device_id: Annotated[str, typer.Argument(help="a registered device")]) -> None:
    """Refuse every reading a device signs from now on (lost, retired or compromised).

    "From now on" is by sequence number: readings with a seq past the highest one accepted so far are
    refused (revoked_key), whenever they arrive; readings up to it stay valid.
    """
    from oracle.devices import revoke_device

    ctx = _context()
    try:
        bound = revoke_device(ctx.sessions, device_id)
    finally:
        ctx.close()
    typer.echo(
        f"device {device_id} revoked after seq {bound}; running workers refuse later readings within 30 s"
    )
    settings = _broker_admin_settings(required=False)
    if settings is None:
        typer.echo(
            "no broker admin configured (ORACLE_MQTT_ADMIN_USERNAME): delete the device's broker user "
            f"yourself, e.g. `mosquitto_ctrl ... dynsec deleteClient {device_id}`",
            err=True,
        )
        return
    from oracle.broker_auth import BrokerAdmin, admin_login

    login = admin_login(settings)
    assert login is not None
    with BrokerAdmin(settings.mqtt_url, login, ca_file=settings.mqtt_ca_file) as admin:
        existed = admin.revoke_device(device_id)
    typer.echo(
        f"broker user {device_id} deleted; the broker closed its connections"
        if existed
        else f"device {device_id} had no broker user"
    )


devices_app.command("retention")(retention_command)


@ingest_app.command("telemetry")
def ingest_telemetry(
    client_id: Annotated[
        str | None, typer.Option(help="MQTT client id (default ORACLE_MQTT_CLIENT_ID)")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="shared-subscription group (default ORACLE_MQTT_SHARE_GROUP)")
    ] = None,
    metrics_port: Annotated[int, typer.Option(help="serve Prometheus metrics on this port (0 = off)")] = 0,
) -> None:
    """Run the durable MQTT ingest worker until SIGTERM/SIGINT (acks each reading only after commit)."""
    from ingest.telemetry.pipeline import TelemetryIngest
    from ingest.telemetry.worker import IngestWorker, worker_config
    from oracle.devices import load_kek
    from oracle.logs import configure_logging

    ctx = _context()
    settings = ctx.settings
    configure_logging(settings.log_level, log_format=settings.log_format)
    if not settings.mqtt_url:
        ctx.close()
        raise ConfigError("ORACLE_MQTT_URL: the ingest worker needs a broker, e.g. mqtt://127.0.0.1:1883")
    url = urlparse(settings.mqtt_url)
    config = worker_config(
        settings,
        client_id=client_id,
        group=group,
        host=url.hostname,
        port=url.port,
        tls=url.scheme == "mqtts",
    )
    ingest = TelemetryIngest(
        sessions=ctx.sessions,
        blobs=ctx.blobs,
        kek=load_kek(settings),
        max_future_skew_s=settings.telemetry_max_future_skew_s,
        reorder_window_s=settings.telemetry_reorder_window_s,
    )
    from oracle.alarms.live import attach

    attach(ingest, ctx.sessions)  # live excursion alarms; webhooks are sent by `oracle run`
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        logger.info("signal %s: finishing the current batch and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    from oracle.scheduler.hooks import notify_committed_telemetry

    def _notify(messages: Any, outcome: Any) -> None:
        # Breaches are evaluated at once by the scheduler's leader, as with the service's own worker.
        notify_committed_telemetry(ctx, messages, outcome)

    worker = IngestWorker(ingest, config, on_commit=_notify)
    logger.info("ingest worker %s starting (group %s)", config.client_id, config.share_group)
    try:
        worker.run(stop)
    finally:
        ctx.close()
    s = worker.stats
    logger.info(
        "ingest worker stopped: %d messages, %d readings stored, %d duplicates, %d rejects",
        s.messages,
        s.readings_accepted,
        s.duplicates,
        s.rejects,
    )


def main(argv: list[str] | None = None) -> None:
    """Standalone entry point with the same error convention as ``oracle``: one line, exit 1."""
    try:
        app(args=argv, standalone_mode=True)
    except OracleError as e:
        typer.echo(f"error: {e}", err=True)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main(sys.argv[1:])
