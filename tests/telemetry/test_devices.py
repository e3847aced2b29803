"""Device registry and the CLI: secrets sealed at rest, bindings, revocation, the KEK file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from oracle.config import load_settings
from oracle.devices import Kek, list_devices, load_credentials, load_kek, revoke_device
from oracle.errors import ConfigError, IntegrityError, ValidationError
from oracle.storage.tables import Device

from .conftest import Db, add_device

ROOT = Path(__file__).resolve().parents[2]


def _dump(db: Db) -> bytes:
    """Every row of every table, bytes as hex and raw: what a stolen database dump would show."""
    meta = MetaData()
    meta.reflect(db.engine)
    out: list[bytes] = []
    with db.engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(select(table)):
                for v in row:
                    if isinstance(v, bytes | memoryview):
                        out += [bytes(v), bytes(v).hex().encode()]
                    else:
                        out.append(str(v).encode())
    if db.url.startswith("sqlite"):
        out.append(Path(db.url.split("///", 1)[1]).read_bytes())
    return b"\n".join(out)


def test_secret_is_sealed_at_rest_and_opens_only_with_the_kek(db: Db, kek: Kek) -> None:
    secret = add_device(db, kek, "dev-1")
    assert len(secret) == 32
    dump = _dump(db)
    assert secret not in dump
    assert secret.hex().encode() not in dump
    assert secret.hex().upper().encode() not in dump
    with db.sessions() as s:
        assert load_credentials(s, kek, "dev-1").secret == secret  # type: ignore[union-attr]
        with pytest.raises(ConfigError, match="sealed with key-encryption key"):
            load_credentials(s, Kek.from_bytes(b"\x01" * 32), "dev-1")
        row = s.get(Device, "dev-1")
        assert row is not None
        other = Kek(key=b"\x02" * 32, kek_id=kek.kek_id)  # right id, wrong key: authentication fails
        with pytest.raises(IntegrityError, match="fails authentication"):
            load_credentials(s, other, "dev-1")
        # A ciphertext copied onto another device's row does not open: the device id is bound in.
        s.add(
            Device(
                device_id="dev-2", secret_nonce=row.secret_nonce, secret_ct=row.secret_ct, kek_id=row.kek_id
            )
        )
        s.commit()
        with pytest.raises(IntegrityError):
            load_credentials(s, kek, "dev-2")
    assert "key=" not in repr(kek)


def test_list_revoke_and_refusals(db: Db, kek: Kek) -> None:
    add_device(db, kek, "dev-1", "SHP-9")
    with pytest.raises(ValidationError, match="already exists"):
        add_device(db, kek, "dev-1")
    with pytest.raises(ValidationError, match="must be 1-64"):
        add_device(db, kek, "a/b")
    revoke_device(db.sessions, "dev-1")
    [d] = list_devices(db.sessions)
    assert (d.device_id, d.status, d.bindings[0].shipment_id) == ("dev-1", "revoked", "SHP-9")
    assert d.revoked_at is not None


def test_dev_kek_is_generated_0600_and_prod_requires_one(tmp_path: Path) -> None:
    kek = load_kek(load_settings(data_dir=tmp_path))
    path = tmp_path / "keys" / "device-kek"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_kek(load_settings(data_dir=tmp_path)) == kek
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_kek(load_settings(data_dir=tmp_path))
    prod = load_settings(
        env="prod",
        data_dir=tmp_path,
        database_url="postgresql+psycopg://u@h/db",
        chain_rpc_url="https://rpc.example",
        mqtt_url="mqtt://broker:1883",
    )
    with pytest.raises(ConfigError, match="ORACLE_DEVICE_KEK_FILE"):
        load_kek(prod)
    assert load_kek(load_settings(data_dir=tmp_path, device_kek="ab" * 32)).key == b"\xab" * 32


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oracle.commands.telemetry", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_add_list_revoke(tmp_path: Path) -> None:
    env = {**os.environ, "ORACLE_DATA_DIR": str(tmp_path)}
    added = _cli(
        [
            "devices",
            "add",
            "logger-7",
            "--shipment",
            "SHP-7",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-02-01T00:00:00Z",
        ],
        env,
    )
    assert added.returncode == 0, added.stderr
    secret_hex = added.stdout.strip()
    assert len(bytes.fromhex(secret_hex)) == 32
    assert "shown only once" in added.stderr
    listed = _cli(["devices", "list", "--json"], env)
    assert listed.returncode == 0
    assert '"shipment_id": "SHP-7"' in listed.stdout
    assert '"from": "2026-01-01T00:00:00Z"' in listed.stdout
    assert secret_hex not in listed.stdout + listed.stderr
    table = _cli(["devices", "list"], env)
    assert "logger-7" in table.stdout
    assert "active" in table.stdout
    assert _cli(["devices", "revoke", "logger-7"], env).returncode == 0
    assert '"status": "revoked"' in _cli(["devices", "list", "--json"], env).stdout
    bad = _cli(["devices", "add", "x", "--shipment", "S", "--from", "yesterday"], env)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "error: --from: 'yesterday' is not an ISO-8601 time such as 2026-05-01T10:00:00Z"
    ]
    missing = _cli(["devices", "revoke", "nope"], env)
    assert missing.returncode == 1
    assert "not registered" in missing.stderr
