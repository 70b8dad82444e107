"""The Russian catalogue (callvault/locale/ru) is complete, compiled and actually used.

Stdlib only: the .po is read by the small parser below, the .mo by gettext.GNUTranslations,
so these tests need neither polib nor GNU gettext. Only the "every marked string is in the
.po" check runs makemessages (xgettext) and skips where gettext is not installed.

When a test here fails after you added or changed a translatable string: run `make messages`,
translate the new entries in callvault/locale/ru/LC_MESSAGES/django.po (no fuzzy flags),
run `make messages` again to compile, and commit both the .po and the .mo.
"""

from __future__ import annotations

import gettext
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.template import Context, Template
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import translation

from callvault.accounts.models import Role

PACKAGE_DIR = Path(__file__).resolve().parents[2]  # callvault/
LOCALE_DIR = PACKAGE_DIR / "locale"
PO_FILE = LOCALE_DIR / "ru" / "LC_MESSAGES" / "django.po"
MO_FILE = LOCALE_DIR / "ru" / "LC_MESSAGES" / "django.mo"
HINT = "run `make messages`, translate the new entries in the .po, run it again, commit .po+.mo"

# The standard three-form Russian rule (1, 2-4, 5+; 11-14 are "many").
RU_PLURAL_FORMS = (
    "nplurals=3; plural=(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && "
    "(n%100<10 || n%100>=20) ? 1 : 2);"
)


# --- a minimal .po reader ----------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_KEYWORD = re.compile(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(\".*\")\s*$")


def _unquote(token: str) -> str:
    assert token.startswith('"') and token.endswith('"'), token
    return re.sub(r"\\(.)", lambda m: _ESCAPES[m.group(1)], token[1:-1])


@dataclass
class Entry:
    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: str = ""
    msgstr_plural: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False
    line: int = 0

    @property
    def key(self) -> tuple[str | None, str, str | None]:
        return (self.msgctxt, self.msgid, self.msgid_plural)

    @property
    def is_header(self) -> bool:
        return self.msgid == "" and self.msgctxt is None

    def forms(self) -> list[str]:
        if self.msgid_plural is None:
            return [self.msgstr]
        return [
            self.msgstr_plural.get(i, "") for i in range(max(self.msgstr_plural, default=0) + 1)
        ]


def parse_po(text: str) -> list[Entry]:
    """Entries of a .po file, header first. Does not rely on blank lines between entries
    (a fresh Django catalogue has none after its header)."""
    entries: list[Entry] = []
    entry: Entry | None = None
    target: tuple[str, int | None] | None = None
    seen_msgstr = seen_keyword = False

    def start(lineno: int) -> Entry:
        nonlocal seen_msgstr, seen_keyword, target
        new = Entry(line=lineno)
        entries.append(new)
        seen_msgstr, seen_keyword, target = False, False, None
        return new

    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#~"):
            # Obsolete entries (msgmerge keeps them commented out): not part of the catalogue.
            if entry is not None and not entry.obsolete and not seen_keyword:
                entry.obsolete = True  # its "#, fuzzy" or "# comment" lines came first
            elif entry is None or not entry.obsolete:
                entry = start(lineno)
                entry.obsolete = True
            continue
        if line.startswith("#"):
            if entry is None or seen_msgstr or entry.obsolete:
                entry = start(lineno)
            if line.startswith("#,"):
                entry.flags.update(f.strip() for f in line[2:].split(",") if f.strip())
            continue
        match = _KEYWORD.match(line)
        if match:
            keyword, index, token = match.group(1), match.group(2), match.group(3)
            if entry is None or entry.obsolete or (seen_msgstr and keyword in ("msgctxt", "msgid")):
                entry = start(lineno)
            seen_keyword = True
            value = _unquote(token)
            if keyword.startswith("msgstr"):
                seen_msgstr = True
                if index is not None:
                    entry.msgstr_plural[int(index)] = value
                    target = ("msgstr_plural", int(index))
                else:
                    entry.msgstr = value
                    target = ("msgstr", None)
            else:
                setattr(entry, keyword, value)
                target = (keyword, None)
            continue
        if line.startswith('"') and entry is not None and target is not None:
            name, index_ = target
            if index_ is not None:
                entry.msgstr_plural[index_] += _unquote(line)
            else:
                setattr(entry, name, getattr(entry, name) + _unquote(line))
            continue
        raise AssertionError(f"{PO_FILE.name}:{lineno}: cannot parse {raw!r}")
    return [e for e in entries if not e.obsolete]


