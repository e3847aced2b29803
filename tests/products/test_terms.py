"""Product terms: good files load, each bad case names its field, and the hash is stable."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from Crypto.Hash import keccak

from oracle.errors import ValidationError
from oracle.products.catalog import find_product, load_product, product_files, products_dir
from oracle.products.terms import canonical_json, load_terms, parse_terms, product_hash
from tests.products.helpers import january_terms, write_product


def test_shipped_products_are_valid_and_named_after_their_files() -> None:
    files = product_files(products_dir())
    assert len(files) >= 2
    for path in files:
        product = load_product(path)
        assert product.terms.id == path.stem
        assert product.reference_series is not None
        assert product.reference_series.is_file()


def test_good_terms_fill_defaults_and_window_limits() -> None:
    terms = parse_terms(
        january_terms(
            coverage={"start_month": 11, "months": 4},
            windows=[
                {"name": "a", "first_month": 11, "last_month": 12, "weight": 0.3},
                {"name": "b", "first_month": 1, "last_month": 2, "weight": 0.7, "trigger": 80, "exit": 30},
            ],
            limit=1001,
        )
    )
    assert terms.deductible == 0
    assert terms.hysteresis is False
    assert terms.grace_months == 0
    # floor(1001 * 0.3) = 300, floor(1001 * 0.7) = 700 (the weights read as the decimals written)
    assert [terms.window_limit(w) for w in terms.windows] == [300, 700]
    assert terms.window_trigger_exit(terms.windows[1]) == (80.0, 30.0)
    assert terms.offset(2) == 3
    assert terms.offset(3) is None


def _set(path: str, value: Any) -> dict[str, Any]:
    terms = copy.deepcopy(january_terms())
    *parents, last = path.split(".")
    node: Any = terms
    for p in parents:
        node = node[int(p)] if p.isdigit() else node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return terms


_DELETE = object()


def _case_id(case: tuple[str, Any, str]) -> str:
    """A test id that is the same in every process (an ``object()``'s repr holds its address)."""
    path, value, _field = case
    return f"{path}=<deleted>" if value is _DELETE else f"{path}={value!r}"


BAD_CASES = [
    ("id", "Bad Id!", "id"),
    ("name", _DELETE, "name"),
    ("index.kind", "ndvi", "index.kind"),
    ("index.months", 0, "index.months"),
    ("period_grid", "weekly", "period_grid"),
    ("coverage.start_month", 13, "coverage.start_month"),
    ("coverage.months", 0, "coverage.months"),
    ("grace_months", -1, "grace_months"),
    ("limit", 0, "limit"),
    ("limit", 2**128, "limit"),
    ("deductible", 1000, "deductible"),
    ("trigger", "high", "trigger"),
    ("exit", 120, "windows.0"),  # rainfall: the exit must be below the trigger
    ("windows.0.weight", 0.5, "windows"),  # weights must sum to 1
    ("windows.0.first_month", 2, "windows.0"),  # outside the January coverage
    ("windows.0.colour", "red", "windows.0.colour"),  # unknown keys are refused
    ("pricing.loading", -0.1, "pricing.loading"),
    ("hysteresis", True, "hysteresis"),  # needs the monthly grid
    ("surprise", 1, "surprise"),
]


@pytest.mark.parametrize(("path", "value", "field"), BAD_CASES, ids=[_case_id(c) for c in BAD_CASES])
def test_bad_terms_name_the_field(path: str, value: Any, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_terms(_set(path, value), source="p.json")
    assert str(err.value).startswith("p.json: ")
    assert f" {field}" in str(err.value) or f"{field}:" in str(err.value), str(err.value)
    assert err.value.reason == "bad_product"


def test_severity_needs_exit_above_trigger_and_windows_must_not_overlap() -> None:
    with pytest.raises(ValidationError, match=r"windows\.0: exit must exceed trigger for severity"):
        parse_terms(january_terms(index={"kind": "severity"}))
    two = [
        {"name": "a", "first_month": 1, "last_month": 2, "weight": 0.5},
        {"name": "b", "first_month": 2, "last_month": 3, "weight": 0.5},
    ]
    with pytest.raises(ValidationError, match=r"windows\.1: overlaps another window"):
        parse_terms(january_terms(coverage={"start_month": 1, "months": 3}, windows=two))


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no such product file"):
        load_terms(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="not YAML"):
        load_terms(tmp_path / "broken.yaml")
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(ValidationError, match="not JSON"):
        load_terms(tmp_path / "broken.json")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="one object"):
        load_terms(tmp_path / "list.yaml")
    other = write_product(tmp_path, january_terms())
    renamed = other.rename(tmp_path / "other-name.json")
    with pytest.raises(ValidationError, match="must match the file name"):
        load_product(renamed)


def test_hash_is_keccak256_of_sorted_compact_utf8_json() -> None:
    terms = parse_terms(january_terms(name="Dürre"))
    canonical = canonical_json(terms)
    assert b" " not in canonical.replace(b"January", b"").replace(b"D\xc3\xbcrre", b"")
    assert "Dürre".encode() in canonical  # UTF-8, not \u escapes
    decoded = json.loads(canonical)
    assert list(decoded) == sorted(decoded)
    assert decoded["deductible"] == 0  # defaults are part of what is hashed
    expected = keccak.new(digest_bits=256, data=canonical).hexdigest()
    assert product_hash(terms) == "0x" + expected
    assert len(product_hash(terms)) == 66


def test_same_terms_in_yaml_and_json_in_any_order_and_spacing_hash_alike(tmp_path: Path) -> None:
    terms = january_terms(
        deductible=0, windows=[{"weight": 1, "last_month": 1, "first_month": 1, "name": "jan"}]
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    as_json = tmp_path / "a" / "jan-rain.json"
    as_json.write_text(json.dumps(terms, indent=4), encoding="utf-8")
    reordered = dict(reversed(list(terms.items())))
    as_yaml = tmp_path / "b" / "jan-rain.yaml"
    as_yaml.write_text("# a comment\n" + yaml.safe_dump(reordered, sort_keys=False), encoding="utf-8")
    compact = tmp_path / "c" / "jan-rain.json"
    compact.write_text(json.dumps(january_terms(), separators=(",", ":")), encoding="utf-8")
    hashes = {product_hash(load_terms(p)) for p in (as_json, as_yaml, compact)}
    assert len(hashes) == 1
    # Any change to a term is another product.
    changed = parse_terms(january_terms(trigger=101))
    assert product_hash(changed) not in hashes


def test_find_product_by_id_or_path(tmp_path: Path) -> None:
    path = write_product(tmp_path, january_terms())
    assert find_product("jan-rain", tmp_path).path == path
    assert find_product(str(path)).terms.id == "jan-rain"
    from oracle.errors import NotFound

    with pytest.raises(NotFound, match="no product 'nope'"):
        find_product("nope", tmp_path)
