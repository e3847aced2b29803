"""``oracle apikeys create|list|revoke``: operator API keys (mounted by ``oracle/cli.py`` as ``apikeys``).

``create`` prints the full key once on stdout (and nothing else there, so ``KEY=$(oracle apikeys create
--role viewer)`` works); only its hash is stored. The audit log records key creation and revocation made
here with the key name ``cli``.
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    help="API keys for the operators' HTTP API (roles: viewer, operator, admin).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _audit(session: object, *, method: str, path: str, resource_id: str, summary: str) -> None:
    from sqlalchemy.orm import Session

    from oracle.storage.api_tables import AuditEntry

    assert isinstance(session, Session)
    session.add(
        AuditEntry(
            key_id=None,
            key_name="cli",
            method=method,
            path=path,
            resource="apikeys",
            resource_id=resource_id,
            summary=summary,
            status=200,
        )
    )


@app.command("create")
def create(
    role: Annotated[str, typer.Option("--role", help="viewer, operator or admin")],
    name: Annotated[str, typer.Option("--name", help="who or what uses the key")] = "unnamed",
) -> None:
    """Create a key with ROLE and print it ONCE; store only its hash."""
    from oracle.api.keys import create_key, parse_role
    from oracle.config import load_settings
    from oracle.context import open_context

    parsed = parse_role(role)
    ctx = open_context(load_settings())
    try:
        with ctx.sessions() as s:
            made = create_key(s, role=parsed, name=name)
            _audit(
                s,
                method="CLI",
                path="oracle apikeys create",
                resource_id=str(made.key.id),
                summary=f"created {parsed.value} key {made.key.name!r} prefix {made.key.prefix}",
            )
            s.commit()
    finally:
        ctx.close()
    typer.echo(made.secret_key)
    typer.echo(
        f"key {made.key.id} ({made.key.name}, {parsed.value}) created; it is shown only once", err=True
    )


@app.command("list")
def list_() -> None:
    """List keys: id, prefix, role, name, created, revoked. Secrets are never shown."""
    from oracle.api.keys import list_keys
    from oracle.config import load_settings
    from oracle.context import open_context

    ctx = open_context(load_settings())
    try:
        with ctx.sessions() as s:
            keys = list_keys(s)
    finally:
        ctx.close()
    for k in keys:
        revoked = k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else "-"
        typer.echo(
            f"{k.id:>4}  ok_{k.prefix}_…  {k.role.value:8}  {k.name:24}  "
            f"{k.created_at.isoformat(timespec='seconds')}  revoked={revoked}"
        )


@app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="key id, prefix, or the full key")],
) -> None:
    """Revoke a key by id or prefix; it stops working at once."""
    from oracle.api.keys import KEY_PATTERN, revoke_key
    from oracle.config import load_settings
    from oracle.context import open_context

    m = KEY_PATTERN.match(key)
    ident: int | str = m.group(1) if m else (int(key) if key.isdigit() else key)
    ctx = open_context(load_settings())
    try:
        with ctx.sessions() as s:
            done = revoke_key(s, ident)
            _audit(
                s,
                method="CLI",
                path="oracle apikeys revoke",
                resource_id=str(done.id),
                summary=f"revoked key {done.name!r} prefix {done.prefix}",
            )
            s.commit()
    finally:
        ctx.close()
    typer.echo(f"key {done.id} ({done.name}) revoked")


if __name__ == "__main__":
    app()
