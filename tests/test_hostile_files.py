"""Issue 25, files: r1 reads only the files another tool's store names, only as what they are (a regular
file inside that tool's folder, a settings layer with its digest's bytes), leaves no link behind when
an import fails, and keeps R1_HOME, its index and its key files private to the daemon's user.

The folders here are laid out as a hostile user of a shared daemon would lay them out: links named as
blobs that lead to the daemon's own key file, a FIFO, a folder, /dev/zero, a file swapped mid-check."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemons import Daemon, private_daemon
from tests.support.fakeollama import LICENSE, MODEL, SYSTEM
from r1.daemon.errors import InsufficientStorage
from r1.daemon.intake import files as file_intake
from r1.daemon.intake.files import import_model
from r1.daemon.intake.tools import discover, importing as tool_intake
from r1.daemon.server import bind_unix_socket
from r1.daemon.store import Confinement, RefusedFileError, Store, open_regular, parse_name
from r1.daemon.store.confined import pinned_path
from r1.daemon.store import external
from tests.support.tinymlx import write_mlx_model
from tests.support.tinymodels import write_split_gguf, write_tiny_gguf
from tests.support.toolstores import hf_ref, hf_snapshot_file, ollama_blob, ollama_manifest, sha256_hex

KEY = "sk-hostile-files-0123456789"
REMOTE = "up"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def import_json(daemon: Daemon, *args: str, timeout: float = 30) -> tuple[int, str]:
    """`r1 import --json ARGS`: its exit status and everything it printed."""
    result = daemon.cli("import", "--json", *args, check=False, timeout=timeout)
    return result.returncode, result.stdout + result.stderr


def listed(daemon: Daemon, tool: str, root: Path) -> dict[str, dict[str, Any]]:
    code, out = import_json(daemon, "--from", tool, "--dir", str(root), "--dry-run")
    assert code == 0, out
    return {model["name"]: model for model in json.loads(out)["models"]}


def store_text(home: Path) -> str:
    """Every row of the store's index, as SQL."""
    with sqlite3.connect(home / "r1.db") as db:
        return "\n".join(db.iterdump())


