"""Settings: one class, environment prefix ``ORACLE_``, optional ``.env`` file.

Built on demand by :func:`load_settings`, never at import time. A wrong value stops start-up with a
:class:`~oracle.errors.ConfigError` naming the variable and what is expected. In ``prod`` the unsafe
development conveniences are refused: dev keys, missing secrets, plain ``http://`` RPC to a remote host.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from oracle.errors import ConfigError

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "anvil"}


def _is_local_host(host: str | None) -> bool:
    if not host:
        return False
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ORACLE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    env: Literal["dev", "prod"] = Field("dev", description="dev allows generated keys and local defaults")
    data_dir: Path = Field(Path("./data"), description="where SQLite, blobs, keys and deployments live")
    database_url: str = Field("", description="SQLAlchemy URL; empty means SQLite in the data dir")
    chain_rpc_url: str = Field("", description="EVM JSON-RPC URL; empty means a local anvil in dev")
    chain_confirmations: int = Field(1, ge=0, le=256, description="blocks before a tx or event is final")
    mqtt_url: str = Field("", description="mqtt://host:port; empty means a local mosquitto in dev")
    mqtt_username: str = Field(
        "",
        max_length=64,
        description="broker user of this node's MQTT clients (the ingest worker's credential; the broker "
        "refuses anonymous clients); empty = connect without one (a local mosquitto supplies its own)",
    )
    mqtt_password_file: Path | None = Field(
        None, description="file holding ORACLE_MQTT_USERNAME's broker password (never in the URL or env)"
    )
    mqtt_ca_file: Path | None = Field(
        None, description="CA certificate (PEM) that signed the broker's TLS certificate, for mqtts://"
    )
    mqtt_admin_username: str = Field(
        "",
        max_length=64,
        description="broker user allowed to manage device credentials (mosquitto dynamic-security); "
        "empty = `oracle devices add` issues no broker credential",
    )
    mqtt_admin_password_file: Path | None = Field(
        None, description="file holding ORACLE_MQTT_ADMIN_USERNAME's broker password"
    )
    api_host: str = Field("127.0.0.1", description="address the HTTP API binds")
    api_port: int = Field(8000, ge=0, le=65535, description="port of the HTTP API (0 = any free port)")
    signer_url: str = Field("", description="URL of the signer service; empty means the local one")
    signer_token: SecretStr | None = Field(None, description="bearer token for the signer service")
    signer_private_key: SecretStr | None = Field(None, description="dev only: raw key for the signer")
    signer_keystore: Path | None = Field(None, description="eth-account v3 keystore file for the signer")
    signer_passphrase_file: Path | None = Field(None, description="file holding the keystore passphrase")
    signer_passphrase: SecretStr | None = Field(None, description="keystore passphrase (prefer the file)")
    chainlink_bridge_token: SecretStr | None = Field(None, description="bearer token for POST /adapter")
    chainlink_operator: str = Field(
        "", description="Chainlink Operator address to follow (default: deployed)"
    )
    chainlink_jobs: str = Field(
        "", description='JSON {"0x<job id>": "drought-severity" | "coldchain-breach"}'
    )
    chainlink_min_payment: int = Field(0, ge=0, description="least LINK payment (juels) a request must carry")
    chainlink_node_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="base URLs of the Chainlink nodes the adapter may PATCH async results to (comma-"
        "separated or a JSON list); a responseURL elsewhere is refused; empty: async responses are refused",
    )
    chainlink_adapter_max_queue: int = Field(
        32, ge=1, le=10000, description="adapter evaluations queued or running at once; more answer 429"
    )
    chainlink_adapter_enabled: bool | None = Field(
        None,
        description="serve POST /adapter: unset = in dev always, in prod only with a bridge token (without "
        "one every request answers 401); true = always (prod refuses to start without the token); "
        "false = never",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="text: one readable line per event; json: one JSON object per line"
    )
    dask_scheduler: str = Field(
        "",
        pattern=r"^(|off|local(:[1-9][0-9]{0,2})?|tcp://[^\s/]+:[0-9]{1,5})$",
        description="Dask for gridded work (zonal means, SPI): empty = a LocalCluster on 127.0.0.1 started "
        "only for large work (backfills, large evaluations); local[:N] = the same with N workers; "
        "tcp://HOST:PORT = connect to a running scheduler; off = always in this process",
    )

    # --- Telemetry ingest (MQTT worker, HTTP gateway path, device secrets) ---
    mqtt_client_id: str = Field(
        "oracle-ingest-1",
        min_length=1,
        max_length=64,
        description="fixed MQTT client id of this ingest worker: its persistent session lives under it",
    )
    mqtt_share_group: str = Field(
        "oracle-ingest",
        pattern=r"^[A-Za-z0-9_-]{0,64}$",
        description="shared-subscription group: workers in one group split the telemetry stream; empty = "
        "a plain subscription (one worker; mosquitto 2.0 keeps its queue across a broker restart)",
    )
    mqtt_session_expiry_s: int = Field(
        7 * 24 * 3600,
        ge=60,
        le=4294967294,
        description="MQTT v5 SessionExpiryInterval: how long the broker queues readings for a down worker",
    )
    mqtt_receive_maximum: int = Field(
        2000, ge=10, le=65535, description="MQTT v5 Receive Maximum: unacknowledged readings in flight"
    )
    run_ingest_worker: bool = Field(
        True,
        description="`oracle run` consumes MQTT telemetry in a worker thread of its own; false when separate "
        "`oracle ingest telemetry` workers do (the service's scheduler still runs their evaluations)",
    )
    telemetry_batch_size: int = Field(500, ge=1, le=10000, description="messages per ingest commit")
    telemetry_batch_ms: int = Field(50, ge=1, le=10000, description="longest wait before a commit, ms")
    telemetry_max_future_skew_s: int = Field(
        300, ge=0, le=86400, description="a reading stamped further ahead of the clock is refused"
    )
    telemetry_reorder_window_s: int = Field(
        7 * 24 * 3600,
        ge=0,
        description="readings older than the device's newest reading by more than this are refused",
    )
    telemetry_http_device_rate_per_s: float = Field(
        5.0, gt=0, description="POST /v1/telemetry: sustained authenticated posts per second per device"
    )
    telemetry_http_device_burst: int = Field(
        30, ge=1, description="POST /v1/telemetry: posts a device may send at once before the rate applies"
    )
    telemetry_http_source_rate_per_s: float = Field(
        50.0, gt=0, description="POST /v1/telemetry: sustained posts per second per source address"
    )
    telemetry_http_source_burst: int = Field(
        200, ge=1, description="POST /v1/telemetry: posts a source address may send at once"
    )
    device_kek_file: Path | None = Field(
        None, description="file holding the 32-byte device-secret key-encryption key (hex or raw)"
    )
    device_kek: SecretStr | None = Field(
        None, description="the device-secret key-encryption key as 64 hex chars (prefer the file)"
    )

    # --- STAC polling: what catalogs, items and assets may be read, and how much (ingest/fetch.py) ---
    stac_allow_http: bool = Field(
        False, description="also read plain http:// STAC URLs (default: https only)"
    )
    stac_file_root: Path | None = Field(
        None, description="local catalogs and file hrefs are read only under this directory (unset: none)"
    )
    stac_allowed_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs a STAC host may resolve to besides public addresses, e.g. 10.0.0.0/8,127.0.0.1/32 "
        "(comma-separated or a JSON list); loopback, link-local and private addresses are refused otherwise",
    )
    stac_max_asset_bytes: int = Field(2 * 1024**3, ge=1, description="largest asset read, bytes")
    stac_max_document_bytes: int = Field(
        32 * 1024**2, ge=1, description="largest catalog, item or search page read, bytes"
    )
    stac_connect_timeout_s: float = Field(10.0, gt=0, description="TCP connect timeout, seconds")
    stac_read_timeout_s: float = Field(60.0, gt=0, description="longest wait for the next bytes, seconds")
    stac_fetch_deadline_s: float = Field(900.0, gt=0, description="longest whole download, seconds")
    stac_max_redirects: int = Field(5, ge=0, le=20, description="redirects followed per fetch")

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, v: str) -> str:
        if v and not v.startswith(("sqlite", "postgresql+psycopg://", "postgresql://")):
            raise ValueError("expected sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB")
        if v.startswith("postgresql://"):
            v = "postgresql+psycopg://" + v.removeprefix("postgresql://")
        return v

    @field_validator("chain_rpc_url")
    @classmethod
    def _check_rpc_url(cls, v: str) -> str:
        if v and urlparse(v).scheme not in ("http", "https", "ws", "wss"):
            raise ValueError("expected an http(s):// or ws(s):// JSON-RPC URL")
        return v

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, v: str) -> str:
        if v:
            u = urlparse(v)
            if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
                raise ValueError("expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        return v

    @field_validator("chainlink_node_urls", "stac_allowed_networks", mode="before")
    @classmethod
    def _split_list(cls, v: object) -> object:
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as e:
                    raise ValueError(f"starts with '[' but is not a JSON list ({e})") from None
            return [part.strip() for part in text.split(",") if part.strip()]
        return v

    @field_validator("chainlink_node_urls")
    @classmethod
    def _check_node_urls(cls, v: list[str]) -> list[str]:
        for url in v:
            u = urlparse(url)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise ValueError(f"{url!r}: expected http(s)://HOST[:PORT][/PATH]")
            if u.username is not None or u.password is not None or u.query or u.fragment:
                raise ValueError(f"{url!r}: a node base URL has no user info, query or fragment")
        return v

    @field_validator("stac_allowed_networks")
    @classmethod
    def _check_networks(cls, v: list[str]) -> list[str]:
        for net in v:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as e:
                raise ValueError(f"{net!r}: expected a CIDR like 10.0.0.0/8 or fd00::/8 ({e})") from None
        return v

    @model_validator(mode="after")
    def _mqtt_logins_come_in_pairs(self) -> Settings:
        for user, pw, name in (
            (self.mqtt_username, self.mqtt_password_file, "MQTT"),
            (self.mqtt_admin_username, self.mqtt_admin_password_file, "MQTT_ADMIN"),
        ):
            if bool(user) != (pw is not None):
                raise ValueError(
                    f"ORACLE_{name}_USERNAME and ORACLE_{name}_PASSWORD_FILE go together "
                    "(set both or neither)"
                )
        return self

    @model_validator(mode="after")
    def _adapter_needs_a_token_in_prod(self) -> Settings:
        if self.env == "prod" and self.chainlink_adapter_enabled and self.chainlink_bridge_token is None:
            raise ValueError(
                "ORACLE_CHAINLINK_BRIDGE_TOKEN: ORACLE_CHAINLINK_ADAPTER_ENABLED=true in prod needs a bridge "
                "token (or leave the adapter off)"
            )
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_prod(self) -> Settings:
        if self.env != "prod":
            return self
        problems = []
        if self.signer_private_key is not None:
            problems.append("ORACLE_SIGNER_PRIVATE_KEY: a plain private key is a dev-only convenience")
        if not self.database_url or self.database_url.startswith("sqlite"):
            problems.append("ORACLE_DATABASE_URL: prod needs postgresql+psycopg://...")
        if not self.chain_rpc_url:
            problems.append("ORACLE_CHAIN_RPC_URL: prod needs an explicit RPC URL")
        else:
            u = urlparse(self.chain_rpc_url)
            if u.scheme in ("http", "ws") and not _is_local_host(u.hostname):
                problems.append("ORACLE_CHAIN_RPC_URL: plain http/ws to a non-local host; use https/wss")
        if not self.mqtt_url:
            problems.append("ORACLE_MQTT_URL: prod needs an explicit broker URL")
        if self.signer_url and self.signer_token is None:
            problems.append("ORACLE_SIGNER_TOKEN: a remote signer needs a bearer token")
        if problems:
            raise ValueError("unsafe for ORACLE_ENV=prod: " + "; ".join(problems))
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'oracle.sqlite3').resolve()}"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def deployment_file(self) -> Path:
        return self.data_dir / "deployment.json"


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (and ``.env``), translating validation errors."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            var = f"ORACLE_{loc.upper()}" if loc else "settings"
            lines.append(f"{var}: {err['msg']}")
        raise ConfigError("invalid configuration: " + "; ".join(lines)) from None