def po_entries() -> list[Entry]:
    return parse_po(PO_FILE.read_text(encoding="utf-8"))


def po_messages() -> list[Entry]:
    return [e for e in po_entries() if not e.is_header]


def header_fields(entries: list[Entry]) -> dict[str, str]:
    headers = [e for e in entries if e.is_header]
    assert len(headers) == 1, "the .po must have exactly one header entry"
    pairs = (line.split(":", 1) for line in headers[0].msgstr.splitlines() if ":" in line)
    return {k.strip(): v.strip() for k, v in pairs}


def describe(entry: Entry) -> str:
    ctx = f" [context {entry.msgctxt!r}]" if entry.msgctxt is not None else ""
    return f"line {entry.line}: {entry.msgid!r}{ctx}"


# --- the parser itself ---------------------------------------------------------------------


def test_parser_reads_plurals_contexts_flags_and_skips_obsolete() -> None:
    sample = (
        'msgid ""\nmsgstr ""\n"Language: ru\\n"\n'
        'msgid "order"\nmsgstr "заказ"\n\n'
        '#, fuzzy, python-format\n#| msgid "old"\n'
        'msgctxt "c"\nmsgid "%(n)s x"\nmsgstr ""\n"y "\n"z"\n\n'
        'msgid "one"\nmsgid_plural "many"\nmsgstr[0] "1"\nmsgstr[1] "2"\nmsgstr[2] "5"\n\n'
        '#~ msgid "gone"\n#~ msgstr "нет"\n\n'
        '#, fuzzy\n#~ msgid "gone too"\n#~ msgstr "тоже"\n'
    )
    header, plain, fuzzy, plural = parse_po(sample)
    assert header.is_header and header.msgstr == "Language: ru\n"
    assert (plain.msgid, plain.msgstr) == ("order", "заказ")
    assert fuzzy.flags == {"fuzzy", "python-format"}
    assert (fuzzy.msgctxt, fuzzy.msgid, fuzzy.msgstr) == ("c", "%(n)s x", "y z")
    assert plural.msgid_plural == "many" and plural.forms() == ["1", "2", "5"]


# --- the catalogue -------------------------------------------------------------------------


def test_catalogue_is_where_django_looks() -> None:
    assert Path(settings.LOCALE_PATHS[0]).resolve() == LOCALE_DIR
    assert PO_FILE.is_file(), f"{PO_FILE} is missing; {HINT}"
    assert MO_FILE.is_file(), f"{MO_FILE} is missing (it is committed: CI has no gettext)"
    assert len(po_messages()) > 50


def test_header_declares_russian_with_three_plural_forms() -> None:
    entries = po_entries()
    header = next(e for e in entries if e.is_header)
    assert "fuzzy" not in header.flags, "a fuzzy header is ignored by some tools; remove it"
    fields = header_fields(entries)
    assert fields["Language"] == "ru"
    assert fields["Content-Type"] == "text/plain; charset=UTF-8"
    assert fields["Plural-Forms"] == RU_PLURAL_FORMS


def test_every_entry_is_translated_and_not_fuzzy() -> None:
    problems = []
    for entry in po_messages():
        if "fuzzy" in entry.flags:
            problems.append(f"{describe(entry)} is fuzzy")
        forms = entry.forms()
        if entry.msgid_plural is not None and len(forms) != 3:
            problems.append(f"{describe(entry)} has {len(forms)} plural forms, Russian needs 3")
        if not all(form.strip() for form in forms):
            problems.append(f"{describe(entry)} is not translated")
    assert not problems, f"{HINT}:\n" + "\n".join(problems)


_PERCENT = re.compile(r"%(?:\([^)]+\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]")
_BRACE = re.compile(r"\{[A-Za-z_]\w*(?:![rsa])?(?::[^{}]*)?\}|\{\d*\}")


def _placeholders(text: str, *, percent: bool) -> list[str]:
    found = sorted(_BRACE.findall(text))
    if percent:
        found += sorted(p for p in _PERCENT.findall(text) if p != "%%")
    return found


def test_placeholders_are_kept() -> None:
    problems = []
    for entry in po_messages():
        percent = "python-format" in entry.flags
        source = entry.msgid if entry.msgid_plural is None else entry.msgid_plural
        expected = _placeholders(source, percent=percent)
        for form in entry.forms():
            got = _placeholders(form, percent=percent)
            if got != expected:
                problems.append(f"{describe(entry)}: {got} in {form!r}, expected {expected}")
    assert not problems, "\n".join(problems)


