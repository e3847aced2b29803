"""Keygen files and permissions, key loading rules, prod refusing a plain key."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path

import pytest
from eth_account import Account
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from oracle.config import Settings
from oracle.errors import ConfigError
from oracle.signer.cli import app
from oracle.signer.keys import SigningKey, decrypt_keystore, load_signing_key
from tests.signer.conftest import ROUTER, SignerKeys, run_cli, signer_env

DEV_KEY = "0x" + "4c" * 32  # a throwaway key made up for these tests


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_keygen_writes_private_files_and_prints_only_the_address(signer_keys: SignerKeys) -> None:
    d = signer_keys.dir
    assert mode(d) == 0o700
    for name in ("keystore.json", "passphrase", "token"):
        assert mode(d / name) == 0o600, name
    keystore = json.loads((d / "keystore.json").read_text())
    assert keystore["version"] == 3
    assert keystore["crypto"]["kdf"] == "scrypt"
    assert signer_keys.keygen_output.splitlines()[0] == signer_keys.address
    assert Account.from_key(signer_keys.private_key_hex).address == signer_keys.address
    assert len(signer_keys.token) >= 32
    assert len(signer_keys.passphrase) >= 32


def cli(args: list[str], data_dir: Path, **env: str) -> Result:
    """The CLI in-process (fast): user-error paths need no separate process to be checked."""
    clean: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ORACLE_")}
    clean.update(ORACLE_ENV="dev", ORACLE_DATA_DIR=str(data_dir))
    clean.update(env)
    return CliRunner().invoke(app, args, env=clean)


def test_keygen_refuses_to_overwrite(signer_keys: SignerKeys, tmp_path: Path) -> None:
    before = (signer_keys.dir / "keystore.json").read_bytes()
    res = cli(["keygen", "--out", str(signer_keys.dir)], tmp_path)
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"error: {signer_keys.dir} already holds keystore.json, passphrase, token; "
        "refusing to overwrite a signer key"
    ]
    assert (signer_keys.dir / "keystore.json").read_bytes() == before


def test_keygen_default_dir_is_in_data_dir(tmp_path: Path) -> None:
    res = cli(["keygen"], tmp_path / "data")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip().startswith("0x")
    assert mode(tmp_path / "data" / "signer") == 0o700
    assert (tmp_path / "data" / "signer" / "keystore.json").exists()


def test_wrong_passphrase_is_a_clear_config_error(signer_keys: SignerKeys) -> None:
    with pytest.raises(ConfigError, match="wrong passphrase") as info:
        decrypt_keystore(signer_keys.dir / "keystore.json", "not the passphrase")
    assert signer_keys.private_key_hex not in str(info.value)


def test_damaged_keystore(tmp_path: Path) -> None:
    (tmp_path / "k.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        decrypt_keystore(tmp_path / "k.json", "x")
    (tmp_path / "k.json").write_text("{}")
    with pytest.raises(ConfigError, match="keystore"):
        decrypt_keystore(tmp_path / "k.json", "x")


def test_signing_key_never_shows_the_key() -> None:
    key = SigningKey.from_hex(DEV_KEY)
    for text in (repr(key), str(key), f"{key}", repr([key])):
        assert DEV_KEY.removeprefix("0x") not in text.lower()
        assert key.address in text
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(ConfigError) as info:
        SigningKey.from_hex("zz" + DEV_KEY[4:])
    assert DEV_KEY[4:] not in str(info.value)
    with pytest.raises(ConfigError):
        SigningKey(b"\x00" * 32)  # zero is not a valid secp256k1 key


def test_plain_key_in_dev_is_loaded(tmp_path: Path) -> None:
    settings = Settings(env="dev", data_dir=tmp_path, signer_private_key=SecretStr(DEV_KEY))
    key = load_signing_key(settings, signer_dir=tmp_path)
    assert key.address == Account.from_key(DEV_KEY).address


def test_plain_key_in_prod_is_refused_by_the_loader(tmp_path: Path) -> None:
    # Settings refuses this combination itself; model_construct skips that to prove the loader's own guard.
    settings = Settings.model_construct(env="prod", data_dir=tmp_path, signer_private_key=SecretStr(DEV_KEY))
    with pytest.raises(ConfigError, match="dev-only") as info:
        load_signing_key(settings, signer_dir=tmp_path)
    assert DEV_KEY[2:] not in str(info.value)


def test_prod_serve_refuses_plain_key(tmp_path: Path) -> None:
    env = signer_env(
        tmp_path,
        ORACLE_ENV="prod",
        ORACLE_SIGNER_PRIVATE_KEY=DEV_KEY,
        ORACLE_DATABASE_URL="postgresql+psycopg://oracle@127.0.0.1:5432/oracle",
        ORACLE_CHAIN_RPC_URL="http://127.0.0.1:8545",
        ORACLE_MQTT_URL="mqtt://127.0.0.1:1883",
    )
    res = run_cli(["serve", "--port", "0", "--chain-id", "31337", "--router", ROUTER], cwd=tmp_path, env=env)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "ORACLE_SIGNER_PRIVATE_KEY" in lines[0]
    assert "Traceback" not in res.stderr
    assert DEV_KEY[2:] not in res.stdout + res.stderr


SERVE = ["serve", "--port", "0", "--chain-id", "31337"]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([*SERVE, "--router", ROUTER], {}, "no keystore at"),
        ([*SERVE, "--router", "0x12"], {}, "is not a 20-byte hex address"),
        (
            [*SERVE, "--router", ROUTER, "--host", "0.0.0.0"],
            {"ORACLE_SIGNER_PRIVATE_KEY": DEV_KEY},
            "not a loopback",
        ),
        ([*SERVE, "--router", ROUTER], {"ORACLE_SIGNER_TOKEN": "short"}, "at least 16 characters"),
        ([*SERVE, "--router", ROUTER, "--subject-rate", "0"], {}, "subject_rate must be positive"),
        (
            [*SERVE, "--router", ROUTER],
            {"ORACLE_SIGNER_PRIVATE_KEY": DEV_KEY, "ORACLE_SIGNER_KEYSTORE": "/nonexistent/k.json"},
            "not both",
        ),
    ],
)
def test_serve_user_errors_are_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    env = {"ORACLE_SIGNER_TOKEN": "t" * 32} | env
    res = cli([*args, "--dir", str(tmp_path / "signer")], tmp_path, **env)
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: ")
    assert message in res.stderr
    assert DEV_KEY[2:] not in res.stdout + res.stderr


def test_serve_without_router_is_a_usage_error(tmp_path: Path) -> None:
    res = cli(SERVE, tmp_path)
    assert res.exit_code == 2
    assert "Missing option '--router'" in res.stderr


def test_keygen_keeps_the_passphrase_away_from_the_keystore(tmp_path: Path) -> None:
    """Issue 16 item 6: outside the explicit dev mode the passphrase is never written beside the keystore."""
    signer_dir = tmp_path / "data" / "signer"
    res = cli(["keygen"], tmp_path / "data")
    assert res.exit_code == 0, res.stderr
    assert not (signer_dir / "passphrase").exists()
    shown = res.stderr.strip().rsplit(": ", 1)[1]
    key = decrypt_keystore(signer_dir / "keystore.json", shown)  # the one printed copy opens it
    assert key.address == res.stdout.strip()
    assert shown not in res.stdout

    elsewhere = tmp_path / "secrets" / "signer-passphrase"
    elsewhere.parent.mkdir()
    res = cli(["keygen", "--out", str(tmp_path / "b"), "--passphrase-file", str(elsewhere)], tmp_path)
    assert res.exit_code == 0, res.stderr
    assert mode(elsewhere) == 0o600
    assert not (tmp_path / "b" / "passphrase").exists()
    assert "passphrase" not in res.stderr

    beside = cli(
        ["keygen", "--out", str(tmp_path / "c"), "--passphrase-file", str(tmp_path / "c" / "p")], tmp_path
    )
    assert beside.exit_code == 2
    assert "beside the keystore" in beside.stderr
    prod_settings = {
        "ORACLE_ENV": "prod",
        "ORACLE_DATABASE_URL": "postgresql+psycopg://oracle@db.example/oracle",
        "ORACLE_CHAIN_RPC_URL": "https://rpc.example.org",
        "ORACLE_MQTT_URL": "mqtts://broker.example:8883",
    }
    prod = cli(["keygen", "--out", str(tmp_path / "d"), "--dev"], tmp_path, **prod_settings)
    assert prod.exit_code == 2
    assert "--dev" in prod.stderr
    assert not (tmp_path / "d" / "keystore.json").exists()
