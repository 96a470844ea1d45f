"""`notify.toml` (DESIGN.md section 8): the contract's example loads; bad input is refused
with file, line and reason; secrets come from files and never show in a repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_bridge.contract import ALERT_TYPES, SEVERITIES
from cloud_bridge.notify.config import (
    EmailChannel,
    NotifyConfigError,
    SiaChannel,
    Step,
    WebpushChannel,
    load_notify_config,
)

DESIGN_EXAMPLE = """\
[[channel]]
name = "astreinte"                 # on-call care staff
kind = "email"                     # email | sia-dc09 | webpush (| others you add)
smtp = "smtp://127.0.0.1:2525"     # smtp:// or smtps://, user/password_file optional
from = "veille@hub.example.org"
to = ["astreinte@ssiad.example.org"]

[[channel]]
name = "centre"                    # a 24/7 monitoring centre (téléassistance)
kind = "sia-dc09"                  # SIA DC-09 over TCP, Contact ID events
host = "127.0.0.1"
port = 12128
account = "A1B2C3"                 # hex account at the centre; per-home accounts may override
key = ""                           # AES key (16/24/32 chars) for encrypted lines, or empty

[[escalation]]                     # steps in order; a step fires if nobody acknowledged before
after_s = 0
channels = ["astreinte"]
severities = ["critical", "high"]

[[escalation]]
after_s = 600
channels = ["centre"]
severities = ["critical"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notify.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_design_example_loads_into_a_frozen_model(tmp_path: Path) -> None:
    config = load_notify_config(write(tmp_path, DESIGN_EXAMPLE))
    assert config.channels == {
        "astreinte": EmailChannel(
            name="astreinte",
            host="127.0.0.1",
            port=2525,
            tls=False,
            sender="veille@hub.example.org",
            to=("astreinte@ssiad.example.org",),
        ),
        "centre": SiaChannel(name="centre", host="127.0.0.1", port=12128, account="A1B2C3"),
    }
    assert config.steps == (
        Step(
            index=0,
            after_s=0.0,
            channels=("astreinte",),
            severities=frozenset({"critical", "high"}),
        ),
        Step(index=1, after_s=600.0, channels=("centre",), severities=frozenset({"critical"})),
    )
    assert config.steps[1].types == ALERT_TYPES
    with pytest.raises(AttributeError):
        config.steps[0].after_s = 5  # type: ignore[misc]


def test_secrets_come_from_files_and_never_show(tmp_path: Path) -> None:
    (tmp_path / "smtp.pw").write_text("s3cret-pw\n")
    (tmp_path / "centre.key").write_text("0123456789abcdef0123456789ABCDEF\n")
    (tmp_path / "vapid.pem").write_text("-----BEGIN PRIVATE KEY-----\nxyz\n")
    path = write(
        tmp_path,
        """\
[[channel]]
name = "astreinte"
kind = "email"
smtp = "smtps://mail.example.org"
from = "veille@hub.example.org"
to = "astreinte@ssiad.example.org"
user = "veille"
password_file = "smtp.pw"
[[channel]]
name = "centre"
kind = "sia-dc09"
host = "centre.example.org"
port = 12128
account = "a1b2c3"
key_file = "centre.key"
receiver = "12"
line = "3"
supervision_s = 60
[[channel]]
name = "phones"
kind = "webpush"
vapid_private_key_file = "vapid.pem"
subject = "mailto:admin@hub.example.org"
[[escalation]]
after_s = 0
channels = ["astreinte", "phones"]
repeat_s = 300
types = ["fall", "sos"]
""",
    )
    config = load_notify_config(path)
    mail = config.channels["astreinte"]
    assert isinstance(mail, EmailChannel)
    assert (mail.port, mail.tls, mail.user, mail.password) == (465, True, "veille", "s3cret-pw")
    centre = config.channels["centre"]
    assert isinstance(centre, SiaChannel)
    assert centre.key == "0123456789abcdef0123456789ABCDEF"
    assert centre.encrypted
    assert (centre.account, centre.receiver, centre.line, centre.supervision_s) == (
        "A1B2C3",
        "12",
        "3",
        60.0,
    )
    push = config.channels["phones"]
    assert isinstance(push, WebpushChannel)
    assert push.vapid_private_key.startswith("-----BEGIN")
    text = repr(config)
    for secret in ("s3cret-pw", "0123456789abcdef", "xyz"):
        assert secret not in text
    assert config.steps[0].repeat_s == 300
    assert config.steps[0].types == {"fall", "sos"}
    assert config.steps[0].severities == SEVERITIES


def bad(tmp_path: Path, old: str, new: str) -> str:
    assert old in DESIGN_EXAMPLE
    path = write(tmp_path, DESIGN_EXAMPLE.replace(old, new, 1))
    with pytest.raises(NotifyConfigError) as info:
        load_notify_config(path)
    return str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "line", "reason"),
    [
        ('kind = "email"', 'kind = "pigeon"', 3, "channel kind 'pigeon' must be one of"),
        ('to = ["astreinte@ssiad.example.org"]', 'cc = ["x@y.org"]', 6, "unknown key 'cc'"),
        ('smtp = "smtp://127.0.0.1:2525"', 'smtp = "http://127.0.0.1"', 4, "smtp must be"),
        ('smtp = "smtp://127.0.0.1:2525"', 'smtp = "smtp://u:pw@127.0.0.1"', 4, "no login"),
        ('smtp = "smtp://127.0.0.1:2525"', 'smtp = "smtp://h:99999"', 4, "port must be"),
        ('from = "veille@hub.example.org"', 'from = "veille"', 5, "not a mail address"),
        ('to = ["astreinte@ssiad.example.org"]', "to = []", 6, "non-empty list"),
        ('name = "centre"', 'name = "astreinte"', 9, "used twice"),
        ("port = 12128", "port = 0", 12, "port must be a whole number 1-65535"),
        ("port = 12128", 'port = "12128"', 12, "port must be a whole number"),
        ('account = "A1B2C3"', 'account = "XYZ"', 13, "3-16 hexadecimal"),
        ('key = ""', 'key = "short"', 14, "16, 24 or 32 ASCII characters (it has 5)"),
        ("after_s = 0", "after_s = -1", 17, "after_s must be a number >= 0"),
        ("after_s = 0", "after_s = true", 17, "after_s must be a number"),
        ("after_s = 600", "after_s = 0\nrepeat = 5", 23, "unknown key 'repeat'"),
        ('channels = ["centre"]', 'channels = ["centre", "sms"]', 23, "no channel named 'sms'"),
        ('channels = ["centre"]', "channels = []", 23, "non-empty list of channel names"),
        ('severities = ["critical"]', 'severities = ["urgent"]', 24, "'urgent' in severities"),
        ("after_s = 600", 'after_s = 600\ntypes = ["slip"]', 23, "'slip' in types"),
        ("after_s = 0", "after_s = 900", 22, "in order of after_s (600 s comes after 900 s)"),
        ('key = ""', 'key = ""\nkey_file = "k"', 15, "key or key_file, not both"),
        (
            'from = "veille@hub.example.org"',
            'from = "v@h.org"\nuser = "me"',
            6,
            "user and password_file go together",
        ),
        (
            'from = "veille@hub.example.org"',
            'from = "v@h.org"\npassword_file = "none.pw"',
            6,
            "cannot read password_file",
        ),
        (
            "[[escalation]]                     #",
            "[[escalade]]\n#",
            16,
            "unknown section or key 'escalade'",
        ),
        ('key = ""', 'key = ""\nbroken = = 1', 15, "not valid TOML"),
    ],
)
def test_bad_values_are_refused_with_file_line_and_reason(
    tmp_path: Path, old: str, new: str, line: int, reason: str
) -> None:
    message = bad(tmp_path, old, new)
    assert message.startswith(f"{tmp_path / 'notify.toml'}:{line}: "), message
    assert reason in message, message