def _mo_catalog() -> tuple[gettext.GNUTranslations, dict[Any, str]]:
    with MO_FILE.open("rb") as fp:
        mo = gettext.GNUTranslations(fp)
    catalog: dict[Any, str] = dict(vars(mo)["_catalog"])
    return mo, catalog


def test_compiled_catalogue_matches_the_po() -> None:
    """The committed .mo holds exactly what the .po says (i.e. it was recompiled)."""
    expected: dict[Any, str] = {}
    for entry in po_messages():
        key = entry.msgid if entry.msgctxt is None else f"{entry.msgctxt}\x04{entry.msgid}"
        if entry.msgid_plural is None:
            expected[key] = entry.msgstr
        else:
            expected.update({(key, i): form for i, form in enumerate(entry.forms())})
    mo, catalog = _mo_catalog()
    catalog.pop("", None)  # the header
    stale = {k: (catalog.get(k), v) for k, v in expected.items() if catalog.get(k) != v}
    extra = sorted(str(k) for k in catalog.keys() - expected.keys())
    assert not stale, f".mo differs from .po (mo, po): {stale}; recompile: `make messages`"
    assert not extra, f".mo has entries the .po no longer has: {extra}; `make messages`"
    assert mo.info().get("language") == "ru"
    # The .mo's plural rule is the three-form Russian one.
    plural = vars(mo)["plural"]
    counts = [1, 2, 4, 5, 11, 12, 14, 21, 22, 25, 101, 111, 112, 0]
    assert [plural(n) for n in counts] == [0, 1, 1, 2, 2, 2, 2, 0, 1, 2, 0, 2, 2, 2]


# --- Django uses it ------------------------------------------------------------------------


def test_gettext_returns_russian() -> None:
    with translation.override("ru"):
        assert translation.gettext("Orders") == "Заказы"
        assert translation.gettext("Log in") == "Войти"
        assert str(Role.TRAINEE.label) == "Стажёр"  # gettext_lazy in a model
        assert str(Role.SUPERVISOR.label) == "Супервайзер"
    with translation.override("en"):
        assert translation.gettext("Orders") == "Orders"


def test_templates_render_russian() -> None:
    # Status names are stored in English (gettext_noop) and translated when shown.
    template = Template(
        "{% load i18n %}{% translate 'Orders' %}|{% translate name %}|{% translate 'Log out' %}"
    )
    with translation.override("ru"):
        rendered = template.render(Context({"name": "No answer"}))
    assert rendered == "Заказы|Недозвон|Выйти"


@pytest.mark.django_db
def test_login_page_is_russian_by_default() -> None:
    # secure=True: outside debug the settings redirect plain HTTP to HTTPS.
    response = Client().get(reverse("login"), secure=True, HTTP_ACCEPT_LANGUAGE="ru")
    assert response.status_code == 200
    content = response.content.decode()
    assert '<html lang="ru">' in content
    assert "Войти" in content
    assert "Log in" not in content


# --- nothing marked for translation is missing ------------------------------------------


GETTEXT_TOOLS = ("xgettext", "msguniq", "msgmerge", "msgattrib")


def test_every_marked_string_is_in_the_po(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Extract the strings afresh (makemessages on a copy of the package) and compare."""
    missing_tools = [tool for tool in GETTEXT_TOOLS if shutil.which(tool) is None]
    if missing_tools:
        pytest.skip(
            f"GNU gettext ({', '.join(missing_tools)}) is not installed, so the strings cannot be "
            "extracted here; the other tests still check the committed catalogue"
        )
    copy = tmp_path / "callvault"
    shutil.copytree(
        PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("locale", "__pycache__", "*.pyc")
    )
    (copy / "locale").mkdir()
    monkeypatch.chdir(copy)
    with override_settings(LOCALE_PATHS=[str(copy / "locale")]):
        call_command("makemessages", locale=["ru"], no_location=True, verbosity=0)
    fresh = parse_po((copy / "locale/ru/LC_MESSAGES/django.po").read_text(encoding="utf-8"))
    committed = {e.key for e in po_messages()}
    missing = [repr(e.key) for e in fresh if not e.is_header and e.key not in committed]
    assert not missing, f"marked for translation but not in {PO_FILE.name}; {HINT}:\n" + (
        "\n".join(missing)
    )
