"""Keystore: encrypted on disk, password from file or environment, key never in errors or repr."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from attestor import cli
from attestor.errors import KeystoreError
from attestor.keys import Signer, create_keystore, load_signer, read_password
from ledger.protocol import recover_signer

KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")


def test_keystore_roundtrip_signs_with_the_stored_key(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    address = create_keystore(path, "correct horse", kdf="pbkdf2", iterations=2, private_key=KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KEY.hex() not in path.read_text()
    signer = load_signer(path, "correct horse")
    assert signer.address == address == Signer(KEY).address
    digest = b"\x11" * 32
    assert recover_signer(digest, signer.sign(digest)) == address


def test_keystore_wrong_password_error_hides_key(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    create_keystore(path, "right", kdf="pbkdf2", iterations=2, private_key=KEY)
    with pytest.raises(KeystoreError) as e:
        load_signer(path, "wrong")
    assert "wrong password" in str(e.value)
    assert KEY.hex() not in str(e.value) and KEY.hex() not in repr(e.value)
    assert e.value.__suppress_context__


def test_keystore_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "ks.json"
    create_keystore(path, "pw", kdf="pbkdf2", iterations=2)
    before = path.read_text()
    with pytest.raises(KeystoreError, match="refusing to overwrite"):
        create_keystore(path, "pw", kdf="pbkdf2", iterations=2)
    assert path.read_text() == before


def test_signer_repr_shows_address_only() -> None:
    s = Signer(KEY)
    assert KEY.hex() not in repr(s) and KEY.hex() not in str(s)
    assert s.address in repr(s)
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(s)


def test_read_password_from_file_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "pw"
    f.write_text("s3cret\nignored\n")
    assert read_password(f) == "s3cret"
    monkeypatch.setenv("MY_PW", "from-env")
    assert read_password(None, "MY_PW") == "from-env"
    monkeypatch.delenv("COMPUTE_LEDGER_ATTESTOR_PASSWORD", raising=False)
    with pytest.raises(KeystoreError, match="COMPUTE_LEDGER_ATTESTOR_PASSWORD"):
        read_password()


def test_cli_keygen_writes_keystore_and_never_takes_password_flag(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("COMPUTE_LEDGER_ATTESTOR_PASSWORD", "pw-env")
    path = tmp_path / "k" / "ks.json"
    caplog.set_level(logging.DEBUG)
    rc = cli.main(["keygen", "--keystore", str(path), "--kdf", "pbkdf2", "--kdf-iterations", "2"])
    assert rc == 0
    address = capsys.readouterr().out.strip()
    assert load_signer(path, "pw-env").address == address
    data = json.loads(path.read_text())
    assert data["crypto"]["kdf"] == "pbkdf2"
    assert "pw-env" not in caplog.text
    with pytest.raises(SystemExit):
        cli.main(["keygen", "--keystore", str(tmp_path / "x.json"), "--password", "pw"])