def test_an_inline_secret_in_an_error_is_never_echoed(tmp_path: Path) -> None:
    message = bad(tmp_path, 'key = ""', 'key = "not-the-right-length-secret"')
    assert "not-the-right-length-secret" not in message


def test_empty_files_notify_nobody_and_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NotifyConfigError, match=r"notify.toml:1: no \[\[channel\]\]"):
        load_notify_config(write(tmp_path, "# nothing\n"))
    only_channels = DESIGN_EXAMPLE.split("[[escalation]]", maxsplit=1)[0]
    with pytest.raises(NotifyConfigError, match="no \\[\\[escalation\\]\\] step"):
        load_notify_config(write(tmp_path, only_channels))
    with pytest.raises(NotifyConfigError, match=r"notify\.toml:1: channel must be written"):
        load_notify_config(write(tmp_path, '[channel]\nname = "x"\n'))
    with pytest.raises(NotifyConfigError, match="cannot read"):
        load_notify_config(tmp_path / "missing.toml")


def test_the_committed_example_loads() -> None:
    example = Path(__file__).resolve().parents[1] / "firmware_configs" / "veille" / "notify.toml"
    config = load_notify_config(example)
    assert set(config.channels) == {"astreinte", "centre"}
    assert [(s.after_s, s.repeat_s, s.channels) for s in config.steps] == [
        (0.0, 0.0, ("astreinte",)),
        (300.0, 300.0, ("astreinte",)),
        (600.0, 0.0, ("centre",)),
    ]