def names_of(home: Path, folder: str) -> set[str]:
    return set(os.listdir(home / folder))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One daemon for the module, with a remote whose key is kept in R1_HOME/remotes/up.key, added as
    `r1 remote add --api-key-file` adds it."""
    root = tmp_path_factory.mktemp("hostile-files")
    with private_daemon(root) as daemon:
        key_file = root / "key.txt"
        key_file.write_text(KEY + "\n")
        daemon.cli("remote", "add", REMOTE, "http://127.0.0.1:9/v1", "--api-key-file", str(key_file))
        yield daemon


@pytest.fixture(scope="module")
def mlx_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mlx_model(tmp_path_factory.mktemp("mlx") / "tiny-mlx")


def key_file(daemon: Daemon) -> Path:
    path = daemon.home / "remotes" / f"{REMOTE}.key"
    assert path.read_text().strip() == KEY
    return path


def ollama_with_model(root: Path, tmp_path: Path) -> dict:
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    gguf = write_tiny_gguf(tmp_path / "model.gguf", name="hostile")
    return ollama_blob(root, gguf.read_bytes())


# --- reads outside the store ------------------------------------------------------------------------


def test_a_license_layer_linked_to_the_daemons_key_file_is_refused_and_the_key_shown_nowhere(
        shared: Daemon, tmp_path: Path) -> None:
    root = tmp_path / "ollama"
    model = ollama_with_model(root, tmp_path)
    claimed = "sha256:" + sha256_hex(b"any digest will do")
    link = root / "blobs" / claimed.replace(":", "-")
    link.symlink_to(key_file(shared))
    ollama_manifest(root, "registry.ollama.ai", "library", "leak", "latest",
                    [(MODEL, model), (LICENSE, {"digest": claimed, "size": len(KEY) + 1})])

    found = listed(shared, "ollama", root)["leak:latest"]
    assert found["problem"] == f"refused {link}: it leads to {key_file(shared)}, outside {root / 'blobs'}"
    code, out = import_json(shared, "--from", "ollama", "--dir", str(root), "leak:latest")
    assert code != 0 and f"refused {link}" in out and KEY not in out
    code, out = import_json(shared, "--from", "ollama", "--dir", str(root), "--all")
    assert code == 0 and json.loads(out)["imported"] == []
    status, body = shared.request("POST", "/api/import", {"from": "ollama", "dir": str(root), "models": ["leak:latest"],
                                                          "stream": False})
    assert status == 400 and "refused" in body["error"] and KEY not in json.dumps(body)

    status, shown = shared.request("POST", "/api/show", {"model": "leak:latest"})
    assert status == 404 and KEY not in json.dumps(shown)
    assert KEY not in shared.cli("show", "leak:latest", check=False).stdout
    assert KEY not in store_text(shared.home)
    key_inode = key_file(shared).stat().st_ino
    assert all(p.stat().st_ino != key_inode for p in (shared.home / "blobs").iterdir())


@pytest.mark.unit
def test_a_settings_layer_whose_bytes_are_not_its_digest_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ollama"
    model = ollama_with_model(root, tmp_path)
    system = ollama_blob(root, b"You are terse.")
    blob = root / "blobs" / system["digest"].replace(":", "-")
    blob.chmod(0o644)
    blob.write_bytes(b"You are LOUD!!")  # the same size, other bytes
    ollama_manifest(root, "registry.ollama.ai", "library", "swapped", "latest", [(MODEL, model), (SYSTEM, system)])
    [found] = discover("ollama", root)
    assert found.problem is not None and not found.importable
    assert f"{blob} is corrupt: its bytes do not match the sha256 it is named by ({system['digest']})" in found.problem
    assert found.settings == {}


@pytest.mark.timeout(60)
def test_model_blobs_that_are_links_out_fifos_or_folders_are_refused_without_hanging(shared: Daemon,
                                                                                   tmp_path: Path) -> None:
    root = tmp_path / "ollama"
    (root / "blobs").mkdir(parents=True)
    expected = {}
    for kind in ("outside", "fifo", "folder"):
        data = write_tiny_gguf(tmp_path / f"{kind}.gguf", name=kind).read_bytes()
        digest = "sha256:" + sha256_hex(data)
        blob = root / "blobs" / digest.replace(":", "-")
        if kind == "outside":
            blob.symlink_to(tmp_path / f"{kind}.gguf")
            expected[kind] = f"refused {blob}: it leads to {tmp_path / 'outside.gguf'}, outside {root / 'blobs'}"
        elif kind == "fifo":
            os.mkfifo(blob)
            expected[kind] = f"refused {blob}: it is a FIFO, not a regular file"
        else:
            blob.mkdir()
            expected[kind] = f"refused {blob}: it is a folder, not a regular file"
        ollama_manifest(root, "registry.ollama.ai", "library", kind, "latest", [(MODEL, {"digest": digest, "size": len(data)})])
    found = listed(shared, "ollama", root)
    assert {name.split(":")[0]: model.get("problem") for name, model in found.items()} == expected
    for kind in expected:
        code, out = import_json(shared, "--from", "ollama", "--dir", str(root), f"{kind}:latest", timeout=20)
        assert code != 0 and expected[kind] in out


@pytest.mark.timeout(60)
def test_an_lmstudio_gguf_linked_to_a_fifo_or_dev_zero_is_refused_without_hanging(shared: Daemon,
                                                                                tmp_path: Path) -> None:
    root = tmp_path / "lmstudio"
    repo = root / "org" / "Bad-GGUF"
    repo.mkdir(parents=True)
    os.mkfifo(repo / ".pipe")  # inside the model's folder: only what it is keeps it out
    (repo / "Bad-Q8_0.gguf").symlink_to(repo / ".pipe")
    (repo / "Bad-Q4_0.gguf").symlink_to("/dev/zero")
    found = listed(shared, "lmstudio", root)
    assert found["hf.co/org/Bad-GGUF:Q8_0"]["problem"] == f"refused {repo / 'Bad-Q8_0.gguf'}: it is a FIFO, not a regular file"
    assert found["hf.co/org/Bad-GGUF:Q4_0"]["problem"] == (f"refused {repo / 'Bad-Q4_0.gguf'}: it leads to /dev/zero, "
                                                           f"outside {repo}")
    code, out = import_json(shared, "--from", "lmstudio", "--dir", str(root), "hf.co/org/Bad-GGUF:Q8_0", timeout=20)
    assert code != 0 and "it is a FIFO" in out


def mlx_files_with_a_leaking_template(folder: Path, target: Path, mlx_model: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for file in mlx_model.iterdir():
        if file.name != "chat_template.jinja":
            shutil.copyfile(file, folder / file.name)
    (folder / "chat_template.jinja").symlink_to(target)


def test_an_mlx_chat_template_linked_out_of_the_tools_folder_is_refused(shared: Daemon, tmp_path: Path,
                                                                       mlx_model: Path) -> None:
    cache = tmp_path / "hf"
    repo = cache / "models--mlx-community--leaky-mlx"
    for file in sorted(mlx_model.iterdir()):
        if file.name != "chat_template.jinja":
            hf_snapshot_file(repo, "d" * 40, file.name, file.read_bytes(), lfs=file.suffix == ".safetensors")
    template = repo / "snapshots" / ("d" * 40) / "chat_template.jinja"
    template.symlink_to(key_file(shared))
    hf_ref(repo, "d" * 40)
    lmstudio = tmp_path / "lmstudio"
    mlx_files_with_a_leaking_template(lmstudio / "mlx-community" / "leaky-mlx", key_file(shared), mlx_model)

    hf = listed(shared, "hf", cache)["hf.co/mlx-community/leaky-mlx:mlx"]
    assert hf["problem"] == f"refused {template}: it leads to {key_file(shared)}, outside {repo}"
    lms = listed(shared, "lmstudio", lmstudio)["hf.co/mlx-community/leaky-mlx:mlx"]
    assert lms["problem"].startswith(f"refused {lmstudio / 'mlx-community' / 'leaky-mlx' / 'chat_template.jinja'}")
    code, out = import_json(shared, "--from", "hf", "--dir", str(cache), "hf.co/mlx-community/leaky-mlx:mlx")
    assert code != 0 and "refused" in out
    status, shown = shared.request("POST", "/api/show", {"model": "hf.co/mlx-community/leaky-mlx:mlx"})
    assert status == 404 and KEY not in json.dumps(shown)


def test_r1_import_of_a_folder_whose_template_links_into_r1_home_is_refused(shared: Daemon, tmp_path: Path,
                                                                           mlx_model: Path) -> None:
    folder = tmp_path / "mine"
    mlx_files_with_a_leaking_template(folder, key_file(shared), mlx_model)
    before = names_of(shared.home, "blobs")
    status, body = shared.request("POST", "/api/import", {"path": str(folder), "model": "leaky", "stream": False})
    assert status == 400, body
    assert body["error"] == (f"refused {folder / 'chat_template.jinja'}: it leads to {key_file(shared)}, inside r1's "
                             "own private folder (R1_HOME); r1 cp copies a model already in the store")
    assert KEY not in shared.cli("list").stdout + store_text(shared.home)
    assert names_of(shared.home, "blobs") == before and names_of(shared.home, "partial") == set()


# --- a failed import leaves no link -----------------------------------------------------------------


def test_a_failed_multi_file_import_leaves_no_link_in_blobs_or_partial(shared: Daemon, tmp_path: Path) -> None:
    cache = tmp_path / "hf"
    repo = cache / "models--org--Split-GGUF"
    shards = write_split_gguf(tmp_path / "split", "Split-Q8_0", name="hostile-split")
    for number, shard in enumerate(shards):
        data = shard.read_bytes()
        etag = hf_snapshot_file(repo, "a" * 40, shard.name, data, lfs=True)
        if number == 1:  # the second file's bytes are not the sha256 it is named by: refused after the first is in
            blob = repo / "blobs" / str(etag)
            blob.chmod(0o644)
            blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    hf_ref(repo, "a" * 40)
    before = names_of(shared.home, "blobs")
    code, out = import_json(shared, "--from", "hf", "--dir", str(cache), "hf.co/org/Split-GGUF:Q8_0")
    assert code != 0 and "is corrupt" in out
    assert names_of(shared.home, "blobs") == before and names_of(shared.home, "partial") == set()
    assert all(s.read_bytes() for s in (repo / "blobs").iterdir())  # the other tool's files stay


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "home")
    opened.open()
    yield opened
    opened.close()


def test_a_users_split_gguf_whose_second_file_fails_leaves_nothing(store: Store, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    shards = write_split_gguf(tmp_path / "mine", "Mine-Q8_0", name="mine")
    ingest = Store.ingest

    def ingest_until_the_disk_fills(self: Store, path: Path, **kw: Any) -> Any:
        if path == shards[1]:
            raise InsufficientStorage("no space left on the device")
        return ingest(self, path, **kw)

    monkeypatch.setattr(Store, "ingest", ingest_until_the_disk_fills)
    with pytest.raises(InsufficientStorage):
        import_model(store, shards[0], parse_name("mine:1"))
    assert list(store.blobs.dir.iterdir()) == [] and list(store.blobs.partial.iterdir()) == []
    assert store.models() == [] and all(shard.is_file() for shard in shards)


@pytest.mark.unit
def test_r1_import_refuses_a_shard_linked_into_r1_home_before_reading_it(store: Store, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    shards = write_split_gguf(tmp_path / "mine", "Mine-Q8_0", name="mine")
    private_copy = store.home / "stolen.gguf"
    shards[1].rename(private_copy)
    shards[1].symlink_to(private_copy)

    def no_reading(*args: object) -> None:
        raise AssertionError("read a file r1 refuses")

    monkeypatch.setattr(file_intake, "read_metadata", no_reading)
    with pytest.raises(RefusedFileError, match="inside r1's own private folder"):
        import_model(store, shards[0], parse_name("mine:1"))
    assert list(store.blobs.dir.iterdir()) == [] and store.models() == []


# --- the check cannot be raced ----------------------------------------------------------------------


@pytest.mark.unit
def test_a_folder_swapped_for_a_link_after_the_check_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inside, outside = tmp_path / "tool" / "blobs", tmp_path / "secret"
    (inside / "sub").mkdir(parents=True)
    (inside / "sub" / "layer").write_text("harmless")
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "layer").write_text(KEY)
    checked = Confinement.check

    def check_then_swap(self: Confinement, path: Path, real: Path) -> None:
        checked(self, path, real)
        if (inside / "sub").is_dir() and not (inside / "sub").is_symlink():
            (inside / "sub").rename(inside / "old")
            (inside / "sub").symlink_to(outside / "sub")

    monkeypatch.setattr(Confinement, "check", check_then_swap)
    with (pytest.raises(RefusedFileError, match="outside"),
          open_regular(inside / "sub" / "layer", Confinement(inside)) as opened):
        pytest.fail(f"read {opened.file.read()!r}")


@pytest.mark.unit
def test_a_file_swapped_for_a_link_after_the_check_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "blobs").mkdir()
    layer = tmp_path / "blobs" / "layer"
    layer.write_text("harmless")
    (tmp_path / "secret").write_text(KEY)
    checked = Confinement.check

    def check_then_swap(self: Confinement, path: Path, real: Path) -> None:
        checked(self, path, real)
        layer.unlink()
        layer.symlink_to(tmp_path / "secret")

    monkeypatch.setattr(Confinement, "check", check_then_swap)
    with pytest.raises(RefusedFileError, match="became a link"), open_regular(layer, Confinement(tmp_path / "blobs")):
        pass


def test_a_file_replaced_between_opening_and_linking_is_refused(store: Store, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(4096)
    blob = tmp_path / "ollama" / "blobs" / ("sha256-" + hashlib.sha256(data).hexdigest())
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    (tmp_path / "other").write_bytes(os.urandom(4096))
    monkeypatch.setattr(external, "reflink", lambda src, dst: False)
    linked = external._hard_link

    def replace_then_link(src: Path, tmp: Path) -> bool:
        os.replace(tmp_path / "other", src)  # the tool's folder changes under r1
        return linked(src, tmp)

    monkeypatch.setattr(external, "_hard_link", replace_then_link)
    with pytest.raises(RefusedFileError, match="replaced while r1 linked it"):
        store.adopt(blob, sha256=blob.name, inside=blob.parent)
    assert list(store.blobs.dir.iterdir()) == [] and list(store.blobs.partial.iterdir()) == []


def test_a_symlinked_file_swapped_after_it_was_taken_in_is_read_as_it_was_imported(
        store: Store, tmp_path: Path, mlx_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hf"
    repo = cache / "models--org--swap-mlx"
    for file in sorted(mlx_model.iterdir()):
        hf_snapshot_file(repo, "d" * 40, file.name, file.read_bytes(), lfs=file.suffix == ".safetensors")
    hf_ref(repo, "d" * 40)
    [found] = discover("hf", cache)
    secret = store.home / "remotes" / "up.key"
    secret.parent.mkdir()
    secret.write_text(KEY)

    def no_link(src: object, dst: object) -> None:  # another device: blobs/ gets symlinks to the tool's files
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(external, "reflink", lambda src, dst: False)
    monkeypatch.setattr(os, "link", no_link)
    template = next(file.source for file in found.files if file.path == "chat_template.jinja")
    read = file_intake.read_metadata  # what stored_facts reads the staged files with

    def read_while_swapped(fmt: str, files: list[Path]) -> Any:  # the folder's owner swaps the file under r1
        template.rename(template.with_name("aside"))
        template.symlink_to(secret)
        try:
            return read(fmt, files)
        finally:
            template.unlink()
            template.with_name("aside").rename(template)

    monkeypatch.setattr(file_intake, "read_metadata", read_while_swapped)
    record, _, copied = tool_intake.import_found(store, found, trust=False, emit=lambda event: None)
    assert copied == 0 and record.manifest.facts.chat_template == (mlx_model / "chat_template.jinja").read_text()
    assert KEY not in record.manifest.canonical_json() + store_text(store.home)


@pytest.mark.unit
def test_a_pinned_path_reads_the_open_file_whatever_its_path_leads_to_now(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.write_text("harmless")
    (tmp_path / "secret").write_text(KEY)
    with open_regular(layer) as opened:
        pinned = pinned_path(opened)
        layer.rename(tmp_path / "aside")
        layer.symlink_to(tmp_path / "secret")  # the folder's owner swaps the file under r1
        assert pinned.read_text() == "harmless" and pinned.read_text() == "harmless"  # each open reads from the start


# --- files others can read --------------------------------------------------------------------------


def test_a_new_store_is_private_and_the_daemon_writes_with_umask_077(shared: Daemon) -> None:
    home = shared.home
    assert mode(home) == 0o700
    for name in ("r1.db", "r1.db-wal", "r1.db-shm"):
        assert mode(home / name) == 0o600, name
    assert (mode(home / "remotes"), mode(key_file(shared))) == (0o700, 0o600)
    pid = int((home / "daemon.lock").read_text())
    umask = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Umask:"))
    assert umask.split()[1] == "0077"


def test_an_existing_open_install_is_made_private_at_start_up(tmp_path: Path) -> None:
    root = tmp_path / "old"
    root.mkdir()
    home = root / "home"
    with private_daemon(root) as daemon:
        daemon.cli("remote", "add", REMOTE, "http://127.0.0.1:9/v1", "--api-key-file", str(write_key(tmp_path)))
    # As an older r1 left it under a 022 umask, with -wal and -shm kept by a reader (the key file as a
    # careless hand made it).
    held = sqlite3.connect(home / "r1.db")
    held.execute("SELECT count(*) FROM sqlite_master").fetchall()
    os.chmod(home, 0o755)
    os.chmod(home / "remotes", 0o755)
    for path in (home / "r1.db", home / "r1.db-wal", home / "r1.db-shm", home / "remotes" / f"{REMOTE}.key"):
        os.chmod(path, 0o644)
    with private_daemon(root) as daemon:
        assert mode(home) == 0o700
        for name in ("r1.db", "r1.db-wal", "r1.db-shm"):
            assert mode(home / name) == 0o600, name
        assert (mode(home / "remotes"), mode(home / "remotes" / f"{REMOTE}.key")) == (0o700, 0o600)
        log = daemon.log()
    held.close()
    assert f"made {home} private: it was mode 0755, open to other users; now 0700" in log
    assert f"made {home / 'r1.db'} private: it was mode 0644, open to other users; now 0600" in log


def write_key(tmp_path: Path) -> Path:
    path = tmp_path / "key.txt"
    path.write_text(KEY + "\n")
    return path


def test_a_group_socket_gets_a_folder_the_group_may_pass_and_never_the_store(tmp_path: Path) -> None:
    sock_dir = Path(tempfile.mkdtemp(prefix="r1-", dir="/tmp"))
    socket_path = sock_dir / "run" / "r1.sock"  # a folder the daemon makes
    try:
        with private_daemon(tmp_path, R1_SOCKET=str(socket_path), R1_SOCKET_MODE="0660") as daemon:
            assert (mode(sock_dir / "run"), mode(socket_path)) == (0o710, 0o660)
            assert mode(daemon.home) == 0o700 and mode(daemon.home / "r1.db") == 0o600
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


@pytest.mark.unit
def test_a_group_socket_inside_r1_home_is_warned_about_and_r1_home_stays_private(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    bind_unix_socket(private / "r1.sock", 0o660).close()
    assert mode(private) == 0o700, "R1_HOME never opens to the socket's group"
    assert f"its folder {private} does not let the group in" in caplog.text
