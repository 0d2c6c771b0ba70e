"""Trust: pinned digests, Ed25519 signatures, the trust file, the CLI, and no window.

Every refusal is checked with a plugin whose constructor creates a marker
file: a refused plugin must leave no marker, i.e. none of its code ran.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

import minildr
from minildr import cli, loader, trust
from minildr.trust import PublicKey, TrustStore

from helpers import write_plugin
from minildr.host import SUFFIX
from platforms import requires_isolation, requires_posix

ANSWER_T = "int (void)"


def ctor_plugin(tmp_path: Path, name: str, marker: Path, answer: int = 42) -> Path:
    """A plugin whose constructor creates `marker`, and whose answer() returns `answer`."""
    source = ("#include <stdio.h>\n"
              "__attribute__((constructor)) static void init(void)\n"
              f"{{ FILE *f = fopen({json.dumps(str(marker))}, \"w\"); if (f) fclose(f); }}\n"
              f"int answer(void) {{ return {answer}; }}\n")
    return write_plugin(tmp_path, name, source, "int answer(void);\n", once=True)


@pytest.fixture(scope="module")
def markers(tmp_path_factory) -> Path:
    """The folder of the constructors' marker files: one per module run, so that a plugin
    (whose source names its marker) is built once for the module (helpers.build_once)."""
    return tmp_path_factory.mktemp("markers")


def fresh(marker: Path) -> Path:
    """`marker`, made absent (an earlier test's plugin may have created it)."""
    marker.unlink(missing_ok=True)
    return marker


@pytest.fixture
def marker(markers) -> Path:
    return fresh(markers / "constructor-ran")


@pytest.fixture
def plugin(tmp_path, marker) -> Path:
    return ctor_plugin(tmp_path, "ctor", marker)


@pytest.fixture
def keys(tmp_path) -> dict:
    """Two signers: alice (trusted by the stores below) and mallory (not)."""
    folder = tmp_path / "keys"
    folder.mkdir()
    return {name: trust.generate_key(name, folder) for name in ("alice", "mallory")}


@pytest.fixture
def alice_store(keys) -> TrustStore:
    return TrustStore(keys=[PublicKey.from_file(keys["alice"][1])])


def refused(path: Path, store, marker: Path, status: str, *fragments: str) -> str:
    """open() refuses with UntrustedPlugin of this status, and no plugin code ran."""
    with pytest.raises(minildr.UntrustedPlugin) as err:
        minildr.open(path, trust=store)
    assert err.value.verdict.status == status
    message = str(err.value)
    assert os.fspath(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert not marker.exists(), "the refused plugin's constructor ran"
    return message


# ---------------------------------------------------------------------------
# Trusted plugins load
# ---------------------------------------------------------------------------
def test_pinned_digest_loads(plugin, marker):
    store = TrustStore()
    digest = store.pin(plugin)
    with minildr.open(plugin, trust=store) as loaded:
        assert loaded.sha256 == digest
        assert loaded.lookup("answer", ANSWER_T)() == 42
    assert marker.exists()
    assert store.verdict(plugin).status == "pinned"


def test_signed_by_trusted_key_loads(plugin, marker, keys, alice_store):
    sig = trust.sign(plugin, keys["alice"][0])
    assert sig == Path(f"{plugin}.sig")
    verdict = alice_store.verdict(plugin)
    assert (verdict.trusted, verdict.status, verdict.signer.name) == (True, "signed", "alice")
    with minildr.open(plugin, trust=alice_store) as loaded:
        assert loaded.lookup("answer", ANSWER_T)() == 42


def test_open_takes_the_path_of_a_trust_file(plugin, tmp_path):
    store = TrustStore()
    store.pin(plugin)
    path = store.save(tmp_path / "trust.txt")
    with minildr.open(plugin, trust=path) as loaded:
        assert loaded.lookup("answer", ANSWER_T)() == 42


# ---------------------------------------------------------------------------
# Each reason to refuse, before any code runs
# ---------------------------------------------------------------------------
def test_unknown_digest_without_keys(plugin, marker, built):
    store = TrustStore()
    store.pin(built["greet"])                       # another plugin is pinned
    digest = hashlib.sha256(plugin.read_bytes()).hexdigest()
    refused(plugin, store, marker, "unknown-digest", f"sha256 {digest} is not pinned",
            "holds no signing keys")


def test_missing_signature(plugin, marker, alice_store):
    refused(plugin, alice_store, marker, "no-signature", f"ctor{SUFFIX}.sig is missing",
            "python -m minildr sign")


def test_tampered_after_signing(plugin, marker, keys, alice_store):
    trust.sign(plugin, keys["alice"][0])
    signed_digest = alice_store.verdict(plugin).sha256
    data = bytearray(plugin.read_bytes())
    data += b"\0tampered"                          # still a loadable ELF file
    plugin.write_bytes(bytes(data))
    refused(plugin, alice_store, marker, "tampered", f"made for a file with sha256 {signed_digest}",
            "changed after it was signed")


def test_signed_by_unknown_key(plugin, marker, keys, alice_store):
    trust.sign(plugin, keys["mallory"][0])
    mallory = PublicKey.from_file(keys["mallory"][1])
    refused(plugin, alice_store, marker, "unknown-key",
            f"signed by key mallory ({mallory.fingerprint})", "does not hold")


def test_forged_signature_claiming_a_trusted_key(plugin, marker, keys, alice_store):
    """mallory's signature, but the file claims alice signed it."""
    trust.sign(plugin, keys["mallory"][0])
    sig = Path(f"{plugin}.sig")
    alice = PublicKey.from_file(keys["alice"][1])
    lines = [alice.line() if line.startswith("key ") else line
             for line in sig.read_text().splitlines()]
    sig.write_text("\n".join(lines) + "\n")
    refused(plugin, alice_store, marker, "bad-signature",
            f"does not verify with key alice ({alice.fingerprint})")


@pytest.mark.parametrize("keep", [0, 20, 60, 150, -10])
def test_truncated_signature_file(plugin, marker, keys, alice_store, keep):
    trust.sign(plugin, keys["alice"][0])
    sig = Path(f"{plugin}.sig")
    sig.write_bytes(sig.read_bytes()[:keep])
    refused(plugin, alice_store, marker, "damaged-signature", f"ctor{SUFFIX}.sig is damaged",
            "sign the plugin again")


def test_signature_for_another_plugin(plugin, marker, keys, alice_store, tmp_path, markers):
    other = ctor_plugin(tmp_path, "other", fresh(markers / "other-marker"), answer=7)
    shutil.copy(trust.sign(other, keys["alice"][0]), f"{plugin}.sig")
    refused(plugin, alice_store, marker, "tampered", "changed after it was signed")


def test_pin_beats_a_bad_signature(plugin, keys, alice_store):
    """A pinned digest is trusted whatever signature file lies beside it."""
    Path(f"{plugin}.sig").write_text("garbage")
    alice_store.pin(plugin)
    with minildr.open(plugin, trust=alice_store) as loaded:
        assert loaded.lookup("answer", ANSWER_T)() == 42


# ---------------------------------------------------------------------------
# No window between the check and the load
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("isolate", [False, pytest.param(True, marks=requires_isolation)], ids=["in-process", "isolated"])
def test_file_replaced_right_after_verification_loads_the_verified_bytes(
        plugin, marker, tmp_path, monkeypatch, isolate, markers):
    """The hook swaps in another plugin the moment trust is checked: it never runs."""
    evil_marker = fresh(markers / "evil-constructor-ran")
    evil = ctor_plugin(tmp_path, "evil", evil_marker, answer=666)
    store = TrustStore()
    store.pin(plugin)
    real_check = loader.check_trust
    swapped = []

    def check_then_swap(image, trust_arg, expect=None):
        checked_with = real_check(image, trust_arg, expect)
        os.replace(shutil.copy(evil, tmp_path / "swap.tmp"), plugin)
        swapped.append(image.sha256)
        return checked_with

    monkeypatch.setattr(loader, "check_trust", check_then_swap)
    with minildr.open(plugin, trust=store, isolate=isolate) as loaded:
        assert swapped == [loaded.sha256]
        assert loaded.lookup("answer", ANSWER_T)() == 42      # the verified code
    assert not evil_marker.exists()
    assert marker.exists()                                    # the verified one ran
    monkeypatch.undo()
    # The swapped-in file, opened by its name (the path build returned would
    # give the bytes this process built there: image.BuiltPath).
    refused(Path(os.fspath(plugin)), store, evil_marker, "unknown-digest")


# ---------------------------------------------------------------------------
# The trust file
# ---------------------------------------------------------------------------
def test_trust_file_round_trip_is_human_readable(plugin, keys, tmp_path):
    store = TrustStore()
    digest = store.pin(plugin)
    store.add_key(keys["alice"][1])
    path = store.save(tmp_path / "trust.txt")
    text = path.read_text()
    assert f"sha256 {digest} ctor 0.1.0" in text.splitlines()
    alice = PublicKey.from_file(keys["alice"][1])
    assert alice.line() in text.splitlines()
    again = TrustStore.load(path)
    assert again.digests == store.digests
    assert list(again.keys) == [alice.fingerprint]


@pytest.mark.parametrize("line, fragment", [
    ("sha256 1234", "64 hex digits"),
    ("key bob ed25519 notbase64!", "not an Ed25519 public key"),
    ("key bob rsa AAAA", "expected 'key NAME ed25519 BASE64'"),
    ("trust everything", "unknown entry 'trust'"),
])
def test_malformed_trust_file_names_the_line(tmp_path, line, fragment):
    path = tmp_path / "trust.txt"
    path.write_text(f"# a comment\n\n{line}\n")
    with pytest.raises(minildr.BadTrustFile) as err:
        TrustStore.load(path)
    assert f"{path}:3" in str(err.value) and fragment in str(err.value)


def test_missing_trust_file(tmp_path, greet_so):
    with pytest.raises(minildr.BadTrustFile, match="no such file"):
        minildr.open(greet_so, trust=tmp_path / "nope.txt")


@requires_posix("0600 is a POSIX permission; Windows keeps a file private through its ACL")
def test_private_key_file_is_private_and_pem(keys):
    private, public = keys["alice"]
    assert private.stat().st_mode & 0o077 == 0
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_text().splitlines()[-1].startswith("key alice ed25519 ")


def test_signing_with_a_public_key_file_is_refused(plugin, keys):
    with pytest.raises(minildr.BadTrustFile, match="PEM private key"):
        trust.sign(plugin, keys["alice"][1])


# ---------------------------------------------------------------------------
# discover
# ---------------------------------------------------------------------------
def test_discover_reports_untrusted_and_loads_the_rest(tmp_path, keys, alice_store, markers):
    folder = tmp_path / "plugins"
    folder.mkdir()
    ran = {n: fresh(markers / f"{n}-ran") for n in ("pinned", "signed", "unsigned", "tampered")}
    paths = {n: Path(shutil.copy(ctor_plugin(tmp_path, n, m), folder / f"{n}{SUFFIX}"))
             for n, m in ran.items()}
    alice_store.pin(paths["pinned"])
    trust.sign(paths["signed"], keys["alice"][0])
    trust.sign(paths["tampered"], keys["alice"][0])
    paths["tampered"].write_bytes(paths["tampered"].read_bytes() + b"!")
    with minildr.discover(folder, trust=alice_store) as report:
        assert sorted(p.name for p in report.loaded) == ["pinned", "signed"]
        failed = {path.name: err for path, err in report.failed}
    assert set(failed) == {f"unsigned{SUFFIX}", f"tampered{SUFFIX}"}
    assert all(isinstance(e, minildr.UntrustedPlugin) for e in failed.values())
    assert failed[f"tampered{SUFFIX}"].verdict.status == "tampered"
    assert failed[f"unsigned{SUFFIX}"].verdict.status == "no-signature"
    assert not ran["unsigned"].exists() and not ran["tampered"].exists()
    assert ran["pinned"].exists() and ran["signed"].exists()


# ---------------------------------------------------------------------------
# The command line: keygen, sign, pin, verify
# ---------------------------------------------------------------------------
def test_cli_keygen_sign_verify(plugin, marker, tmp_path, capsys):
    trust_file = tmp_path / "trust.txt"
    assert cli.main(["keygen", "carol", "--out-dir", str(tmp_path), "--trust",
                     str(trust_file)]) == 0
    assert (tmp_path / "carol.key").exists() and "key carol ed25519" in trust_file.read_text()
    assert cli.main(["verify", "--trust", str(trust_file), str(plugin)]) == 1
    out = capsys.readouterr().out
    assert "NOT trusted" in out and f"ctor{SUFFIX}.sig is missing" in out
    assert cli.main(["sign", "--key", str(tmp_path / "carol.key"), str(plugin)]) == 0
    assert cli.main(["verify", "--trust", str(trust_file), str(plugin)]) == 0
    out = capsys.readouterr().out
    assert "trusted: signed by trusted key carol" in out
    assert cli.main(["verify", str(plugin)]) == 0
    assert "not checked: pass --trust FILE" in capsys.readouterr().out
    assert not marker.exists()                      # verify never loads


def test_cli_pin_then_verify(plugin, tmp_path, capsys):
    trust_file = tmp_path / "trust.txt"
    assert cli.main(["pin", "--trust", str(trust_file), str(plugin)]) == 0
    assert cli.main(["verify", "--trust", str(trust_file), str(plugin)]) == 0
    assert "is pinned in the trust store (ctor 0.1.0)" in capsys.readouterr().out


def test_cli_verify_explains_tampering(plugin, keys, tmp_path, capsys):
    trust_file = tmp_path / "trust.txt"
    trust_file.write_text(PublicKey.from_file(keys["alice"][1]).line() + "\n")
    trust.sign(plugin, keys["alice"][0])
    plugin.write_bytes(plugin.read_bytes() + b"x")
    assert cli.main(["verify", "--trust", str(trust_file), str(plugin)]) == 1
    assert "changed after it was signed" in capsys.readouterr().out


def test_cli_reports_a_bad_trust_file(plugin, tmp_path, capsys):
    trust_file = tmp_path / "trust.txt"
    trust_file.write_text("nonsense\n")
    assert cli.main(["verify", "--trust", str(trust_file), str(plugin)]) == 1
    assert "unknown entry 'nonsense'" in capsys.readouterr().err


@requires_isolation
def test_cli_scan_with_a_trust_file(tmp_path, capsys, markers):
    folder = tmp_path / "plugins"
    folder.mkdir()
    good_ran, bad_ran = fresh(markers / "good-ran"), fresh(markers / "bad-ran")
    good = Path(shutil.copy(ctor_plugin(tmp_path, "good", good_ran), folder))
    shutil.copy(ctor_plugin(tmp_path, "bad", bad_ran), folder)
    trust_file = tmp_path / "trust.txt"
    assert cli.main(["pin", "--trust", str(trust_file), str(good)]) == 0
    capsys.readouterr()
    assert cli.main(["scan", "--trust", str(trust_file), "--isolate", str(folder)]) == 1
    table = capsys.readouterr().out
    assert f"bad{SUFFIX}   UntrustedPlugin" in table and f"good{SUFFIX}  loaded" in table
    assert not bad_ran.exists() and good_ran.exists()


# ---------------------------------------------------------------------------
# What the trusted file is: rollback (a version floor) and substitution (expect=)
# ---------------------------------------------------------------------------
def release(tmp_path: Path, name: str, version: str, marker: Path, keys) -> Path:
    """Plugin `name` at `version`, built in its own folder and signed by alice."""
    folder = tmp_path / f"{name}-{version}"
    folder.mkdir()
    path = write_plugin(folder, name, (
        "#include <stdio.h>\n"
        "__attribute__((constructor)) static void init(void)\n"
        f"{{ FILE *f = fopen({json.dumps(str(marker))}, \"w\"); if (f) fclose(f); }}\n"
        "int answer(void) { return 42; }\n"), "int answer(void);\n", version=version,
        once=True)
    trust.sign(path, keys["alice"][0])
    return path


def test_verdict_statuses_are_an_enum():
    assert trust.Status.ROLLBACK == "rollback" and str(trust.Status.SIGNED) == "signed"
    assert {s.value for s in trust.Status} >= {"pinned", "signed", "unknown-digest",
                                               "rollback", "unexpected-plugin"}


def test_rollback_below_the_floor_is_refused(tmp_path, marker, keys, alice_store):
    old = release(tmp_path, "greet", "1.3.9", marker, keys)
    alice_store.set_floor("greet", "1.4.0")
    message = refused(old, alice_store, marker, "rollback", "greet 1.3.9", "1.4.0",
                      "rollback", "signed by trusted key alice")
    assert "install a release at or above the floor" in message


def test_a_pinned_old_release_is_refused_too(tmp_path, marker, keys):
    old = release(tmp_path, "greet", "1.3.9", marker, keys)
    store = TrustStore()
    store.pin(old)
    store.set_floor("greet", "1.4.0")
    refused(old, store, marker, "rollback", "is pinned")


@pytest.mark.parametrize("version", ["1.4.0", "1.10.0", "2.0.0"])
def test_at_or_above_the_floor_loads(tmp_path, marker, keys, alice_store, version):
    path = release(tmp_path, "greet", version, marker, keys)
    alice_store.set_floor("greet", "1.4.0")        # 1.10.0 > 1.4.0: compared as versions
    alice_store.set_floor("other", "9.0.0")        # a floor for another plugin is not this one's
    with minildr.open(path, trust=alice_store) as loaded:
        assert loaded.version == version
    assert marker.exists()


def test_floor_lines_round_trip_and_bad_ones_name_the_line(tmp_path, keys):
    store = TrustStore(keys=[PublicKey.from_file(keys["alice"][1])])
    store.set_floor("greet", "1.4.0")
    saved = store.save(tmp_path / "trust.txt")
    assert "floor greet 1.4.0" in saved.read_text().splitlines()
    assert TrustStore.load(saved).floors == {"greet": "1.4.0"}
    for bad in ("floor greet", "floor greet one.two", "floor a/b 1.0"):
        (tmp_path / "bad.txt").write_text(f"# store\n{bad}\n")
        with pytest.raises(minildr.BadTrustFile, match=r"bad\.txt:2"):
            TrustStore.load(tmp_path / "bad.txt")


def test_substitution_of_another_signed_plugin_is_refused(tmp_path, marker, keys, alice_store):
    """nosy, signed by the same trusted key, copied over greet's file: refused by name."""
    nosy = release(tmp_path, "nosy", "1.0.0", marker, keys)
    folder = tmp_path / "plugins"
    folder.mkdir()
    in_place = folder / f"greet{SUFFIX}"
    shutil.copy(nosy, in_place)
    shutil.copy(f"{nosy}.sig", f"{in_place}.sig")
    with minildr.open(in_place, trust=alice_store) as loaded:     # no expectation: it is signed
        assert loaded.name == "nosy"
    marker.unlink()
    with pytest.raises(minildr.UntrustedPlugin) as err:
        minildr.open(in_place, trust=alice_store, expect="greet")
    assert err.value.verdict.status == trust.Status.UNEXPECTED_PLUGIN
    message = str(err.value)
    assert "'nosy'" in message and "'greet'" in message and "substitution" in message
    assert not marker.exists()


def test_expect_without_a_trust_store(tmp_path, marker, keys):
    nosy = release(tmp_path, "nosy", "1.0.0", marker, keys)
    with pytest.raises(minildr.UntrustedPlugin) as err:
        minildr.open(nosy, expect="greet")
    assert err.value.verdict.status == "unexpected-plugin"
    assert not marker.exists()
    with minildr.open(nosy, expect="nosy") as loaded:
        assert loaded.name == "nosy"


def test_discover_refuses_a_file_that_is_another_plugin(tmp_path, marker, keys, alice_store):
    nosy = release(tmp_path, "nosy", "1.0.0", marker, keys)
    greet = release(tmp_path, "greet", "1.0.0", tmp_path / "greet-ran", keys)
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(greet, folder)
    shutil.copy(f"{greet}.sig", folder)
    shutil.copy(nosy, folder / f"spell{SUFFIX}")
    shutil.copy(f"{nosy}.sig", folder / f"spell{SUFFIX}.sig")
    with minildr.discover(folder, trust=alice_store) as report:
        assert [p.name for p in report.loaded] == ["greet"]
        [(path, error)] = report.failed
    assert path.name == f"spell{SUFFIX}"
    assert error.verdict.status == "unexpected-plugin"
    assert not marker.exists()


def test_cli_verify_explains_floor_and_expectation(tmp_path, marker, keys, capsys):
    old = release(tmp_path, "greet", "1.3.9", marker, keys)
    trust_file = tmp_path / "trust.txt"
    trust_file.write_text(PublicKey.from_file(keys["alice"][1]).line() + "\nfloor greet 1.4.0\n")
    assert cli.main(["verify", "--trust", str(trust_file), str(old)]) == 1
    out = capsys.readouterr().out
    assert "floor     greet 1.4.0 or newer" in out
    assert "verdict   rollback: NOT trusted" in out
    assert cli.main(["verify", "--trust", str(trust_file), "--expect", "spell", str(old)]) == 1
    out = capsys.readouterr().out
    assert "expected  spell: NO, its manifest names 'greet'" in out
    assert "verdict   unexpected-plugin" in out
    trust_file.write_text(PublicKey.from_file(keys["alice"][1]).line() + "\n")
    assert cli.main(["verify", "--trust", str(trust_file), "--expect", "greet", str(old)]) == 0
    out = capsys.readouterr().out
    assert "expected  greet: ok" in out and "verdict   signed: trusted" in out
    assert not marker.exists()
