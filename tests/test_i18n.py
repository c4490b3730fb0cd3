"""Languages: the Spanish catalogue is complete and current, pages follow the reader's choice
(else Accept-Language), forms and mail speak it too."""

import html
import json
import re

import pytest
from babel.messages.pofile import read_po

import i18n
from database import db
from models import POST_MAX, User
from tests.helpers import add_posts

SPANISH = {"Accept-Language": "es-ES,es;q=0.9,en;q=0.5"}
SPANISH_PO = i18n.TRANSLATIONS_DIR / "es" / "LC_MESSAGES" / "messages.po"


def read_catalogue(path):
    with open(path, "rb") as f:
        return read_po(f)


def msgids(catalogue) -> set:
    return {message.id for message in catalogue if message.id}


# --- the catalogue ---------------------------------------------------------------------------


def test_spanish_catalogue_is_current_with_the_code(tmp_path):
    """Every message marked in the code is in the catalogue, and nothing else is: run
    `flask --app microblog translate update` after changing a marked message."""
    pot = tmp_path / "messages.pot"
    i18n.extract(pot)
    marked = msgids(read_catalogue(pot))
    catalogued = msgids(read_catalogue(SPANISH_PO))
    assert len(marked) > 150
    assert marked - catalogued == set(), "marked in the code but not in the catalogue"
    assert catalogued - marked == set(), "in the catalogue but no longer in the code"


def test_every_spanish_message_is_translated_and_keeps_its_placeholders():
    for message in read_catalogue(SPANISH_PO):
        if not message.id:
            continue
        assert not message.fuzzy, message.id
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"no Spanish for {ids[0]!r}"
        wanted = set(re.findall(r"%\(\w+\)[sd]", ids[-1]))
        for string in strings:
            assert set(re.findall(r"%\(\w+\)[sd]", string)) <= wanted | {"%(num)d", "%(num)s"}
            assert wanted - {"%(num)d", "%(num)s"} <= set(re.findall(r"%\(\w+\)[sd]", string))


def test_compile_builds_missing_or_stale_catalogues_only(tmp_path, monkeypatch):
    target = tmp_path / "es" / "LC_MESSAGES"
    target.mkdir(parents=True)
    (target / "messages.po").write_bytes(SPANISH_PO.read_bytes())
    monkeypatch.setattr(i18n, "TRANSLATIONS_DIR", tmp_path)
    assert i18n.compile_catalogues() == [target / "messages.po"]
    assert (target / "messages.mo").stat().st_size > 1000
    assert i18n.compile_catalogues() == []  # up to date


# --- pages -----------------------------------------------------------------------------------


