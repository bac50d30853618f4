"""Packaged models: assembled once from their chunk packages, and never loaded unless they are the pinned SHA-256."""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path

import pytest

from evolve.catalog import CATALOG, DEFAULT_MODEL, SMALLEST_MODEL, Chunk, PackagedModel, cache_dir, model_file
from evolve.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: list[bytes], *, in_place: bool = False,
              name: str = "fake") -> PackagedModel:
    """A model shipped as importable chunk packages under ``tmp_path/site``, cached under ``tmp_path/cache``."""
    site = tmp_path / "site"
    chunks = []
    for n, data in enumerate(parts, start=1):
        module = f"{name}_chunk_part{n}"
        (site / module / "data").mkdir(parents=True)
        (site / module / "__init__.py").write_text("")
        (site / module / "data" / f"part{n:02d}.bin").write_bytes(data)
        chunks.append(Chunk(f"{name}-chunk-part{n}", "1.0", module, f"data/part{n:02d}.bin"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("EVOLVE_MODEL_CACHE", str(tmp_path / "cache"))
    whole = b"".join(parts)
    return PackagedModel(
        name=name, title="a fake model", license="MIT", source="this test", file=f"{name}.gguf",
        sha256=hashlib.sha256(whole).hexdigest(), size=len(whole), chunks=tuple(chunks), context=512, mode="diff",
        max_tokens=64, temperature=0.5, top_p=0.9, top_k=40, repeat_penalty=1.0, in_place=in_place,
    )


def _chunk_file(tmp_path: Path, model: PackagedModel, n: int) -> Path:
    return tmp_path / "site" / model.chunks[n].module / model.chunks[n].path


def test_a_chunked_model_is_assembled_once_into_the_cache_and_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _packaged(tmp_path, monkeypatch, [b"GGUF" + b"a" * 5000, b"b" * 3000, b"c" * 10])
    path = model_file(model)
    assert path == cache_dir() / "fake.gguf" and path.read_bytes() == b"GGUF" + b"a" * 5000 + b"b" * 3000 + b"c" * 10
    stamp = path.stat().st_mtime_ns
    assert model_file(model) == path and path.stat().st_mtime_ns == stamp  # not assembled again
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".fake")] == []  # no partial file left


def test_a_tampered_chunk_is_refused_and_nothing_is_left_to_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _packaged(tmp_path, monkeypatch, [b"x" * 4096, b"y" * 4096])
    chunk = _chunk_file(tmp_path, model, 1)
    chunk.write_bytes(b"y" * 4095 + b"z")  # same size, one byte changed
    with pytest.raises(ConfigError, match=r"refusing to load model fake: .* SHA-256 .* not the pinned .*reinstall"):
        model_file(model)
    assert not (tmp_path / "cache" / "fake.gguf").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.suffix != ".json"] == []


def test_a_chunk_of_the_wrong_size_is_refused_before_anything_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _packaged(tmp_path, monkeypatch, [b"x" * 100, b"y" * 100])
    _chunk_file(tmp_path, model, 0).write_bytes(b"x" * 99)
    with pytest.raises(ConfigError, match="hold 199 bytes, not the pinned 200"):
        model_file(model)


def test_an_assembled_file_tampered_in_the_cache_is_never_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _packaged(tmp_path, monkeypatch, [b"GGUF" + b"w" * 2000])
    path = model_file(model)
    before = path.stat().st_mtime_ns
    path.write_bytes(b"GGUF" + b"evil" * 500)  # same size, other bytes
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))  # a later time, even on a coarse clock
    again = model_file(model)
    assert again.read_bytes() == b"GGUF" + b"w" * 2000  # assembled anew from the verified packages


def test_a_tampered_model_used_in_place_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _packaged(tmp_path, monkeypatch, [b"GGUF" + b"s" * 1000], in_place=True, name="inplace")
    assert model_file(model) == _chunk_file(tmp_path, model, 0)
    _chunk_file(tmp_path, model, 0).write_bytes(b"GGUF" + b"t" * 1000)
    with pytest.raises(ConfigError, match="refusing to load model inplace"):
        model_file(model)


def test_a_missing_package_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _packaged(tmp_path, monkeypatch, [b"a" * 10, b"b" * 10], name="gone")
    model = PackagedModel(**{**{f: getattr(model, f) for f in model.__dataclass_fields__},
                             "chunks": (*model.chunks, Chunk("gone-chunk-part3", "1.0", "gone_chunk_part3", "data/part03.bin"))})
    with pytest.raises(ConfigError, match=r"needs the package gone-chunk-part3==1.0: install it with: pip install "):
        model_file(model)


def test_the_default_and_the_smallest_model_are_installed_by_the_projects_own_dependencies() -> None:
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    for name in (DEFAULT_MODEL, SMALLEST_MODEL):
        missing = [p for p in CATALOG[name].packages if p not in declared]
        assert not missing, f"{name}: pyproject.toml does not pin {missing}"


def test_a_cache_that_cannot_be_written_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _packaged(tmp_path, monkeypatch, [b"a" * 10])
    (tmp_path / "cache").write_text("a file where the cache folder should be")
    with pytest.raises(ConfigError, match=r"cannot prepare model fake in .*cache.*set EVOLVE_MODEL_CACHE to a writable folder"):
        model_file(model)


def test_an_assembled_model_is_readable_by_every_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _packaged(tmp_path, monkeypatch, [b"a" * 10, b"b" * 10])
    assert model_file(model).stat().st_mode & 0o777 == 0o644


def test_the_hashed_install_pins_the_same_versions_as_the_catalog() -> None:
    pinned = {line.split(" --hash=")[0] for line in (ROOT / "scripts" / "model-requirements.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    assert pinned == set(CATALOG[DEFAULT_MODEL].packages) | set(CATALOG[SMALLEST_MODEL].packages)
    extra = {line.split(" --hash=")[0] for line in (ROOT / "scripts" / "model-requirements-extra.txt").read_text().splitlines()
             if line and not line.startswith("#")}
    assert extra == set(CATALOG["qwen2.5-coder-0.5b"].packages)
    assert sorted(extra) == sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["models"])
