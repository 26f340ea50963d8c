"""The message catalogs (apicrud/locale) and the choice of language.

The catalogs are complete (every message id of the template has a translation in every
shipped catalog, with the same placeholders), current (the template holds what the
code and the mail templates mark) and compiled (each committed .mo says what its .po
says): `make messages` puts all three right.
"""

from __future__ import annotations

import ast
import gettext
import io
import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from apicrud import i18n
from apicrud.errors import NotFound, ValidationProblem
from apicrud.i18n import N_, NP_, N_as, choose_locale, joined, negotiate
from apicrud.messaging.render import MessageRenderer, duration_text

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "apicrud" / "locale"
SHIPPED = ("de", "fr", "es")
PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


def catalog(path: Path):
    with open(path, "rb") as fh:
        return read_po(fh)


def ids(cat) -> set:
    return {m.id for m in cat if m.id}


def test_the_shipped_languages_are_found():
    assert {"en", *SHIPPED} <= i18n.available()


@pytest.mark.parametrize("lang", SHIPPED)
def test_every_message_id_has_a_translation(lang):
    template = catalog(LOCALE / "apicrud.pot")
    po = catalog(LOCALE / lang / "LC_MESSAGES" / "apicrud.po")
    assert ids(template) == ids(po), "run make messages"
    for msg in po:
        if not msg.id:
            continue
        strings = msg.string if isinstance(msg.string, tuple) else (msg.string,)
        assert all(s.strip() for s in strings), f"{lang}: no translation of {msg.id!r}"
        assert not msg.fuzzy, f"{lang}: fuzzy translation of {msg.id!r}"
        source = msg.id if isinstance(msg.id, str) else msg.id[0]
        wanted = sorted(PLACEHOLDER.findall(source))
        for text in strings:
            assert sorted(PLACEHOLDER.findall(text)) == wanted, (lang, msg.id, text)


@pytest.mark.parametrize("lang", SHIPPED)
def test_the_committed_mo_matches_its_po(lang):
    folder = LOCALE / lang / "LC_MESSAGES"
    compiled = io.BytesIO()
    write_mo(compiled, catalog(folder / "apicrud.po"))
    compiled.seek(0)
    with open(folder / "apicrud.mo", "rb") as fh:
        shipped = gettext.GNUTranslations(fh)
    expected = gettext.GNUTranslations(compiled)
    assert shipped._catalog == expected._catalog, "stale .mo: run make messages"


def test_the_template_holds_every_marked_text():
    method_map = [("**.py", "python"), ("messaging/templates/**.txt", "jinja2")]
    # what pybabel extract -k N_ -k NP_:1,2 -k N_as:2 reads (the templates' trans
    # blocks are gettext calls, among the default keywords)
    keywords = {**DEFAULT_KEYWORDS, "N_": None, "NP_": (1, 2), "N_as": (2,)}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT / "apicrud"), method_map, keywords=keywords, comment_tags=()):
        found.add(message)
    assert found == ids(catalog(LOCALE / "apicrud.pot")), "run make messages"


# -- choosing a language ----------------------------------------------------------------
@pytest.mark.parametrize("header,expected", [
    ("de", "de"), ("de-CH", "de"), ("DE-de", "de"), ("fr-CA,fr;q=0.8", "fr"),
    ("it, es;q=0.5", "es"), ("fr;q=0.5, de;q=0.9", "de"), ("de;q=0, fr;q=0.1", "fr"),
    ("it, pt", None), ("*", None), ("", None), (None, None), ("de;q=abc", None),
    ("en-GB, de", "en"),
])
def test_accept_language(header, expected):
    assert negotiate(header) == expected


def test_the_account_locale_wins_and_unknown_falls_back():
    assert choose_locale("de_CH", "fr", "en") == "de"
    assert choose_locale("it_IT", "fr", "en") == "fr"
    assert choose_locale(None, "it", "en") == "en"
    assert choose_locale(None, None, "es") == "es"
    assert choose_locale(None, None, "xx") == "en"


# -- marked texts ---------------------------------------------------------------------
def test_a_marked_text_reads_as_english_and_translates():
    text = N_("%(resource)s %(id)s not found", resource="list", id="x1")
    assert text == "list x1 not found" and isinstance(text, str)
    assert i18n.translate(text, i18n.translations("de")) == "list x1 nicht gefunden"
    given = N_as("'ab' is too short", "is shorter than %(limit)s characters", limit=3)
    assert given == "'ab' is too short"
    assert i18n.translate(given, i18n.translations("fr")) == "fait moins de 3 caractères"
    both = joined([N_("is too common"), "plain"])
    assert both == "is too common; plain"
    assert i18n.translate(both, i18n.translations("es")) == "es demasiado común; plain"
    assert NP_("%(count)s day", "%(count)s days", 2, count=2) == "2 days"


