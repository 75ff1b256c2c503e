#!/usr/bin/env python3
"""A real OpenID Connect provider for Berth's integration tests.

django-oidc-provider on Django, configured in code (no project directory). It sets up a
SQLite database in --data, runs the migrations, makes an RSA signing key, the users and one
confidential client, then serves HTTP on 127.0.0.1:--port and prints exactly one line

    READY http://127.0.0.1:PORT/openid

to stdout once the socket is listening (--port 0: a free port, named in that line). Everything
else goes to stderr. SIGTERM/SIGINT stop it cleanly (exit 0), and so does its parent process
going away. See README.md beside this file for the flow a test client follows.

    python3 provider.py --port 5556 --data /tmp/idp --client-id berth --client-secret s3cret \
        --redirect-uri http://127.0.0.1:5000/c/oidc/callback \
        --user alice:alicepw:devs,ops --user bob:bobpw:
"""

import argparse
import io
import os
import secrets
import signal
import socket
import sys
import threading
import time

# Hooks and the hasher below are referenced by dotted path from Django settings; give this
# script a stable module name however it was started.
MODULE = "berth_oidc_test_provider"
sys.modules.setdefault(MODULE, sys.modules[__name__])

LOGIN_PATH = "/login/"

LOGIN_TEMPLATE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Berth test IdP: sign in</title></head>
<body>
<h1>Sign in</h1>
{% if form.errors %}<p id="login-error">invalid username or password</p>{% endif %}
<form id="login" method="post" action="{{ login_path }}">
<input type="hidden" name="csrfmiddlewaretoken" value="{{ csrf_token }}">
<input type="hidden" name="next" value="{{ next_raw }}">
<input type="text" name="username" value="">
<input type="password" name="password" value="">
<input type="submit" value="Sign in">
</form>
</body></html>
"""


def parse_user(spec):
    """name:password:group1,group2 -- the password may contain ':', groups may be empty."""
    try:
        name, rest = spec.split(":", 1)
        password, groups = rest.rsplit(":", 1)
    except ValueError:
        raise argparse.ArgumentTypeError("--user wants name:password:groups, got %r" % spec)
    if not name or not password:
        raise argparse.ArgumentTypeError("--user needs a name and a password: %r" % spec)
    return name, password, [g.strip() for g in groups.split(",") if g.strip()]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True,
                   help="0 picks a free port; the READY line then names it")
    p.add_argument("--data", required=True, help="directory for the SQLite database")
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", required=True)
    p.add_argument("--redirect-uri", action="append", required=True,
                   help="repeatable; each is registered for the client")
    p.add_argument("--user", action="append", type=parse_user, default=[])
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return p.parse_args(argv)


# ------------------------------------------------------------------ hooks (dotted paths) ---

def user_groups(user):
    return sorted(user.groups.values_list("name", flat=True))


def display_name(user):
    return user.get_full_name() or user.username


def userinfo(claims, user):
    """OIDC_USERINFO: standard claims for the profile/email scopes (userinfo and id_token)."""
    claims["name"] = display_name(user)
    claims["given_name"] = user.first_name or None
    claims["family_name"] = user.last_name or None
    claims["preferred_username"] = user.username
    claims["email"] = user.email
    claims["email_verified"] = True
    return claims


def idtoken_hook(id_token, user, token=None, request=None, **kwargs):
    """OIDC_IDTOKEN_PROCESSING_HOOK: these claims are in every ID token, whatever the scope."""
    id_token["preferred_username"] = user.username
    id_token["email"] = user.email
    id_token["name"] = display_name(user)
    id_token["groups"] = user_groups(user)
    return id_token


def _make_scope_claims():
    from oidc_provider.lib.claims import ScopeClaims

    class GroupsScopeClaims(ScopeClaims):
        """OIDC_EXTRA_SCOPE_CLAIMS: a `groups` scope (userinfo, and id_token via INCLUDE_CLAIMS)."""

        info_groups = ("Groups", "The groups you belong to.")

        def scope_groups(self):
            return {"groups": user_groups(self.user)}

    return GroupsScopeClaims


def __getattr__(name):  # lazy: oidc_provider can only be imported once settings are configured
    if name == "GroupsScopeClaims":
        cls = _make_scope_claims()
        globals()[name] = cls
        return cls
    if name == "FastPBKDF2PasswordHasher":
        from django.contrib.auth.hashers import PBKDF2PasswordHasher

        class FastPBKDF2PasswordHasher(PBKDF2PasswordHasher):
            # Real PBKDF2, fewer rounds: the default 1,000,000 costs ~0.5 s per login here.
            iterations = 2000

        globals()[name] = FastPBKDF2PasswordHasher
        return FastPBKDF2PasswordHasher
    raise AttributeError(name)


def login_context(request):
    return {"login_path": LOGIN_PATH}


# ------------------------------------------------------------------------------- setup ---

def configure(args):
    from django.conf import settings

    base = "http://127.0.0.1:%d" % args.port
    level = "INFO" if args.verbose else "WARNING"
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(48),
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        CSRF_TRUSTED_ORIGINS=[base, "http://localhost:%d" % args.port],
        ROOT_URLCONF=MODULE,
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "oidc_provider",
        ],
        MIDDLEWARE=[
            "django.middleware.common.CommonMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": os.path.join(os.path.abspath(args.data), "oidc.sqlite3"),
                # IMMEDIATE: the token endpoint reads then writes inside atomic(); a deferred
                # transaction there fails at once with "database is locked" under concurrency.
                "OPTIONS": {
                    "timeout": 30,
                    "transaction_mode": "IMMEDIATE",
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                },
            }
        },
        TEMPLATES=[{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": [],
            "APP_DIRS": False,
            "OPTIONS": {
                "context_processors": [MODULE + ".login_context"],
                "loaders": [
                    ("django.template.loaders.locmem.Loader", {"berth/login.html": LOGIN_TEMPLATE}),
                    "django.template.loaders.app_directories.Loader",
                ],
            },
        }],
        PASSWORD_HASHERS=[MODULE + ".FastPBKDF2PasswordHasher"],
        AUTH_PASSWORD_VALIDATORS=[],
        LOGIN_URL=LOGIN_PATH,
        SITE_URL=base,
        OIDC_LOGIN_URL=LOGIN_PATH,
        OIDC_USERINFO=MODULE + ".userinfo",
        OIDC_IDTOKEN_INCLUDE_CLAIMS=True,
        OIDC_EXTRA_SCOPE_CLAIMS=MODULE + ".GroupsScopeClaims",
        OIDC_IDTOKEN_PROCESSING_HOOK=MODULE + ".idtoken_hook",
        LOGGING={
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": sys.stderr}},
            "loggers": {
                "django": {"handlers": ["stderr"], "level": level, "propagate": False},
                "oidc_provider": {"handlers": ["stderr"], "level": "DEBUG" if args.verbose else "WARNING",
                                  "propagate": False},
            },
        },
    )
    import django

    django.setup()


def build_urls():
    from urllib.parse import quote

    from django.contrib.auth.views import LoginView
    from django.urls import include, path
    from django.utils.safestring import mark_safe

    class PlainLoginView(LoginView):
        """Renders `next` un-entity-escaped, so a regex over the page yields the exact value:
        it is a validated local path, and anything that could break out of the attribute
        (quotes, <, >, spaces, non-ASCII) is percent-encoded instead of HTML-escaped."""

        template_name = "berth/login.html"

        def get_context_data(self, **kwargs):
            ctx = super().get_context_data(**kwargs)
            ctx["next_raw"] = mark_safe(quote(ctx.get("next") or "", safe="/?&=%:;,+@!$'()*~#[]-._"))
            return ctx

    global urlpatterns
    urlpatterns = [
        path(LOGIN_PATH.strip("/") + "/", PlainLoginView.as_view(), name="login"),
        path("openid/", include("oidc_provider.urls", namespace="oidc_provider")),
    ]


def provision(args):
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from oidc_provider.models import Client, ResponseType, RSAKey

    call_command("migrate", verbosity=0, interactive=False, stdout=io.StringIO())

    if not RSAKey.objects.exists():
        out = io.StringIO()
        call_command("creatersakey", stdout=out)
        if not RSAKey.objects.exists():  # the command swallows its errors
            raise SystemExit("creatersakey failed: " + out.getvalue().strip())

    for name, password, groups in args.user:
        user, _ = User.objects.get_or_create(username=name)
        user.email = "%s@example.test" % name
        user.first_name = name.capitalize()
        user.last_name = "Example"
        user.is_active = True
        user.set_password(password)
        user.save()
        user.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])

    client, _ = Client.objects.get_or_create(client_id=args.client_id)
    client.name = "Berth"
    client.client_type = "confidential"
    client.client_secret = args.client_secret
    client.jwt_alg = "RS256"
    client.require_consent = False
    client.reuse_consent = True
    client.redirect_uris = args.redirect_uri
    client.scope = ["openid", "profile", "email", "groups"]
    client.save()
    client.response_types.set([ResponseType.objects.get(value="code")])


def bind(port):
    """Bind early (so --port 0 can pick a free port that SITE_URL then names); listen later."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as e:
        print("provider.py: cannot bind 127.0.0.1:%d: %s" % (port, e), file=sys.stderr)
        sys.exit(1)
    return sock