def test_pages_for_visitors_follow_accept_language(client):
    page = client.get("/login", headers=SPANISH).get_data(as_text=True)
    assert '<html lang="es">' in page
    assert "Iniciar sesión" in page and "Nombre de usuario" in page and "Recordarme" in page
    assert "Remember me" not in page
    english = client.get("/login", headers={"Accept-Language": "en-US"}).get_data(as_text=True)
    assert '<html lang="en">' in english and "Remember me" in english
    # A language we do not speak falls back to English.
    german = client.get("/login", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert '<html lang="en">' in german and "Remember me" in german


@pytest.mark.parametrize(
    "url, spanish",
    [
        ("/index", "¡Hola, alice!"),
        ("/explore", "Explorar"),
        ("/user/alice", "Editar su perfil"),
        ("/user/bob", "Seguir"),
        ("/user/alice/followers", "Seguidores de alice"),
        ("/settings", "Cambiar la contraseña"),
        ("/messages", "Todavía no hay mensajes."),
        ("/search?q=hola", "Ninguna publicación coincide con su búsqueda."),
        ("/tasks", "Sus tareas"),
        ("/edit_profile", "Sobre mí"),
        ("/send_message/bob", "Enviar un mensaje privado a bob"),
        ("/no-such-page", "No encontrado"),
    ],
)
def test_signed_in_pages_in_spanish(client, auth, url, spanish):
    auth.login()
    response = client.get(url, headers=SPANISH)
    page = response.get_data(as_text=True)
    assert spanish in page, url
    assert '<html lang="es">' in page
    for english in ("Home", "Explore", "Settings", "Logout", "Profile"):
        assert f">{english}<" not in page


def test_plurals_follow_the_count(app, client, auth, users):
    add_posts(app, users["alice"], 1)
    auth.login()
    page = client.get("/user/alice", headers=SPANISH).get_data(as_text=True)
    assert re.search(r'followers-count">0</span>\s*seguidores', page)
    from tests.helpers import follow

    follow(app, users["bob"], users["alice"])
    page = client.get("/user/alice", headers=SPANISH).get_data(as_text=True)
    assert re.search(r'followers-count">1</span>\s*seguidor</a>', page)
    english = client.get("/user/alice").get_data(as_text=True)
    assert re.search(r'followers-count">1</span>\s*follower</a>', english)


def test_flashes_and_form_errors_in_spanish(client, auth):
    auth.login()
    response = client.submit("/index", {"post": ""}, headers=SPANISH)
    assert response.status_code == 400
    assert "Escriba algo primero." in response.get_data(as_text=True)
    response = client.submit("/index", {"post": "hola"}, headers=SPANISH, follow_redirects=True)
    assert "¡Su publicación ya está publicada!" in response.get_data(as_text=True)
    # WTForms' own messages (DataRequired, Email) come from its Spanish catalogue.
    response = client.submit("/settings/email", {"email": "nope"}, headers=SPANISH)
    page = response.get_data(as_text=True)
    assert "Email inválido." in page and "Este campo es obligatorio." in page


def test_page_script_strings_come_from_the_server(client, auth):
    auth.login()
    page = client.get("/index", headers=SPANISH).get_data(as_text=True)
    strings = json.loads(html.unescape(re.search(r'data-strings="([^"]*)"', page).group(1)))
    assert strings["charsLeft"] == "Quedan %(left)s de %(limit)s caracteres"
    assert strings["tooManyOne"] == "%(over)s carácter de más (como máximo %(limit)s)"
    assert strings["tooManyOther"] == "%(over)s caracteres de más (como máximo %(limit)s)"


def test_the_settings_choice_wins_over_accept_language(app, client, auth, users):
    auth.login()
    response = client.submit("/settings/language", {"language": "es"}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "Su idioma se ha guardado." in page and '<html lang="es">' in page
    with app.app_context():
        assert db.session.get(User, users["alice"]).language == "es"
    english_browser = {"Accept-Language": "en-US,en;q=0.9"}
    assert '<html lang="es">' in client.get("/index", headers=english_browser).get_data(True)

    client.submit("/settings/language", {"language": "en"})
    assert '<html lang="en">' in client.get("/index", headers=SPANISH).get_data(True)

    # "The browser's language" clears the choice.
    client.submit("/settings/language", {"language": ""})
    with app.app_context():
        assert db.session.get(User, users["alice"]).language is None
    assert '<html lang="es">' in client.get("/index", headers=SPANISH).get_data(True)


def test_an_unknown_language_is_refused(client, auth):
    auth.login()
    response = client.submit("/settings/language", {"language": "xx"})
    assert response.status_code == 400
    assert "Not a valid choice" in response.get_data(as_text=True)


def test_language_change_needs_csrf(client, auth):
    auth.login()
    assert client.post("/settings/language", data={"language": "es"}).status_code == 400


# --- mail ----------------------------------------------------------------------------------


@pytest.fixture
def app_config(request):
    if "smtp_server" in request.fixturenames:
        smtp = request.getfixturevalue("smtp_server")
        return {"MAIL_SERVER": smtp.host, "MAIL_PORT": smtp.port, "SITE_URL": "http://mb.test"}
    return {}


def test_reset_mail_is_in_the_recipients_language(app, client, users, smtp_server, immediate):
    with app.app_context():
        db.session.get_one(User, users["alice"]).choose_language("es")
        db.session.commit()
    # Asked from an English browser: the mail follows alice's setting, not the request.
    client.submit("/reset_password_request", {"email": "alice@example.com"})
    client.submit("/reset_password_request", {"email": "bob@example.com"}, headers=SPANISH)
    spanish, english = sorted(smtp_server.messages, key=lambda m: m["To"])
    assert spanish["To"] == "alice@example.com"
    assert spanish["Subject"] == "[Microblog] Restablezca su contraseña"
    text = spanish.get_body(("plain",)).get_content()
    assert "Para restablecer su contraseña, abra este enlace:" in text
    assert "El equipo de Microblog" in text
    assert "Para restablecer su contraseña <a href=" in spanish.get_body(("html",)).get_content()
    # bob chose nothing: a mail has no browser, so English.
    assert english["Subject"] == "[Microblog] Reset your password"
    assert "To reset your password, open this link:" in english.get_body(("plain",)).get_content()


def test_task_words_are_shown_in_the_readers_language(app, client, auth, users):
    """A task's description and messages are stored in English and translated when shown."""
    import uuid

    import jobs
    from jobs import Task, TaskStatus

    with app.app_context():
        for status, message in [
            (TaskStatus.DONE, jobs.TASK_TEXT_CANCEL_TOO_LATE),
            (TaskStatus.QUEUED, None),
        ]:
            db.session.add(
                Task(
                    id=str(uuid.uuid4()),
                    name=f"export_posts_{status}",
                    description="Exporting your posts",
                    user_id=users["alice"],
                    status=status,
                    message=message,
                )
            )
        db.session.commit()
    auth.login()
    page = client.get("/tasks", headers=SPANISH).get_data(as_text=True)
    assert "Exportando sus publicaciones" in page
    assert "Terminó antes de que se pudiera cancelar." in page
    assert "Esperando al proceso en segundo plano…" in page
    assert "En cola" in page and "Terminada" in page
    english = client.get("/tasks").get_data(as_text=True)
    assert "Exporting your posts" in english and "Finished before it could be cancelled." in english


def test_what_the_worker_wrote_is_shown_in_the_readers_language(
    app, client, auth, users, immediate
):
    """An import's outcome and a bad file's reason carry numbers: the worker stores them
    untranslated, and each reader sees them in their own language and number format."""
    from tests.test_import import upload

    posts = [
        {"body": f"post {i}", "timestamp": f"2024-05-01T12:{i // 60:02d}:{i % 60:02d}Z"}
        for i in range(1200)
    ]
    posts.append({"body": "x" * (POST_MAX + 1), "timestamp": "2024-05-02T12:00:00Z"})
    auth.login()
    upload(client, json.dumps({"posts": posts}).encode())
    upload(client, b'{"posts": [{"body": "a", "timestamp": "2024-05-01T12:00:00Z"}, {"bo')

    spanish = html.unescape(client.get("/tasks", headers=SPANISH).get_data(as_text=True))
    assert (
        "Se importaron 1.200 publicaciones. Se omitió 1 publicación de más de "
        f"{POST_MAX} caracteres (nunca se recortan)." in spanish
    )
    assert "Este archivo no es JSON válido (está dañado o cortado cerca del byte 67)." in spanish
    english = html.unescape(client.get("/tasks").get_data(as_text=True))
    assert f"Imported 1,200 posts. Skipped 1 post longer than {POST_MAX} characters" in english
    assert "This file is not valid JSON (it is damaged or cut short near byte 67)." in english


def test_api_error_messages_follow_accept_language(client):
    response = client.get("/api/no-such-thing", headers=SPANISH)
    assert response.status_code == 404
    assert (
        response.json["message"] == "No hay ningún punto de acceso de la API en /api/no-such-thing."
    )
    assert response.json["error"] == "Not Found"  # the status line stays a fixed key
    response = client.post("/api/tokens", headers=SPANISH)
    assert response.status_code == 401
    assert "HTTP Basic" in response.json["message"] and "Envíe" in response.json["message"]
    english = client.post("/api/tokens")
    assert english.json["message"] == "Send your username and password with HTTP Basic auth."


def test_admin_pages_in_spanish(app, client, admin, users):
    client.submit("/login", {"username": "root", "password": "correct horse battery"})
    page = client.get("/admin/", headers=SPANISH).get_data(as_text=True)
    assert "Crear una cuenta" in page and "Desactivar" in page and "Hacer administrador" in page
    response = client.submit(
        f"/admin/users/{users['bob']}/disable", headers=SPANISH, follow_redirects=True
    )
    assert "bob está desactivado" in response.get_data(as_text=True)
    page = client.get("/admin/jobs", headers=SPANISH).get_data(as_text=True)
    assert "Fallos recientes" in page