def test_problems_render_in_the_language_asked_for():
    body, _, headers = NotFound(N_("no such URL")).render("/x", "de")
    assert headers["Content-Language"] == "de"
    assert b'"title": "Nicht gefunden"' in body and b"diese URL gibt es nicht" in body
    problem = ValidationProblem({"name": N_("is required"), "age": "plain"})
    doc = problem.to_dict(None, "es")
    assert doc["errors"] == {"name": "es obligatorio", "age": "plain"}
    assert doc["detail"] == "name: es obligatorio; age: plain" == doc["message"]
    english = problem.to_dict(None)
    assert english["title"] == "Bad Request"
    assert english["detail"] == "name: is required; age: plain"
    assert NotFound("free text").to_dict(None, "fr")["detail"] == "free text"  # unmarked


def test_mail_templates_render_in_each_language():
    renderer = MessageRenderer()
    values = {"service": "Demo", "name": "Ada", "username": "ada", "token": "T0K",
              "api_url": "https://x/api/v1", "ttl_text": duration_text(172800)}
    english = renderer.render("confirm", **values)
    assert english.subject == "Confirm your Demo account" and "2 days" in english.body
    german = renderer.render("confirm", "de", **values)
    assert german.subject == "Bestätigen Sie Ihr Konto bei Demo"
    assert "Hallo Ada," in german.body and "in 2 Tagen ab" in german.body
    assert "\nToken: T0K\n" in german.body
    assert renderer.render("reset", "fr", **values).subject == \
        "Réinitialisez votre mot de passe Demo"
    assert renderer.render("reset", "es", **values).subject == \
        "Restablezca su contraseña de Demo"
    assert renderer.render("confirm", "xx", **values) == english  # no catalog: English