def serve(sock):
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class Server(ThreadedWSGIServer):
        def server_bind(self):  # adopt the pre-bound socket instead of binding a new one
            self.socket.close()
            self.socket = sock
            self.server_address = sock.getsockname()
            self.server_name, self.server_port = self.server_address[:2]
            self.setup_environ()

    httpd = Server(sock.getsockname(), WSGIRequestHandler)  # server_activate(): listen()
    httpd.set_app(get_wsgi_application())
    port = httpd.server_port

    def stop(signum, frame):
        # shutdown() waits for serve_forever() to return, so it must run off the main thread.
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    # A test that panics or is killed may never reap us: stop when the parent process goes away
    # (we get re-parented). Process-based on purpose; PR_SET_PDEATHSIG would fire when the
    # spawning *thread* ends, which in a Rust test harness can be long before the test is done.
    parent = os.getppid()

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(0.5)
        try:
            print("provider.py: parent %d went away; stopping" % parent, file=sys.stderr)
        except OSError:  # stderr was a pipe to the parent that is gone
            pass
        httpd.shutdown()

    threading.Thread(target=watch_parent, daemon=True).start()

    # The socket is listening: connections queue from here on.
    sys.stdout.write("READY http://127.0.0.1:%d/openid\n" % port)
    sys.stdout.flush()
    try:
        httpd.serve_forever(poll_interval=0.2)
    finally:
        httpd.server_close()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.data, exist_ok=True)
    sock = bind(args.port)
    args.port = sock.getsockname()[1]
    configure(args)
    build_urls()
    provision(args)
    serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