# -- every text a client can read is marked -------------------------------------------
def _plain_text(node) -> bool:
    """A literal, an f-string or text built with % / + / .format: English that no
    catalog can translate (a marked text is a call of N_, NP_ or N_as)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return _plain_text(node.left) or _plain_text(node.right)
    if isinstance(node, ast.IfExp):
        return _plain_text(node.body) or _plain_text(node.orelse)
    if isinstance(node, ast.Subscript):  # f"...{exc}"[:200]
        return _plain_text(node.value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr == "format" and _plain_text(node.func.value)
    return False


def _callee(node) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else \
        func.attr if isinstance(func, ast.Attribute) else None


def _factories(tree, problems: set) -> dict:
    """The functions of a module that make a problem of their first parameter
    (``def _unauthorized(detail): return Unauthorized(detail, ...)``), by name: their
    callers (and the parameter's default) give the problem's text."""
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.args.args:
            first = node.args.args[0].arg
            for ret in ast.walk(node):
                if isinstance(ret, ast.Return) and isinstance(ret.value, ast.Call) and \
                        _callee(ret.value) in problems and ret.value.args and \
                        isinstance(ret.value.args[0], ast.Name) and \
                        ret.value.args[0].id == first:
                    found[node.name] = node
    return found


def _given_texts(node, problems: set, factories: dict) -> list:
    """The texts ``node`` gives a client, when it makes a problem or fills ``errors``."""
    texts = []
    if isinstance(node, ast.Call) and _callee(node) in factories:
        texts += node.args[:1]
    elif isinstance(node, ast.Call) and _callee(node) in problems:
        if node.args:
            first = node.args[0]
            texts += first.values if isinstance(first, ast.Dict) else [first]
        for kw in node.keywords:
            if kw.arg in ("detail", "title"):
                texts.append(kw.value)
            elif kw.arg == "errors" and isinstance(kw.value, ast.Dict):
                texts += kw.value.values
    elif isinstance(node, ast.Assign):  # errors[name] = "..."
        texts += [node.value for t in node.targets if isinstance(t, ast.Subscript)
                  and isinstance(t.value, ast.Name) and t.value.id == "errors"]
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
            node.name in factories:
        texts += node.args.defaults[:1]
    return texts


def unmarked_client_texts(package: Path) -> list[str]:
    """Plain texts given to a problem (its detail, title or errors), to a function that
    makes one of its first argument (or as that argument's default), or put into an
    ``errors`` mapping, in the Python code under ``package``; a module constant holding
    a plain text counts as one. Returns file:line: text."""
    trees = {p: ast.parse(p.read_text(encoding="utf-8"))
             for p in sorted(package.rglob("*.py"))}
    problems = {"Problem"}  # and every class derived from one, in any module
    grew = True
    while grew:
        grew = False
        for tree in trees.values():
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in problems and any(
                        (b.id if isinstance(b, ast.Name) else getattr(b, "attr", None))
                        in problems for b in node.bases):
                    problems.add(node.name)
                    grew = True
    factories = {name: node for tree in trees.values()
                 for name, node in _factories(tree, problems).items()}
    found = set()
    for path, tree in trees.items():
        constants = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                     for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            for text in _given_texts(node, problems, factories):
                if isinstance(text, ast.Name) and text.id in constants:
                    text = constants[text.id]
                if _plain_text(text):
                    found.add(f"{path.relative_to(package.parent)}:{text.lineno}: "
                              f"{ast.unparse(text)[:80]}")
    return sorted(found)


def test_every_text_a_client_reads_is_marked():
    """A problem's detail, title and errors are marked (N_, NP_, N_as) so that they
    reach the catalogs; English stays as it is written (a marked text reads as it)."""
    unmarked = unmarked_client_texts(ROOT / "apicrud")
    assert not unmarked, "mark these with apicrud.i18n.N_:\n" + "\n".join(unmarked)


def test_the_scan_finds_plain_texts(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "mod.py").write_text(
        'class Gone(NotFound):\n    pass\n'
        'def f(x):\n'
        '    raise Gone(f"{x} not found")\n'
        '    raise BadRequest(N_("fine"), errors={"a": "plain"})\n'
        '    raise Problem(title="Plain " + x, detail=N_("fine"))\n'
        '    raise ValidationProblem({"a": N_("fine") if x else "plain"})\n'
        '    errors[x] = "is required"\n'
        '    raise Forbidden(N_("fine %(x)s", x=x), errors={x: N_("fine")})\n'
        'def bad(detail="plain default"):\n'
        '    return Forbidden(detail, slug="bad")\n'
        'def g(x):\n'
        '    raise bad(f"plain {x}"[:200])\n'
        '    raise bad(N_("fine"))\n'
        'WORDS = "plain constant"\n'
        'def h():\n'
        '    raise NotFound(WORDS)\n',
        encoding="utf-8")
    (package / "errors.py").write_text(
        "class Problem(Exception): pass\nclass NotFound(Problem): pass\n"
        "class BadRequest(Problem): pass\nclass Forbidden(Problem): pass\n"
        "class ValidationProblem(BadRequest): pass\n", encoding="utf-8")
    lines = sorted(int(f.split(":")[1]) for f in unmarked_client_texts(package))
    assert lines == [4, 5, 6, 7, 8, 10, 13, 15]


TEMPLATES = ROOT / "apicrud" / "messaging" / "templates"
_TRANS = re.compile(r"{%-?\s*trans\b.*?%}.*?{%-?\s*endtrans\s*-?%}", re.S)
_TAG = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.S)
#: what may stand outside {% trans %} blocks: the Subject header's name, a request line,
#: a JSON body (their words are the API's, never translated) and punctuation
_UNTRANSLATED = re.compile(r"^(Subject:|\s*(GET|POST|PATCH|PUT|DELETE) \S+|\s*\{.*\}|[\W_]*)$")


def stray_lines(template_text: str) -> list[str]:
    """The lines of a mail template with words outside its {% trans %} blocks."""
    rest = _TAG.sub("", _TRANS.sub("", template_text))
    return [line for line in rest.splitlines() if not _UNTRANSLATED.match(line.rstrip())]


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.txt")))
def test_mail_templates_keep_their_words_in_trans_blocks(template):
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    assert text.startswith("Subject: {% trans %}"), "the subject is translated too"
    assert not stray_lines(text), f"{template}: text outside {{% trans %}} blocks"


def test_the_template_check_finds_a_stray_sentence():
    text = "Subject: {% trans %}Hi{% endtrans %}\n\nPlain words here.\n  POST {{ u }}/x\n" \
        '  {"a": "{{ b }}"}\n{% if x %}{% trans %}Yes.{% endtrans %}{% endif %}\n'
    assert stray_lines(text) == ["Plain words here."]
